"""The SmartNoise-Synth synthesizers offered, each fitted on codes over a public domain.

Offered: ``aim`` and ``mst``, marginal-based, (epsilon, delta), and needing no torch (which
the library's neural synthesizers need). Not offered (docs/synthetic-data.md says why):
``pacsynth``, whose fit fails when its noisy count of records comes out negative (so whether
a request fails would depend on the data's size), and ``mwem``, which reads its domain and the
exact number of rows from the data. What the server changes in how the library
runs them, so that a fit depends on the data only through its DP measurements:

- the domain is the metadata's (synth_encoding.py): each synthesizer gets a transformer
  fitted on the public codes, never on the rows, and no preprocessing budget;
- the noise is OpenDP's exact discrete Gaussian on the marginals' integer counts (the library
  draws continuous floating-point noise and switches OpenDP's process-wide "floating-point"
  feature on to do it); rho for (epsilon, delta) is the accounting's own conversion; any
  other attempt of the library to switch a feature on raises instead;
- MST is fitted without the exact number of rows (the library hands it to its estimator as
  a known total, which no DP measurement covers): the estimator infers it from the noisy
  marginals, as AIM's does;
- the number of rows sampled is always the one asked for, never the data's.

The library's own randomness for selection steps and sampling is NumPy's (docs/SECURITY.md).
"""

from __future__ import annotations

import itertools
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from lomas_server.accounting.conversion import rho_within
from lomas_server.engines.integer_noise import discrete_gaussian
from lomas_server.engines.synth_encoding import ColumnCodec
from lomas_server.errors import InvalidQuery

AIM, MST = "aim", "mst"
SYNTHESIZERS = (AIM, MST)
# What each is good for, as the estimate and the docs say it.
PURPOSE = {
    AIM: "workload-aware marginals: the most accurate 2-way marginals, slowest to fit",
    MST: "a maximum spanning tree of 2-way marginals: fast, good 1- and 2-way marginals",
}
# AIM's default: it models only the pairs of columns with at most this many value combinations.
AIM_MAX_CELLS = 10_000
_installed = threading.Lock()
_patched = False


def check_fits(name: str, codecs: list[ColumnCodec]) -> None:
    """Refuse, before anything is spent, what the library's fit would fail on whatever the
    data: a single column (MST has no pair to join, AIM an empty workload), or, for AIM, no
    pair of columns small enough for its workload."""
    if len(codecs) < 2:
        raise InvalidQuery(
            "a synthesizer models how columns go together: name at least two 'columns' (one "
            "column's distribution is a histogram, e.g. a GROUP BY query)"
        )
    if name == AIM and all(
        a.size * b.size > AIM_MAX_CELLS for a, b in itertools.combinations(codecs, 2)
    ):
        raise InvalidQuery(
            f"aim models pairs of columns with at most {AIM_MAX_CELLS} value combinations, and "
            "every pair here has more; ask for fewer 'bins', or use mst"
        )


def fit_and_sample(
    name: str,
    codes: pd.DataFrame,
    codecs: list[ColumnCodec],
    row_epsilon: float,
    row_delta: float,
    rows: int,
) -> pd.DataFrame:
    """Fit ``name`` at the per-row (epsilon, delta) on the coded rows; ``rows`` synthetic rows
    as codes, in the columns' order."""
    _install_safe_noise()
    from snsynth.transform.label import LabelTransformer
    from snsynth.transform.table import TableTransformer

    # Label i is code i: the transformer sorts the codes it is fitted on, the whole public
    # domain, nothing read from the rows.
    transformer = TableTransformer([LabelTransformer(nullable=False) for _ in codecs])
    longest = max(c.size for c in codecs)
    transformer.fit(
        pd.DataFrame({c.name: [i % c.size for i in range(longest)] for c in codecs}),
    )
    # One public row (every column at its first code) beside the data's: a 1-stable change
    # that keeps the fit from depending on whether the data has any row at all.
    public = pd.DataFrame([[0] * len(codecs)], columns=codes.columns, dtype=np.int64)
    rows_in = pd.concat([codes, public], ignore_index=True)
    synthesizer = _new(name, row_epsilon, row_delta)
    synthesizer.fit(rows_in, transformer=transformer, preprocessor_eps=0.0)
    sampled = synthesizer.sample(rows)
    out = sampled.to_numpy().tolist() if isinstance(sampled, pd.DataFrame) else list(sampled)
    return pd.DataFrame(out, columns=[c.name for c in codecs]).astype(np.int64)


def _new(name: str, epsilon: float, delta: float) -> Any:
    if name == AIM:
        from snsynth.aim import AIMSynthesizer

        return AIMSynthesizer(epsilon=epsilon, delta=delta, max_cells=AIM_MAX_CELLS)
    if name == MST:
        from snsynth.mst import MSTSynthesizer

        return MSTSynthesizer(epsilon=epsilon, delta=delta)
    raise ValueError(f"unknown synthesizer {name!r}")


def _install_safe_noise() -> None:
    """Replace, once, the library's noise, conversion and feature switching (see above)."""
    global _patched
    with _installed:
        if _patched:
            return
        import snsynth.aim.aim as aim
        import snsynth.mst.mst as mst
        import snsynth.transform.standard as standard
        import snsynth.utils as utils

        for module in (aim, mst):
            module.gaussian_noise = _gaussian_noise
            module.cdp_rho = _cdp_rho
        for module in (utils, standard):
            module.enable_features = _refuse_features
        mst.estimation = _WithoutKnownTotal(mst.estimation)
        # Said on every fit about how the library calls mbi, not about anything to act on.
        warnings.filterwarnings("ignore", message="Pandas dataframe inputs are deprecated")
        _patched = True


def _gaussian_noise(sigma: float, size: int | None = None) -> Any:
    """The library's noise call, answered by OpenDP's exact discrete Gaussian."""
    if size is None:
        return float(discrete_gaussian(sigma, 1)[0])
    return np.asarray(discrete_gaussian(sigma, size), dtype=float)


def _cdp_rho(epsilon: float, delta: float, max_contrib: int = 1) -> float:
    if max_contrib != 1:
        raise RuntimeError("the synthesizer asked for a conversion the server does not offer")
    return rho_within(float(epsilon), float(delta))


def _refuse_features(*features: str) -> None:
    raise RuntimeError(f"a synthesizer tried to switch OpenDP features {features} on")


class _WithoutKnownTotal:
    """mbi's estimation module, but the total always inferred from the noisy measurements."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    @property
    def mirror_descent(self) -> Callable[..., Any]:
        def estimate(*args: Any, known_total: Any = None, **kwargs: Any) -> Any:
            return self._module.mirror_descent(*args, **kwargs)

        return estimate
