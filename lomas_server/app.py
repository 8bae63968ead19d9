"""The server extension application: configuration, wiring, and the ``lomas-server`` command.

Load it into any Jupyter server with ``--ServerApp.jpserver_extensions="{'lomas_server': True}"``
or run it on its own with ``lomas-server`` (or ``jupyter lomas-server``). Every option below is
a traitlet: set it in ``jupyter_server_config.py`` / ``jupyter_lomas_server_config.py``, on the
command line (``--LomasServerApp.store_url=...``) or, for the store, with ``LOMAS_STORE_URL``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from jupyter_server.auth.identity import IdentityProvider
from jupyter_server.extension.application import ExtensionApp
from traitlets import Enum, Float, Int, TraitError, Type, Unicode, default, validate

from lomas_server import __version__
from lomas_server.datasets import DatasetCache
from lomas_server.engines.diffprivlib_engine import DiffprivlibEngine
from lomas_server.engines.engine_thread import EngineThread, TimeLimits
from lomas_server.engines.opendp_engine import OpenDPEngine
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.engines.synth_engine import SynthEngine
from lomas_server.errors import ServiceError, StoreUnavailable
from lomas_server.handlers import API_PREFIX, api_routes
from lomas_server.identity import LomasTokenIdentityProvider
from lomas_server.request_pool import RequestPool
from lomas_server.service.admin import AdminService
from lomas_server.service.analyst import AnalystService, Limits
from lomas_server.standalone import LomasOnlyServerApp
from lomas_server.store import AdminStore, open_store

STOP_WAIT_SECONDS = 3.0
READ_THREADS = 4


class LomasServerApp(ExtensionApp):
    name = "lomas_server"
    description = "Differentially private queries on datasets that stay with their owner."
    version = __version__
    extension_url = f"{API_PREFIX}/health"
    # Stand-alone, serve the DP API only: no notebook front-end, no other extension, and none
    # of Jupyter's own services (standalone.py).
    load_other_extensions = False
    serverapp_class = LomasOnlyServerApp

    aliases = {
        **ExtensionApp.aliases,
        "store": "LomasServerApp.store_url",
    }
    subcommands = {
        "demo": ("lomas_server.demo.DemoApp", "Start a demo DP server with sample datasets."),
    }

    store_url = Unicode(
        help="Admin store: sqlite:///PATH (embedded, the default). Env: LOMAS_STORE_URL."
    ).tag(config=True)

    @default("store_url")
    def _default_store_url(self) -> str:
        return os.environ.get("LOMAS_STORE_URL", "sqlite:///lomas-admin.sqlite")

    max_query_epsilon = Float(
        10.0, help="Largest epsilon one query may cost, unless the dataset sets its own maximum."
    ).tag(config=True)
    max_query_delta = Float(
        0.01, help="Largest delta one query may cost, unless the dataset sets its own maximum."
    ).tag(config=True)
    max_dummy_rows = Int(100_000, help="Most rows one dummy-data request may ask for.").tag(
        config=True
    )
    max_synth_rows = Int(
        100_000, help="Most synthetic rows one synthetic-data request may ask for."
    ).tag(config=True)
    max_request_bytes = Int(64 * 1024, help="Largest request body accepted, in bytes.").tag(
        config=True
    )
    dataset_cache_bytes = Int(
        2 * 1024**3, help="Memory for datasets kept loaded between queries, in bytes."
    ).tag(config=True)
    scan_parquet_above_bytes = Int(
        None,
        allow_none=True,
        help="Parquet datasets (local or S3) whose decoded rows exceed this many bytes are "
        "scanned from the file at each query instead of kept in memory. Default: half of "
        "dataset_cache_bytes; 0 scans every Parquet dataset.",
    ).tag(config=True)
    duckdb_memory_bytes = Int(
        None,
        allow_none=True,
        help="Memory each DuckDB query may use before it spills to the temporary folder, in "
        "bytes (default: DuckDB's own, most of the machine). A query that cannot fit even by "
        "spilling fails after its budget is reserved, so leave room for the largest dataset. "
        "Up to scan_threads queries run at once, each with this much.",
    ).tag(config=True)
    duckdb_threads = Int(
        help="Threads one DuckDB query may use. Default: half the cores (at least 1), so that "
        "a long query leaves cores to the queries of others.",
    ).tag(config=True)

    @default("duckdb_threads")
    def _default_duckdb_threads(self) -> int:
        # The cores this process may use (a container's share), where the system tells.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return max(1, (cores or os.cpu_count() or 2) // 2)

    plan_time_limit = Float(
        10.0,
        help="Seconds the engine may spend planning one query and summarising its accuracy "
        "(free requests included); past it the request is stopped and nothing is spent.",
    ).tag(config=True)
    query_time_limit = Float(
        30.0,
        help="Seconds one query may run on the rows; past it the query is stopped, its "
        "budget stays spent and the archive records it as 'stopped'.",
    ).tag(config=True)
    scan_threads = Int(
        4,
        help="Exact aggregations of SQL queries on DuckDB that may run at once, at most half "
        "of them one analyst's (each also uses DuckDB's own threads). The noise and every "
        "OpenDP query run on one thread shared by all.",
    ).tag(config=True)
    fit_threads = Int(
        2,
        help="Synthesizers and DP models fitted at once (one per analyst); fits have workers "
        "of their own, so a slow fit never holds up a SQL or OpenDP query.",
    ).tag(config=True)
    worker_threads = Int(
        8,
        help="Threads serving requests that plan, price or run queries or make dummy rows "
        "(reads such as budgets and /health have their own few threads).",
    ).tag(config=True)
    max_requests_per_user = Int(
        4,
        help="Requests that plan, price or run queries or make dummy rows one analyst may have "
        "running at once; more answer 429, so that nobody holds every thread.",
    ).tag(config=True)
    identity = Enum(
        ["token", "hub"],
        help="Who callers are: 'token' (per-user lomas tokens from the admin store, for "
        "stand-alone deployments) or 'hub' (the JupyterHub user who owns the request's Hub "
        "token; run as a Hub service, see HubIdentityProvider's options). Env: LOMAS_IDENTITY.",
    ).tag(config=True)

    @default("identity")
    def _default_identity(self) -> str:
        return os.environ.get("LOMAS_IDENTITY", "token")

    identity_provider_class = Type(
        default_value=None,
        allow_none=True,
        klass=IdentityProvider,
        help="Identifies API callers; replaces the provider 'identity' chooses.",
    ).tag(config=True)

    @validate(
        "max_requests_per_user", "worker_threads", "scan_threads", "duckdb_threads", "fit_threads"
    )
    def _check_positive(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"{proposal['trait'].name} must be at least 1")
        return proposal["value"]

    @validate("plan_time_limit", "query_time_limit")
    def _check_time_limit(self, proposal: dict[str, Any]) -> float:
        value = proposal["value"]
        if not 0 < value <= 3600:
            raise TraitError(f"{proposal['trait'].name} must be above 0 and at most 3600 seconds")
        return value

    @validate("duckdb_memory_bytes")
    def _check_duckdb_memory(self, proposal: dict[str, Any]) -> int | None:
        value = proposal["value"]
        if value is not None and value < 64 * 1024**2:
            raise TraitError("duckdb_memory_bytes must be at least 64 MiB (67108864)")
        return value

    @validate("scan_parquet_above_bytes")
    def _check_scan_threshold(self, proposal: dict[str, Any]) -> int | None:
        value = proposal["value"]
        if value is not None and value < 0:
            raise TraitError("scan_parquet_above_bytes must be 0 (scan every Parquet file) or more")
        return value

    @default("open_browser")
    def _default_open_browser(self) -> bool:
        return False

    store: AdminStore
    service: AnalystService

    def initialize_settings(self) -> None:
        self.store = open_store(self.store_url)
        try:
            interrupted = self.store.mark_interrupted()
        except StoreUnavailable as err:
            # Serve anyway: /health reports the outage and queries answer 503 until it ends.
            self.log.error("admin store unavailable at start: %s", err.message)
            interrupted = 0
        if interrupted:
            self.log.warning(
                "%d queries were running when the server last stopped; their spends stay, "
                "they are archived as 'interrupted'",
                interrupted,
            )
        # One thread for both DP libraries: OpenDP's feature switches are process-wide.
        limits = TimeLimits(plan_seconds=self.plan_time_limit, query_seconds=self.query_time_limit)
        self.engine_thread = EngineThread(limits)
        self.scan_pool = EngineThread(
            limits,
            workers=self.scan_threads,
            max_per_owner=max(1, self.scan_threads // 2),
            name="dp-scan",
        )
        # Fits take seconds and touch no OpenDP switch: workers of their own, one per analyst.
        self.fit_pool = EngineThread(
            limits, workers=self.fit_threads, max_per_owner=1, name="dp-fit"
        )
        self.engine = SmartnoiseSqlEngine(
            thread=self.engine_thread,
            scans=self.scan_pool,
            duckdb_memory_bytes=self.duckdb_memory_bytes,
            duckdb_threads=self.duckdb_threads,
        )
        self.service = AnalystService(
            self.store,
            self.engine,
            DatasetCache(self.dataset_cache_bytes, self.scan_parquet_above_bytes),
            Limits(
                self.max_query_epsilon,
                self.max_query_delta,
                self.max_dummy_rows,
                self.max_synth_rows,
            ),
            opendp=OpenDPEngine(thread=self.engine_thread),
            synth=SynthEngine(pool=self.fit_pool),
            diffprivlib=DiffprivlibEngine(pool=self.fit_pool),
        )
        self.executor = RequestPool(self.worker_threads)
        self.read_executor = RequestPool(READ_THREADS, name="lomas-read")
        self.admin = AdminService(self.store)
        provider = self._identity_provider()
        self.settings.update(
            lomas_service=self.service,
            lomas_executor=self.executor,
            lomas_read_executor=self.read_executor,
            lomas_in_flight={},
            lomas_max_requests_per_user=self.max_requests_per_user,
            lomas_identity_provider=provider,
            lomas_identity=self.identity,
            lomas_admin=self.admin,
            lomas_budget_requests=self.service.budget_requests,
            lomas_known_users=set(),
            lomas_max_request_bytes=self.max_request_bytes,
        )
        self.log.info(
            "lomas-server %s: admin store %s, API at %s, identity %s%s",
            __version__,
            self.store_url,
            API_PREFIX,
            self.identity,
            _provider_summary(provider),
        )

    def _identity_provider(self) -> IdentityProvider:
        chosen = self.identity_provider_class
        if chosen is None and self.identity == "hub":
            try:
                from lomas_server.hub_identity import HubIdentityProvider
            except ImportError as err:
                raise ServiceError(
                    "identity 'hub' needs JupyterHub's Python package: "
                    "pip install 'lomas-jupyter[hub]'"
                ) from err
            chosen = HubIdentityProvider
        elif chosen is None:
            chosen = LomasTokenIdentityProvider
        try:
            return chosen(parent=self, lookup=self.service.user_by_token_hash)
        except ValueError as err:
            raise ServiceError(str(err)) from err

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_routes())

    async def stop_extension(self) -> None:
        # Stop within seconds whatever runs: no new work, engine jobs stopped, a short wait for
        # requests in flight to record their outcome; the rest are cut off (request_pool.py).
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.read_executor.shutdown(wait=False, cancel_futures=True)
        self.engine_thread.close()
        self.scan_pool.close()
        self.fit_pool.close()
        if not (
            self.executor.wait_idle(STOP_WAIT_SECONDS)
            and self.read_executor.wait_idle(STOP_WAIT_SECONDS)
        ):
            self.log.warning(
                "stopping with requests still running; their queries are "
                "archived as 'interrupted' at the next start"
            )
            return  # they may still use the store: leave it to the process exit
        self.store.close()


def _provider_summary(provider: IdentityProvider) -> str:
    """The Hub identity's settings, for the start-up log line (so an operator sees which
    configuration file was read)."""
    fields = ("analyst_groups", "analyst_roles", "admin_groups", "admin_roles", "access_scopes")
    found = {name: getattr(provider, name) for name in fields if hasattr(provider, name)}
    shown = ", ".join(f"{name}={sorted(value)}" for name, value in found.items() if value)
    return f" ({shown})" if shown else ""


def main(argv: list[str] | None = None) -> None:
    sys.exit(launch(sys.argv[1:] if argv is None else argv))


def launch(args: list[str]) -> int:
    """Start the stand-alone server; a broken configuration stops it with one clear line."""
    # Stand-alone, the server is pointless without its extension: fail instead of serving nothing.
    subcommand = bool(args) and args[0] in LomasServerApp.subcommands
    if not subcommand and not any(
        arg.startswith("--ServerApp.reraise_server_extension_failures") for arg in args
    ):
        args = [*args, "--ServerApp.reraise_server_extension_failures=True"]
    try:
        LomasServerApp.launch_instance(args)
    except ServiceError as err:
        print(f"lomas-server: {err.message}", file=sys.stderr)
        return 2
    return 0
