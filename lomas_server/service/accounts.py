"""A user's budget on a dataset, seen through the dataset's accounting rule.

The store keeps grants as the admin stated them, (epsilon, delta), and the ledger in the
dataset's currency. This is where the two meet: caps for a reservation, and what analysts read
(always (epsilon, delta); for zCDP datasets also the native (rho, delta)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lomas_server.accounting import ZCDP, AccountingRule, PrivacyAmount
from lomas_server.store.base import DatasetRecord


def rule_of(record: DatasetRecord) -> AccountingRule:
    return AccountingRule(record.accounting, record.conversion_delta)


@dataclass(frozen=True)
class Account:
    record: DatasetRecord
    stated: PrivacyAmount  # the grant, (epsilon, delta)
    spent: PrivacyAmount  # ledger currency

    @property
    def rule(self) -> AccountingRule:
        return rule_of(self.record)

    @property
    def cap(self) -> PrivacyAmount:
        return self.rule.cap(self.stated)

    @property
    def dataset_cap(self) -> PrivacyAmount | None:
        return None if self.record.cap is None else self.rule.cap(self.record.cap)

    def fits(self, cost: PrivacyAmount) -> bool:
        return (self.spent + cost).fits_within(self.cap)

    def times_fit(
        self, cost: PrivacyAmount, dataset_spent: PrivacyAmount | None = None
    ) -> int | None:
        """How many more queries costing ``cost`` (ledger currency) fit what is left of the
        grant, and of the dataset-wide cap when ``dataset_spent`` is given; None if it is free.

        Counted in the ledger's exact units, so it agrees with what reservations will do (on
        zCDP datasets, rho adds up; the (epsilon, delta) it converts to does not)."""
        if cost.is_zero():
            return None
        rooms = [self.cap - self.spent]
        if self.dataset_cap is not None and dataset_spent is not None:
            rooms.append(self.dataset_cap - dataset_spent)
        return min(
            have // need
            for room in rooms
            for have, need in (
                (room.eps_units, cost.eps_units),
                (room.delta_units, cost.delta_units),
            )
            if need > 0
        )

    def cost_view(self, cost: PrivacyAmount) -> dict[str, float]:
        """A charge as analysts read it; zCDP charges also give their rho."""
        view: dict[str, float] = self.rule.as_approx_dp(cost).as_dict()
        if self.rule.mode == ZCDP:
            view["rho"] = cost.epsilon
        return view

    def remaining(self) -> dict[str, float]:
        """What is left, worded as ``view`` words it (and ``/budget`` shows it)."""
        return self._left(self.stated, self.cap, self.spent)

    def dataset_remaining(self, dataset_spent: PrivacyAmount) -> dict[str, float]:
        """What is left of the dataset-wide cap, worded the same way."""
        assert self.record.cap is not None and self.dataset_cap is not None
        return self._left(self.record.cap, self.dataset_cap, dataset_spent)

    def _left(
        self, stated: PrivacyAmount, cap: PrivacyAmount, spent: PrivacyAmount
    ) -> dict[str, float]:
        view: dict[str, float] = (stated - self.rule.as_approx_dp(spent)).as_dict()
        if self.rule.mode == ZCDP:
            view["rho"] = (cap - spent).epsilon
        return view

    def view(self) -> dict[str, Any]:
        rule = self.rule
        spent = rule.as_approx_dp(self.spent)
        remaining = self.remaining()
        remaining.pop("rho", None)
        out: dict[str, Any] = {
            "initial": self.stated.as_dict(),
            "spent": spent.as_dict(),
            "remaining": remaining,
            "accounting": rule.describe(),
        }
        if rule.mode == ZCDP:
            cap = self.cap
            out["accounting"].update(
                initial={"rho": cap.epsilon, "delta": cap.delta},
                spent={"rho": self.spent.epsilon, "delta": self.spent.delta},
                remaining={"rho": (cap - self.spent).epsilon, "delta": (cap - self.spent).delta},
            )
        return out
