"""lomas-jupyter's DP server: a Jupyter server extension serving differentially private queries."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from lomas_server.app import LomasServerApp

    return [{"module": "lomas_server.app", "app": LomasServerApp}]
