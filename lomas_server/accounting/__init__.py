"""Privacy-loss accounting: exact amounts, budgets and the rules that compose them.

A pure leaf: no I/O, no imports from the rest of the server. The store persists what
this package computes; the service decides when to reserve.
"""

from lomas_server.accounting.amounts import (
    DELTA_SCALE,
    EPSILON_SCALE,
    MAX_EPSILON,
    Budget,
    PrivacyAmount,
)

__all__ = ["DELTA_SCALE", "EPSILON_SCALE", "MAX_EPSILON", "Budget", "PrivacyAmount"]
