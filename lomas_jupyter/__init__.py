"""lomas-jupyter's analyst side: a Python client for the DP API (IPython magics build on it)."""

from lomas_jupyter.client import Client, LomasError

__version__ = "0.1.0"
__all__ = ["Client", "LomasError"]
