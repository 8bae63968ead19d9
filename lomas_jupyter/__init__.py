"""lomas-jupyter's analyst side: a Python client for the DP API and IPython magics.

In a notebook: ``%load_ext lomas_jupyter``, then ``%lomas_connect`` and ``%%lomas_sql`` (or
``%%lomas_opendp``, ``%%lomas_synth``, ``%%lomas_diffprivlib``).
From Python: ``Client`` (``AdminClient`` for the service's admins); every error it raises is
a ``LomasError`` (see docs/client.md).
Everything public is named here; the modules with a leading underscore may change.
"""

from __future__ import annotations

from typing import Any

from lomas_jupyter._admin import AdminClient, AdminDataset, AdminUser
from lomas_jupyter._archive import QueryRecord
from lomas_jupyter._client import Client
from lomas_jupyter._display import MIME_TYPE, BudgetDisplay
from lomas_jupyter._errors import (
    BudgetExceeded,
    ClientUsageError,
    Conflict,
    Forbidden,
    InvalidQuery,
    InvalidRequest,
    LomasError,
    NotFound,
    PayloadTooLarge,
    QueryFailed,
    QueryTooExpensive,
    ServerBusy,
    ServerError,
    TransportError,
    Unauthorized,
)
from lomas_jupyter._model_release import ModelRelease
from lomas_jupyter._opendp import OpenDPQueryBuilder
from lomas_jupyter._results import (
    Budget,
    BudgetRequest,
    DatasetInfo,
    Estimate,
    Identity,
    LastQuery,
    Metadata,
    Release,
)

__version__ = "0.1.0"
__all__ = [
    "MIME_TYPE",
    "AdminClient",
    "AdminDataset",
    "AdminUser",
    "Budget",
    "BudgetDisplay",
    "BudgetExceeded",
    "BudgetRequest",
    "Client",
    "ClientUsageError",
    "Conflict",
    "DatasetInfo",
    "Estimate",
    "Forbidden",
    "Identity",
    "InvalidQuery",
    "InvalidRequest",
    "LastQuery",
    "LomasError",
    "Metadata",
    "ModelRelease",
    "NotFound",
    "OpenDPQueryBuilder",
    "PayloadTooLarge",
    "QueryFailed",
    "QueryRecord",
    "QueryTooExpensive",
    "Release",
    "ServerBusy",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "load_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lomas_jupyter``: register the magics and make ``%config LomasMagic`` work."""
    # IPython's magic machinery is only needed in a shell, not by scripts using the client.
    from lomas_jupyter._magics import LomasMagic

    magics = LomasMagic(ipython)
    ipython.register_magics(magics)
    # So that %config LomasMagic.<trait> = ... finds it (and only the current one).
    ipython.configurables[:] = [c for c in ipython.configurables if not isinstance(c, LomasMagic)]
    ipython.configurables.append(magics)
    from lomas_jupyter._completion import SqlCompleter, install

    install(ipython, SqlCompleter(lambda: (magics.client, magics.dataset)))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The analyst's Jupyter server serves the JupyterLab panel's read-only routes
    (``lomas_jupyter._lab``, imported by the server only, never by a kernel)."""
    return [{"module": "lomas_jupyter._lab"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension is, for ``jupyter-builder develop``
    (installs get it as shared data: ``share/jupyter/labextensions/lomas-jupyter``)."""
    return [{"src": "labextension", "dest": "lomas-jupyter"}]
