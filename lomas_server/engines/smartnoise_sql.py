"""SmartNoise-SQL: SQL queries with DP noise on aggregates.

Queries pass the allow-list (sql_guard) first, then SmartNoise-SQL rewrites them against the
admin's metadata; its mechanisms give the cost. All SmartNoise work runs on one dedicated
thread: its pandas reader keeps the data in an in-memory SQLite database that only the thread
which created it can see, and the work is CPU-bound anyway.

Group keys: a release shows either the full grid of the declared public values of the GROUP BY
columns (groups with no rows included, values outside the declaration never shown), or, when a
grouping column has no public values, only the groups whose noisy count passes SmartNoise-SQL's
threshold, which needs delta (``censor_dims``, decided here per query, never by metadata). The
exact aggregates are reshaped to that rule before noise is added (``_ReleasedKeys``), in an order
that depends on the keys only.

Threads: everything SmartNoise-SQL does runs on the engine thread shared with OpenDP (see
engine_thread.py), except the exact aggregation on DuckDB, which is plain SQL touching no DP
library: it runs on ``scans``, several at once (DuckDB leaves Python's lock while it works),
so that many analysts' queries use every core and one long query does not hold up short
ones. The statement is recorded while planning; SmartNoise-SQL then gets the rows for that
very statement (``ExactAggregates``). Readers that run where the rows live (PostgreSQL,
Spark) keep the whole run on the engine thread.

Cost: SmartNoise-SQL releases one noisy value per mechanism (an AVG is a noisy SUM and a
noisy COUNT). A plan's ``PrivacyLoss`` lists each mechanism's (epsilon, delta), with
SmartNoise's own advanced-composition odometer as an alternative bound; the dataset's
accounting rule turns that into a charge (accounting/rules.py, docs/accounting.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

from opendp.mod import disable_features

from lomas_server.accounting import PrivacyLoss
from lomas_server.arrow_schema import empty_arrow
from lomas_server.engines.duckdb_reader import (
    DuckDBReader,
    ExactAggregates,
    Recorded,
    StatementRecorder,
)
from lomas_server.engines.engine_thread import PLAN, QUERY, EngineThread
from lomas_server.engines.memo import BoundedMemo
from lomas_server.engines.noise_scales import remember_noise_scales
from lomas_server.engines.postgres_reader import PostgresTableReader
from lomas_server.engines.snsql_adapter import (
    Privacy,
    PrivateReader,
)
from lomas_server.engines.sql_guard import CANONICAL_TABLE, GuardedQuery, guard_query
from lomas_server.engines.sql_plan import (
    SqlPlan,
    SqlResult,
    column_accuracy,
    noisy_values,
)
from lomas_server.engines.sql_plan import odometer as odometer_total
from lomas_server.engines.sql_released_keys import KeyedPrivateReader
from lomas_server.engines.xpath_memo import remember_xpaths
from lomas_server.errors import InvalidQuery
from lomas_server.metadata import DatasetMetadata
from lomas_server.readable import POSTGRES, SPARK, PostgresTable, SparkFiles, reads_as

log = logging.getLogger(__name__)
InPlace = PostgresTable | SparkFiles  # rows a query reads where they live
T = TypeVar("T")
ENGINE_NAME = "smartnoise_sql"
MAX_REMEMBERED_PLANS = 256
SCAN_WORKERS = 4


class SmartnoiseSqlEngine:
    name = ENGINE_NAME

    def __init__(
        self,
        *,
        max_readers: int = 4,
        thread: EngineThread | None = None,
        scans: EngineThread | None = None,
        duckdb_memory_bytes: int | None = None,
        duckdb_threads: int | None = None,
    ) -> None:
        """``thread``: the engine thread shared with OpenDP; ``scans``: the workers that run
        exact aggregations on DuckDB (each made here when not given); ``duckdb_threads``:
        the threads one DuckDB query may use (DuckDB's default: every core)."""
        # SmartNoise-SQL searches each noise scale and parses each XPath selector again at
        # every use; the engine makes it remember both (pure functions of their inputs).
        remember_noise_scales()
        remember_xpaths()
        self._own_thread = thread is None
        self._own_scans = scans is None
        self._duckdb_memory_bytes = duckdb_memory_bytes
        self._duckdb_threads = duckdb_threads
        self._thread = thread or EngineThread()
        self._scans = scans or EngineThread(
            self._thread.limits, workers=SCAN_WORKERS, max_per_owner=2, name="dp-scan"
        )
        self._max_readers = max_readers
        # Used from the engine thread and the scans.
        self._readers: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._readers_lock = threading.Lock()
        # Only touched on the engine thread.
        self._schema_readers: dict[str, DuckDBReader] = {}
        self._plans: BoundedMemo[tuple[Any, ...], SqlPlan] = BoundedMemo(MAX_REMEMBERED_PLANS)

    def close(self) -> None:
        if self._own_thread:
            self._thread.close()
        if self._own_scans:
            self._scans.close()

    def check_ready(self, owner: str = "") -> None:
        """Refuse now, before anything is spent, if the engine cannot take ``owner``'s query."""
        self._thread.check_ready(owner)
        self._scans.check_ready(owner)

    def _on_engine_thread(
        self, fn: Callable[..., T], *args: Any, stage: str = PLAN, owner: str = ""
    ) -> T:
        return self._thread.run(fn, *args, stage=stage, owner=owner)

    # -- planning (no data) ------------------------------------------------------------------
    def plan(
        self,
        dataset: str,
        metadata: DatasetMetadata,
        query: str,
        epsilon: float,
        delta: float | None,
        *,
        scope: str = "",
        default_delta: float = 0.0,
    ) -> SqlPlan:
        """Check and price a query from metadata alone.

        A plan is a pure function of its arguments, so the last few are remembered: pricing a
        query and then running it (or running it again with ``fresh``) plans it once. A
        refusal is never remembered. ``scope`` (the analyst) keeps each one's plans apart, so
        that how fast a query is planned says nothing of what others asked. ``delta`` None:
        ``default_delta`` where groups are shown above a threshold, else 0.
        """
        asked = ("default", float(default_delta)) if delta is None else float(delta)
        key = (scope, dataset, _fingerprint(metadata), query, float(epsilon), asked)
        known = self._plans.get(key)
        if known is not None:
            return known
        guarded = guard_query(query, metadata, dataset)
        if delta is None:
            delta = default_delta if guarded.thresholded else 0.0
        if guarded.thresholded and delta <= 0:
            raise metadata.threshold_needs_delta(list(guarded.group_columns))
        if not guarded.thresholded:
            # Only a threshold uses delta: SmartNoise-SQL would charge it to the count anyway.
            delta = 0.0
        plan = self._on_engine_thread(
            self._plan, dataset, metadata, guarded, epsilon, delta, owner=scope
        )
        self._plans.put(key, plan)
        return plan

    def _plan(
        self,
        dataset: str,
        metadata: DatasetMetadata,
        guarded: GuardedQuery,
        epsilon: float,
        delta: float,
    ) -> SqlPlan:
        sql, output_names = guarded.sql, guarded.output_names
        try:
            reader = self._private_reader(
                self._schema_reader(dataset, metadata),
                metadata,
                epsilon,
                delta,
                guarded.thresholded,
            )
            reader._refresh_options()
            subquery, outer = reader._rewrite(sql)
            all_mechanisms = reader._get_mechanisms(subquery)
            mechanisms = [m for m in all_mechanisms if m is not None]
            threshold = _check_censoring(reader, subquery, all_mechanisms)
            odometer = odometer_total(mechanisms, reader.privacy)
        except InvalidQuery:
            raise
        except ValueError as err:
            # Raised while rewriting against metadata and privacy parameters only; the
            # analyst gets the server's own words, the library's go to the log.
            log.info("SmartNoise-SQL refused %r: %s", sql, _first_line(err))
            raise _refusal(err) from err
        except Exception as err:
            log.warning("SmartNoise-SQL failed to plan %r: %r", sql, err)
            raise InvalidQuery("SmartNoise-SQL cannot run this query") from err
        finally:
            _reset_features()
        if any(m.sensitivity is None or not math.isfinite(m.sensitivity) for m in mechanisms):
            raise InvalidQuery("the query aggregates a column without bounds in the metadata")
        if not mechanisms:
            raise InvalidQuery("the query has no aggregate; every released value must be noisy")
        pairs = [(float(m.epsilon), float(m.delta or 0.0)) for m in mechanisms]
        noisy = noisy_values(subquery, all_mechanisms)
        columns = column_accuracy(outer, output_names, noisy, metadata)
        # Named as the analyst wrote them: a boolean, not its number.
        noisy = [replace(v, name=_as_written(v.name, metadata)) for v in noisy]
        columns = [
            replace(c, noisy_values=[_as_written(n, metadata) for n in c.noisy_values])
            for c in columns
        ]
        loss = PrivacyLoss.approx_dp(pairs, bound=odometer)
        plan = SqlPlan(
            dataset,
            guarded.text,
            sql,
            epsilon,
            delta,
            loss,
            output_names,
            noisy,
            columns,
            guarded.group_columns,
            guarded.key_grid,
            threshold,
        )
        return replace(plan, duckdb_sql=self._recorded_statement(plan, metadata))

    def _recorded_statement(self, plan: SqlPlan, metadata: DatasetMetadata) -> str:
        """The exact-aggregation statement a DuckDB run of ``plan`` sends: SmartNoise-SQL
        runs as at release, and is stopped where it would read the rows."""
        try:
            KeyedPrivateReader(
                plan,
                StatementRecorder(),
                _snsql_document(metadata, plan.thresholded),
                privacy=Privacy(epsilon=plan.epsilon, delta=plan.delta),
            ).execute(plan.sql, postprocess=False)
        except Recorded as recorded:
            return recorded.statement
        except Exception as err:
            log.warning("SmartNoise-SQL failed to write the statement of %r: %r", plan.sql, err)
            raise InvalidQuery("SmartNoise-SQL cannot run this query") from err
        finally:
            _reset_features()
        raise RuntimeError("SmartNoise-SQL did not read the rows")

    # -- execution (data) --------------------------------------------------------------------
    def execute(
        self,
        plan: SqlPlan,
        metadata: DatasetMetadata,
        version: str,
        table: InPlace | Callable[[], Any],
        *,
        postprocess: bool = True,
        owner: str = "",
    ) -> SqlResult:
        """Run a plan on the rows: an Arrow table (DuckDB), or in place (PostgreSQL, Spark);
        ``owner`` (the analyst) takes turns on the engine with other analysts."""
        if reads_as(table) in IN_PLACE_READERS:
            return self._on_engine_thread(
                self._execute, plan, metadata, version, table, postprocess, stage=QUERY, owner=owner
            )
        rows = self._scans.run(
            self._exact_aggregates, plan, metadata, version, table, stage=QUERY, owner=owner
        )
        exact = ExactAggregates(plan.duckdb_sql, rows)
        return self._on_engine_thread(
            self._release, plan, metadata, exact, postprocess, stage=QUERY, owner=owner
        )

    def _exact_aggregates(
        self, plan: SqlPlan, metadata: DatasetMetadata, version: str, table: Callable[[], Any]
    ) -> list[Any]:
        if not plan.duckdb_sql:
            raise RuntimeError("the plan has no exact-aggregation statement")
        with self._reader(plan.dataset, metadata, version, table) as reader:
            return reader.execute(plan.duckdb_sql)

    def _execute(
        self,
        plan: SqlPlan,
        metadata: DatasetMetadata,
        version: str,
        table: InPlace,
        postprocess: bool,
    ) -> SqlResult:
        with self._reader(plan.dataset, metadata, version, table) as reader:
            return self._release(plan, metadata, reader, postprocess)

    def _release(
        self, plan: SqlPlan, metadata: DatasetMetadata, rows: Any, postprocess: bool
    ) -> SqlResult:
        """Noise on the exact aggregates that ``rows`` (a reader) gives, and the release."""
        try:
            reader = KeyedPrivateReader(
                plan,
                rows,
                _snsql_document(metadata, plan.thresholded),
                privacy=Privacy(epsilon=plan.epsilon, delta=plan.delta),
            )
            if postprocess:
                released = reader.execute(plan.sql)
                columns = _named(list(released[0]), plan.output_names)
                return _kept_in_range(plan, columns, [list(row) for row in released[1:]])
            subquery, _ = reader._rewrite(plan.sql)
            raw = reader.execute(plan.sql, postprocess=False)
            names = [_as_written(s.name, metadata) for s in subquery._select_symbols]
            return SqlResult(names, [list(row) for row in raw])
        finally:
            _reset_features()

    # -- readers -----------------------------------------------------------------------------
    @staticmethod
    def _private_reader(
        reader: DuckDBReader, metadata: DatasetMetadata, epsilon: float, delta: float, censor: bool
    ) -> PrivateReader:
        return PrivateReader(
            reader,
            _snsql_document(metadata, censor),
            privacy=Privacy(epsilon=epsilon, delta=delta),
        )

    def _schema_reader(self, dataset: str, metadata: DatasetMetadata) -> DuckDBReader:
        """A reader over zero rows: enough for SmartNoise to plan, nothing to leak."""
        key = f"{dataset}:{_fingerprint(metadata)}"
        reader = self._schema_readers.get(key)
        if reader is None:
            reader = DuckDBReader(empty_arrow(metadata), as_numbers=metadata.booleans_as_numbers)
            self._schema_readers[key] = reader
        return reader

    @contextlib.contextmanager
    def _reader(
        self,
        dataset: str,
        metadata: DatasetMetadata,
        version: str,
        table: InPlace | Callable[[], Any],
    ) -> Iterator[Any]:
        """The dataset's reader for this version of its rows and metadata, opened once and
        kept for the next queries (the last ``max_readers`` datasets); closed when replaced
        or pushed out, once no query uses it."""
        key = f"{version}:{_fingerprint(metadata)}"
        with self._readers_lock:
            cached = self._readers.get(dataset)
            if cached is not None and cached[0] == key:
                self._readers.move_to_end(dataset)
                slot = cached[1]
                slot.users += 1
            else:
                slot = None
        if slot is None:
            # Opened outside the lock: a first load of a big dataset must not hold up
            # queries on the others. Two first queries may both open one; the last is kept.
            slot = _ReaderSlot(
                _open_reader(table, metadata, self._duckdb_memory_bytes, self._duckdb_threads)
            )
            slot.users += 1
            with self._readers_lock:
                pushed_out = []
                replaced = self._readers.pop(dataset, None)
                if replaced is not None:
                    pushed_out.append(replaced[1])
                self._readers[dataset] = (key, slot)
                while len(self._readers) > self._max_readers:
                    pushed_out.append(self._readers.popitem(last=False)[1][1])
                for old in pushed_out:
                    old.retire()
        try:
            yield slot.reader
        finally:
            with self._readers_lock:
                slot.users -= 1
                slot.close_if_unused()


class _ReaderSlot:
    """A reader with the number of queries using it (changed under the engine's lock)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.users = 0
        self.retired = False

    def retire(self) -> None:
        self.retired = True
        self.close_if_unused()

    def close_if_unused(self) -> None:
        if self.retired and self.users == 0:
            self.reader.close()


def _postgres_reader(source: PostgresTable, metadata: DatasetMetadata) -> Any:
    return PostgresTableReader(source, metadata)


def _spark_reader(source: SparkFiles, metadata: DatasetMetadata) -> Any:
    # Imported here so that servers without Spark datasets never load pyspark.
    from lomas_server.engines.spark_reader import SparkTableReader

    return SparkTableReader(source, metadata)


# Readers for rows read where they live, by what the source says it is (readable.py).
IN_PLACE_READERS: dict[str, Callable[[Any, DatasetMetadata], Any]] = {
    POSTGRES: _postgres_reader,
    SPARK: _spark_reader,
}


def _open_reader(
    rows: InPlace | Callable[[], Any],
    metadata: DatasetMetadata,
    duckdb_memory_bytes: int | None = None,
    duckdb_threads: int | None = None,
) -> Any:
    """The reader for where the rows live: in place for databases and Spark, else DuckDB over
    what ``rows()`` gives (an Arrow table, or a Parquet file scanned at each query)."""
    in_place = IN_PLACE_READERS.get(reads_as(rows))
    if in_place is not None:
        return in_place(rows, metadata)
    assert callable(rows)
    return DuckDBReader(
        rows(),
        memory_limit_bytes=duckdb_memory_bytes,
        threads=duckdb_threads,
        as_numbers=metadata.booleans_as_numbers,
    )


def _check_censoring(reader: PrivateReader, subquery: Any, mechanisms: list[Any]) -> float | None:
    """Do now what SmartNoise-SQL would do after reading data: build the censoring threshold,
    and return it (the noisy count a group needs to be shown).

    It fails for some privacy parameters (delta = 0) regardless of the data; found here, the
    query is refused before anything is spent instead of failing after.
    """
    if not reader._options.censor_dims:
        return None
    position = reader._get_keycount_position(subquery)
    if position is None or mechanisms[position] is None:
        raise InvalidQuery("this dataset hides rare groups, which needs a count in the query")
    return float(mechanisms[position].threshold)


def _reset_features() -> None:
    # SmartNoise-SQL switches OpenDP's "floating-point" feature on globally for its
    # mechanisms; it must not stay on for anything else running in this process.
    disable_features("floating-point")


def _snsql_document(metadata: DatasetMetadata, censor: bool) -> dict[str, Any]:
    return {"": {"": {CANONICAL_TABLE: metadata.smartnoise_table(censor_dims=censor)}}}


def _kept_in_range(plan: SqlPlan, columns: list[str], rows: list[list[Any]]) -> SqlResult:
    """Released values moved into their public range: counts not below 0, means within the
    column's bounds, sums on the bounds' side of 0. Free under DP (post-processing)."""
    clamped: dict[str, int] = {}
    if len(plan.columns) != len(columns):
        return SqlResult(columns, rows)
    for index, described in enumerate(plan.columns):
        if described.noisy_values:
            # SmartNoise-SQL gives ROUND(x, d) as text ('0.39'): a number is a number.
            for row in rows:
                if isinstance(row[index], str):
                    row[index] = float(row[index])
        if described.lower is None and described.upper is None:
            continue
        for row in rows:
            kept = described.keep_in_range(row[index])
            if kept is not row[index]:  # the very value when it stays (NaN included)
                row[index] = kept
                clamped[described.column] = clamped.get(described.column, 0) + 1
    return SqlResult(columns, rows, clamped)


def _fingerprint(metadata: DatasetMetadata) -> str:
    return hashlib.sha256(json.dumps(metadata.document, sort_keys=True).encode()).hexdigest()[:16]


def _as_written(noisy_name: str, metadata: DatasetMetadata) -> str:
    """A raw noisy value's name (``sum_<column>``) with a boolean's number named by the
    boolean, as the analyst wrote it."""
    for boolean, number in metadata.booleans_as_numbers.items():
        if noisy_name.endswith("_" + number.name):
            return noisy_name[: -len(number.name)] + boolean
    return noisy_name


def _named(columns: list[str], output_names: list[str]) -> list[str]:
    """SmartNoise names unnamed expressions '???'; use the expression's text instead."""
    if len(columns) != len(output_names):
        return columns
    return [
        wanted if got == "???" else got for got, wanted in zip(columns, output_names, strict=True)
    ]


def _refusal(err: Exception) -> InvalidQuery:
    if "Noise scale is too large" in str(err):
        return InvalidQuery(
            "SmartNoise-SQL refused the query: the noise it needs at this epsilon is too large; "
            "raise epsilon, or aggregate columns with narrower bounds"
        )
    return InvalidQuery(
        "SmartNoise-SQL refused the query: it cannot be planned from the dataset's metadata "
        "with these privacy parameters"
    )


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
