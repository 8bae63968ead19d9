"""How a dataset accounts for privacy loss: lomas's basic mode, or approximate zCDP.

Engines describe a release as a ``PrivacyLoss``: the loss of each noise mechanism, either as
(epsilon, delta) approximate DP or as (rho, delta) approximate zCDP. A dataset's
``AccountingRule`` turns that into a charge in the currency of its ledger, and an admin's
(epsilon, delta) budget into caps in the same currency. Both rules are sound for analysts who
choose each query after seeing earlier answers; a dataset keeps one rule for its whole life.

- ``basic`` (lomas's): the ledger holds (epsilon, delta); charges add up by basic composition
  (Dwork & Roth 2014, Theorem 3.16). A zCDP mechanism (Gaussian noise) enters as its (epsilon,
  delta') conversion at the dataset's conversion delta.
- ``zcdp``: the ledger holds (rho, delta); pure mechanisms enter as rho = epsilon^2/2 and
  approximate ones as delta-approximate epsilon^2/2-zCDP (Bun & Steinke 2016); both parts add
  up (Bun & Steinke 2016, Lemma 2.3 and Section 8). A budget (epsilon, delta) becomes the
  largest rho whose conversion at delta' stays within epsilon, and delta - delta' for the
  approximate part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lomas_server.accounting.amounts import PrivacyAmount
from lomas_server.accounting.conversion import epsilon_of_rho, rho_of_pure_epsilon, rho_within

BASIC, ZCDP = "basic", "zcdp"
MODES = (BASIC, ZCDP)
DEFAULT_CONVERSION_DELTA = 1e-6


@dataclass(frozen=True)
class MechanismLoss:
    """One noise mechanism's guarantee: ``approx_dp`` (epsilon, delta) or ``zcdp`` (rho, delta)."""

    kind: str
    value: float  # epsilon or rho
    delta: float = 0.0


@dataclass(frozen=True)
class PrivacyLoss:
    mechanisms: list[MechanismLoss]
    # An engine's own (epsilon, delta) bound for the whole release, used in basic mode when it
    # is tighter than basic composition (SmartNoise-SQL's advanced-composition odometer).
    approx_dp_bound: tuple[float, float] | None = field(default=None)

    @classmethod
    def approx_dp(
        cls, pairs: list[tuple[float, float]], bound: tuple[float, float] | None = None
    ) -> PrivacyLoss:
        return cls([MechanismLoss("approx_dp", e, d) for e, d in pairs], bound)


@dataclass(frozen=True)
class AccountingRule:
    mode: str = BASIC
    conversion_delta: float = DEFAULT_CONVERSION_DELTA

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"accounting must be one of {', '.join(MODES)}")
        if not 0 < self.conversion_delta < 1:
            raise ValueError("the conversion delta must be above 0 and below 1")

    # -- charges -------------------------------------------------------------------------------
    def charge(self, loss: PrivacyLoss) -> PrivacyAmount:
        """What the ledger records for this release (rounded up)."""
        if self.mode == ZCDP:
            rho = sum(
                m.value if m.kind == "zcdp" else rho_of_pure_epsilon(m.value)
                for m in loss.mechanisms
            )
            return PrivacyAmount.cost(rho, sum(m.delta for m in loss.mechanisms))
        epsilon = delta = 0.0
        for m in loss.mechanisms:
            if m.kind == "zcdp":
                epsilon += epsilon_of_rho(m.value, self.conversion_delta)
                delta += m.delta + self.conversion_delta
            else:
                epsilon, delta = epsilon + m.value, delta + m.delta
        basic = PrivacyAmount.cost(epsilon, delta)
        if loss.approx_dp_bound is not None:
            bound = PrivacyAmount.cost(*loss.approx_dp_bound)
            if bound.eps_units < basic.eps_units:
                return bound
        return basic

    # -- budgets -------------------------------------------------------------------------------
    def cap(self, stated: PrivacyAmount) -> PrivacyAmount:
        """An (epsilon, delta) budget as a cap in the ledger's currency (rounded down)."""
        if self.mode == BASIC:
            return stated
        if stated.delta_units < PrivacyAmount.cost(0, self.conversion_delta).delta_units:
            return PrivacyAmount.zero()  # no room for the conversion: nothing can be spent
        rho = rho_within(stated.epsilon, self.conversion_delta)
        return PrivacyAmount.budget(rho, 0) + PrivacyAmount(
            0, stated.delta_units - PrivacyAmount.cost(0, self.conversion_delta).delta_units
        )

    def as_approx_dp(self, amount: PrivacyAmount) -> PrivacyAmount:
        """A ledger amount as (epsilon, delta) approximate DP, for people and for maximums."""
        if self.mode == BASIC or amount.is_zero():
            return amount
        if amount.eps_units == 0:
            return PrivacyAmount(0, amount.delta_units)
        epsilon = epsilon_of_rho(amount.epsilon, self.conversion_delta)
        return PrivacyAmount.cost(epsilon, amount.delta + self.conversion_delta)

    def check_budget(self, stated: PrivacyAmount) -> None:
        """Refuse an (epsilon, delta) budget this rule cannot use."""
        if self.mode == ZCDP and stated.delta <= self.conversion_delta:
            raise ValueError(
                f"on a zCDP dataset a budget's delta must exceed the conversion delta "
                f"{self.conversion_delta:g}"
            )

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "conversion_delta": self.conversion_delta}
