"""Synthetic data (SmartNoise-Synth): a synthesizer fitted with DP, built by the server.

The client names a synthesizer from the allow-list (synthesizers.py), the columns to model,
the budget and how many rows it wants; nothing else, and nothing it sends is ever executed or
deserialized. The server writes each column's domain from the metadata (synth_encoding.py),
bounds each person's rows to ``max_ids`` (person_rows.py), gives the synthesizer the per-row
share of the budget whose group guarantee is the charge (accounting/group_privacy.py), and
returns the sampled rows.

Planning reads no data. A fit runs on the scan workers, not on the DP libraries' thread: the
synthesizers never touch OpenDP's feature switches (synthesizers.py replaces what did), and a
fit takes seconds, which must not hold up other analysts' queries.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lomas_server.accounting import PrivacyLoss
from lomas_server.accounting.group_privacy import per_row_share
from lomas_server.engines.engine_thread import QUERY, EngineThread
from lomas_server.engines.person_rows import person_rows
from lomas_server.engines.synth_encoding import ColumnCodec, codec_for, decode, encode
from lomas_server.engines.synthesizers import PURPOSE, SYNTHESIZERS, check_fits, fit_and_sample
from lomas_server.errors import EngineMissing, InvalidQuery
from lomas_server.metadata import DatasetMetadata
from lomas_server.tabular import table_payload

ENGINE_NAME = "smartnoise_synth"


@dataclass(frozen=True)
class SynthQuery:
    synthesizer: str
    columns: tuple[str, ...]
    rows: int
    bins: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "synthesizer": self.synthesizer,
            "columns": list(self.columns),
            "rows": self.rows,
            "bins": self.bins,
        }

    def describe(self) -> str:
        return (
            f"{self.synthesizer}: {self.rows} synthetic rows of {', '.join(self.columns)} "
            f"(numbers in {self.bins} bins)"
        )


@dataclass(frozen=True)
class SynthPlan:
    query: SynthQuery
    codecs: tuple[ColumnCodec, ...]
    epsilon: float
    delta: float
    row_epsilon: float  # what the synthesizer gets: the share of one of a person's rows
    row_delta: float
    rows_per_person: int
    loss: PrivacyLoss

    def described(self) -> dict[str, Any]:
        return {
            "synthesizer": self.query.synthesizer,
            "purpose": PURPOSE[self.query.synthesizer],
            "domain": [c.describe() for c in self.codecs],
            "rows_per_person": self.rows_per_person,
        }


class SynthEngine:
    name = ENGINE_NAME

    def __init__(self, pool: EngineThread | None = None) -> None:
        self._own_pool = pool is None
        self._pool = pool or EngineThread(name="dp-synth")

    def close(self) -> None:
        if self._own_pool:
            self._pool.close()

    def check_ready(self, owner: str) -> None:
        self._pool.check_ready(owner)

    def plan(
        self, metadata: DatasetMetadata, query: SynthQuery, epsilon: float, delta: float
    ) -> SynthPlan:
        """The fit's domain and cost, from metadata alone."""
        if importlib.util.find_spec("snsynth") is None:
            raise EngineMissing(
                "synthetic data is not installed on this server (smartnoise-synth, see "
                "requirements-no-deps.txt); nothing was spent"
            )
        if query.synthesizer not in SYNTHESIZERS:
            raise InvalidQuery(
                f"unknown synthesizer {query.synthesizer!r}; choose one of "
                f"{', '.join(SYNTHESIZERS)}"
            )
        if delta <= 0:
            raise InvalidQuery(
                f"the {query.synthesizer} synthesizer needs 'delta' above 0 (leave it out and "
                "the server chooses one)"
            )
        codecs = [codec_for(metadata, name, query.bins) for name in query.columns]
        names = [c.name for c in codecs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InvalidQuery(f"column {repeated[0]!r} is named twice in 'columns'")
        check_fits(query.synthesizer, codecs)
        row_epsilon, row_delta = per_row_share(epsilon, delta, metadata.max_ids)
        if row_delta <= 0:
            raise InvalidQuery(
                f"with up to {metadata.max_ids} rows per person, epsilon={epsilon:g} leaves "
                "each row no 'delta' (group privacy); lower 'epsilon'"
            )
        canonical = SynthQuery(query.synthesizer, tuple(names), query.rows, query.bins)
        loss = PrivacyLoss.approx_dp([(epsilon, delta)])
        return SynthPlan(
            canonical, tuple(codecs), epsilon, delta, row_epsilon, row_delta, metadata.max_ids, loss
        )

    def execute(
        self, plan: SynthPlan, metadata: DatasetMetadata, table: Callable[[], Any], *, owner: str
    ) -> dict[str, Any]:
        """The synthetic rows as a ``{"columns", "data"}`` table."""
        return self._pool.run(self._execute, plan, metadata, table, stage=QUERY, owner=owner)

    def _execute(
        self, plan: SynthPlan, metadata: DatasetMetadata, table: Callable[[], Any]
    ) -> dict[str, Any]:
        codecs = list(plan.codecs)
        rows = person_rows(table(), metadata, [c.name for c in codecs])
        codes = encode(rows, codecs)
        sampled = fit_and_sample(
            plan.query.synthesizer, codes, codecs, plan.row_epsilon, plan.row_delta, plan.query.rows
        )
        return table_payload(decode(sampled, codecs, secrets.randbits(64)))
