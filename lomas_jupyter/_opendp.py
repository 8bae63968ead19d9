"""Build OpenDP queries in Python, the way OpenDP's Context API reads:

    client.opendp("PENGUIN").group_by("species").mean("bill_length_mm").laplace(epsilon=0.5).release()

A builder only assembles the JSON description that the server compiles (it never sends code);
each step returns a new builder, so a half-built query can be reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pandas as pd

from lomas_jupyter._errors import ClientUsageError
from lomas_jupyter._results import Estimate, Release


class OpenDPSender(Protocol):
    """What a builder needs to send its request: ``Client`` is one."""

    def opendp_cost(self, dataset: str, request: dict[str, Any]) -> Estimate: ...

    def opendp_response(self, dataset: str, request: dict[str, Any]) -> Release: ...


@dataclass(frozen=True)
class OpenDPQueryBuilder:
    client: OpenDPSender
    dataset: str
    filters: tuple[dict[str, Any], ...] = ()
    groups: tuple[str, ...] = ()
    aggregates: tuple[dict[str, Any], ...] = ()
    noise: dict[str, Any] = field(default_factory=dict)
    postprocess: bool = True

    # -- shaping -------------------------------------------------------------------------------
    def filter(self, column: str, op: str, value: Any = None) -> OpenDPQueryBuilder:
        """Keep rows where ``column op value`` (==, !=, <, <=, >, >=, in, is_null, is_not_null)."""
        item = {
            "column": column,
            "op": op,
            **({} if op in ("is_null", "is_not_null") else {"value": value}),
        }
        return replace(self, filters=(*self.filters, item))

    def group_by(self, *columns: str) -> OpenDPQueryBuilder:
        return replace(self, groups=(*self.groups, *columns))

    # -- aggregates ------------------------------------------------------------------------------
    def _add(
        self, op: str, column: str | None = None, name: str | None = None, **extra: Any
    ) -> OpenDPQueryBuilder:
        item: dict[str, Any] = {"op": op, **({"column": column} if column else {}), **extra}
        if name:
            item["as"] = name
        return replace(self, aggregates=(*self.aggregates, item))

    def count(self, column: str | None = None, *, name: str | None = None) -> OpenDPQueryBuilder:
        return self._add("count", column, name)

    def sum(self, column: str, *, name: str | None = None) -> OpenDPQueryBuilder:
        return self._add("sum", column, name)

    def mean(self, column: str, *, name: str | None = None) -> OpenDPQueryBuilder:
        return self._add("mean", column, name)

    def variance(self, column: str, *, name: str | None = None) -> OpenDPQueryBuilder:
        return self._add("variance", column, name)

    def median(self, column: str, *, name: str | None = None) -> OpenDPQueryBuilder:
        return self._add("median", column, name)

    def quantile(self, column: str, q: float, *, name: str | None = None) -> OpenDPQueryBuilder:
        return self._add("quantile", column, name, q=q)

    def histogram(self, column: str) -> OpenDPQueryBuilder:
        return self._add("histogram", column)

    # -- noise -----------------------------------------------------------------------------------
    def laplace(
        self,
        epsilon: float | None = None,
        *,
        delta: float | None = None,
        half_width: float | None = None,
        confidence: float = 0.95,
    ) -> OpenDPQueryBuilder:
        """Laplace noise spending ``epsilon`` (or the least epsilon giving ``half_width``)."""
        return replace(
            self, noise=_noise("laplace", "epsilon", epsilon, delta, half_width, confidence)
        )

    def gaussian(
        self,
        rho: float | None = None,
        *,
        delta: float | None = None,
        half_width: float | None = None,
        confidence: float = 0.95,
    ) -> OpenDPQueryBuilder:
        """Gaussian noise spending ``rho`` (zero-concentrated DP)."""
        return replace(self, noise=_noise("gaussian", "rho", rho, delta, half_width, confidence))

    def raw(self) -> OpenDPQueryBuilder:
        """Release the raw noisy statistics: not kept in their public range (a mean may then
        fall outside the column's bounds, a variance below 0)."""
        return replace(self, postprocess=False)

    # -- running ---------------------------------------------------------------------------------
    def query(self) -> dict[str, Any]:
        return {
            "filters": list(self.filters),
            "group_by": list(self.groups),
            "aggregates": list(self.aggregates),
        }

    def request(self, **extra: Any) -> dict[str, Any]:
        if not self.noise:
            raise ClientUsageError(
                "choose the noise first: .laplace(epsilon=...) or .gaussian(rho=...)"
            )
        raw = {} if self.postprocess else {"postprocess": False}
        return {"query": self.query(), **self.noise, **raw, **extra}

    def estimate(self) -> Estimate:
        """Cost, accuracy and whether it would be a free replay; spends nothing."""
        return self.client.opendp_cost(self.dataset, self.request())

    def response(self, *, fresh: bool = False) -> Release:
        """The release with its cost and budget; an identical earlier one replays for free."""
        return self.client.opendp_response(self.dataset, self.request(fresh=fresh))

    def release(self, *, fresh: bool = False) -> pd.DataFrame:
        """The noisy result (its ``attrs`` say what it cost)."""
        return self.response(fresh=fresh).frame


def _noise(
    mechanism: str,
    name: str,
    budget: float | None,
    delta: float | None,
    half_width: float | None,
    confidence: float,
) -> dict[str, Any]:
    noise: dict[str, Any] = {"mechanism": mechanism}
    if half_width is not None:
        noise["accuracy"] = {"half_width": half_width, "confidence": confidence}
    else:
        noise[name] = budget
    if delta:
        noise["delta"] = delta
    return noise
