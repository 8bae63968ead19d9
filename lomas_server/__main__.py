"""``python -m lomas_server``: the same as the ``lomas-server`` command."""

from lomas_server.app import main

main()
