"""The noise an analyst asks of an OpenDP query: a mechanism and its budget, or a target
accuracy for the server to price. Parsed from the request (handlers), planned by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Noise:
    """The client's noise choice. ``budget`` is epsilon (Laplace) or rho (Gaussian); or a
    target ``half_width`` at ``confidence`` lets the server find the cheapest budget."""

    mechanism: str
    budget: float | None
    delta: float | None = None
    half_width: float | None = None
    confidence: float = CONFIDENCE

    def loss_of(self, budget: float, delta: float | None) -> Any:
        import opendp.prelude as dp

        if self.mechanism == "laplace":
            return dp.loss_of(epsilon=budget, delta=delta)
        return dp.loss_of(rho=budget, delta=delta)
