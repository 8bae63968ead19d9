"""Remember the noise scales SmartNoise-SQL searches for, instead of searching on every query.

SmartNoise-SQL builds every Laplace or Gaussian mechanism by a binary search over OpenDP
measurements for the scale that meets epsilon (and delta) for the column's bounds: about
25 ms per mechanism, several mechanisms per query, repeated each time a query is rewritten.
The scale is a pure function of the mechanism's class, bounds, contribution limit and privacy
parameters, so it is computed once per distinct combination and reused. Failures (a scale out
of reach) are not remembered: they raise every time, as before.
"""

from __future__ import annotations

from typing import Any

from lomas_server.engines.memo import BoundedMemo
from lomas_server.engines.snsql_adapter import Gaussian, Laplace

MAX_ENTRIES = 4096
_scales: BoundedMemo[tuple[Any, ...], float] = BoundedMemo(MAX_ENTRIES)
_installed = False


def _key(mechanism: Any) -> tuple[Any, ...]:
    return (
        type(mechanism).__name__,
        str(mechanism.mechanism),
        float(mechanism.lower),
        float(mechanism.upper),
        int(mechanism.max_contrib),
        float(mechanism.epsilon),
        float(mechanism.delta or 0.0),
        int(mechanism.bit_depth),
    )


def _remembering(search: Any) -> Any:
    def compute(self: Any) -> None:
        if self.scale is not None:
            return
        key = _key(self)
        known = _scales.get(key)
        if known is not None:
            self.scale = known
            return
        search(self)
        if self.scale is not None:
            _scales.put(key, self.scale)

    compute.__wrapped__ = search  # type: ignore[attr-defined]
    return compute


def remember_noise_scales() -> None:
    """Install the memo on SmartNoise-SQL's mechanisms (once per process)."""
    global _installed
    if _installed:
        return
    for mechanism in (Laplace, Gaussian):
        mechanism._compute_noise_scale = _remembering(mechanism._compute_noise_scale)
    _installed = True


def forget_noise_scales() -> None:
    """Undo ``remember_noise_scales`` (for measurements of SmartNoise-SQL on its own)."""
    global _installed
    if not _installed:
        return
    for mechanism in (Laplace, Gaussian):
        mechanism._compute_noise_scale = mechanism._compute_noise_scale.__wrapped__
    _scales.clear()
    _installed = False
