"""A person's guarantee from a per-row one: group privacy over the rows one person may hold.

Synthesizers and machine-learning models protect one row. A person may hold up to ``max_ids``
rows (k), so the server gives the library the per-row share whose k-fold group guarantee is
what the analyst pays: (epsilon, delta) per row gives (k*epsilon, k*e^((k-1)*epsilon)*delta)
per group of k rows (Dwork & Roth 2014, Lemma 2.2 and its approximate form). Solving that
for the per-row share, rounded so that the guarantee never exceeds the charge.
"""

from __future__ import annotations

import math


def per_row_share(epsilon: float, delta: float, rows_per_person: int) -> tuple[float, float]:
    """The per-row (epsilon, delta) whose guarantee for ``rows_per_person`` rows is within
    (epsilon, delta)."""
    if rows_per_person < 1:
        raise ValueError("a person holds at least one row")
    k = rows_per_person
    if k == 1:
        return epsilon, delta
    row_epsilon = math.nextafter(epsilon / k, 0.0)
    if delta <= 0:
        return row_epsilon, 0.0
    try:
        row_delta = delta / (k * math.exp((k - 1) * row_epsilon))
    except OverflowError:  # e^((k-1) epsilon / k) past the largest float: no delta is left
        return row_epsilon, 0.0
    return row_epsilon, math.nextafter(row_delta, 0.0) if row_delta > 0 else 0.0


def group_guarantee(epsilon: float, delta: float, rows_per_person: int) -> tuple[float, float]:
    """What a per-row (epsilon, delta) guarantees a person holding ``rows_per_person`` rows."""
    k = rows_per_person
    if delta <= 0:
        return k * epsilon, 0.0
    try:
        return k * epsilon, k * math.exp((k - 1) * epsilon) * delta
    except OverflowError:
        return k * epsilon, math.inf
