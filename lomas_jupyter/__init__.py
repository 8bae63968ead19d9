"""lomas-jupyter's analyst side: a Python client for the DP API and IPython magics.

In a notebook: ``%load_ext lomas_jupyter``, then ``%lomas_connect`` and ``%%lomas_sql``.
"""

from __future__ import annotations

from typing import Any

from lomas_jupyter.client import Client, LomasError
from lomas_jupyter.display import MIME_TYPE, BudgetDisplay

__version__ = "0.1.0"
__all__ = ["MIME_TYPE", "BudgetDisplay", "Client", "LomasError", "load_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    from lomas_jupyter.magics import LomasMagic

    magics = LomasMagic(ipython)
    ipython.register_magics(magics)
    # So that %config LomasMagic.<trait> = ... finds it (and only the current one).
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, LomasMagic)]
    ipython.configurables.append(magics)
