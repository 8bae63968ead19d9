"""Privacy-loss accounting: exact amounts, budgets and the rules that compose them.

A leaf: no I/O, no imports from the rest of the server (OpenDP only, for its zCDP
conversion). The store persists what this package computes; the service decides when to
reserve.
"""

from lomas_server.accounting.amounts import (
    DELTA_SCALE,
    EPSILON_SCALE,
    MAX_EPSILON,
    Budget,
    PrivacyAmount,
)
from lomas_server.accounting.rules import (
    BASIC,
    DEFAULT_CONVERSION_DELTA,
    MODES,
    ZCDP,
    AccountingRule,
    MechanismLoss,
    PrivacyLoss,
)

__all__ = [
    "BASIC",
    "DEFAULT_CONVERSION_DELTA",
    "DELTA_SCALE",
    "EPSILON_SCALE",
    "MAX_EPSILON",
    "MODES",
    "ZCDP",
    "AccountingRule",
    "Budget",
    "MechanismLoss",
    "PrivacyAmount",
    "PrivacyLoss",
]
