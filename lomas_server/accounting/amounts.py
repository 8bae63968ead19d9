"""Exact privacy amounts.

Epsilon and delta are held as integers in fixed units (1e-12 for epsilon, 1e-15 for delta)
so that any number of spends adds up exactly, in Python and inside a database's SUM alike:
10,000 spends of 0.1 sum to exactly 1000.0 and can never slip past a cap the way binary
floats do. Costs are rounded *up* to the next unit and budgets *down*, so rounding can only
ever protect the data subject, never the analyst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

EPSILON_SCALE = 10**12
DELTA_SCALE = 10**15
# Largest epsilon a budget may hold; keeps every per-(user, dataset) sum inside a signed
# 64-bit integer (1e6 * 1e12 = 1e18 < 9.2e18).
MAX_EPSILON = 10**6


def _to_decimal(value: float | int | str | Decimal) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("a privacy amount must be a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a privacy amount must be finite")
        # 15 significant digits is what a double holds reliably; this keeps float noise
        # such as 1.5000000000000002e-05 from bumping a cost up by a whole unit.
        return Decimal(format(value, ".15g"))
    try:
        result = Decimal(str(value))
    except InvalidOperation as err:
        raise ValueError(f"not a number: {value!r}") from err
    if not result.is_finite():
        raise ValueError("a privacy amount must be finite")
    return result


def _units(value: float | int | str | Decimal, scale: int, rounding: str) -> int:
    scaled = _to_decimal(value) * scale
    return int(scaled.to_integral_value(rounding=rounding))


@dataclass(frozen=True, order=False)
class PrivacyAmount:
    """An (epsilon, delta) pair in exact integer units."""

    eps_units: int
    delta_units: int

    @classmethod
    def cost(
        cls, epsilon: float | int | str | Decimal, delta: float | int | str | Decimal
    ) -> PrivacyAmount:
        """A charge: rounded up, so that what is recorded is never less than what was spent."""
        return cls._checked(
            _units(epsilon, EPSILON_SCALE, ROUND_CEILING), _units(delta, DELTA_SCALE, ROUND_CEILING)
        )

    @classmethod
    def budget(
        cls, epsilon: float | int | str | Decimal, delta: float | int | str | Decimal
    ) -> PrivacyAmount:
        """A cap: rounded down, so that rounding never grants more than the admin wrote."""
        return cls._checked(
            _units(epsilon, EPSILON_SCALE, ROUND_FLOOR), _units(delta, DELTA_SCALE, ROUND_FLOOR)
        )

    @classmethod
    def zero(cls) -> PrivacyAmount:
        return cls(0, 0)

    @classmethod
    def _checked(cls, eps_units: int, delta_units: int) -> PrivacyAmount:
        if eps_units < 0 or delta_units < 0:
            raise ValueError("privacy amounts cannot be negative")
        return cls(eps_units, delta_units)

    @property
    def epsilon(self) -> float:
        return float(Decimal(self.eps_units) / EPSILON_SCALE)

    @property
    def delta(self) -> float:
        return float(Decimal(self.delta_units) / DELTA_SCALE)

    def __add__(self, other: PrivacyAmount) -> PrivacyAmount:
        return PrivacyAmount(self.eps_units + other.eps_units, self.delta_units + other.delta_units)

    def __sub__(self, other: PrivacyAmount) -> PrivacyAmount:
        """Componentwise difference, floored at zero (a remaining budget is never negative)."""
        return PrivacyAmount(
            max(0, self.eps_units - other.eps_units), max(0, self.delta_units - other.delta_units)
        )

    def fits_within(self, cap: PrivacyAmount) -> bool:
        return self.eps_units <= cap.eps_units and self.delta_units <= cap.delta_units

    def is_zero(self) -> bool:
        return self.eps_units == 0 and self.delta_units == 0

    def as_dict(self) -> dict[str, float]:
        return {"epsilon": self.epsilon, "delta": self.delta}


@dataclass(frozen=True)
class Budget:
    """What a grant allows and what the ledger says has been spent against it."""

    initial: PrivacyAmount
    spent: PrivacyAmount

    @property
    def remaining(self) -> PrivacyAmount:
        return self.initial - self.spent

    def allows(self, cost: PrivacyAmount) -> bool:
        return (self.spent + cost).fits_within(self.initial)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            "initial": self.initial.as_dict(),
            "spent": self.spent.as_dict(),
            "remaining": self.remaining.as_dict(),
        }
