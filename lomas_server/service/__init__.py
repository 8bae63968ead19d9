"""Use cases, one method each; no tornado, no database driver, no HTTP.

``analyst`` serves the REST API, ``admin`` the administrator's tools. They are imported from
their modules directly so that the admin command line does not load the DP engines.
"""
