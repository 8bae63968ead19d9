from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import lomas_server
from lomas_server.datasets import DatasetCache
from lomas_server.engines.engine_thread import EngineThread
from lomas_server.engines.opendp_engine import OpenDPEngine
from lomas_server.engines.smartnoise_sql import SmartnoiseSqlEngine
from lomas_server.service.admin import AdminService
from lomas_server.service.analyst import AnalystService
from lomas_server.store.base import AdminStore
from lomas_server.store.sqlite import SqliteStore
from tests.servers import Api, FerretDB, FileServer, MotoS3, PostgresServer, ServerProcess

SAMPLE_DATA = Path(lomas_server.__file__).parent / "sample_data"
MANY_AT_ONCE = ("--LomasServerApp.max_requests_per_user=64",)


def sample_metadata(name: str) -> dict:
    return yaml.safe_load((SAMPLE_DATA / f"{name}.yaml").read_text())


def seed_datasets(admin: AdminService, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for dataset, stem in (("PENGUIN", "penguin"), ("TITANIC", "titanic")):
        target = data_dir / f"{stem}.csv"
        shutil.copyfile(SAMPLE_DATA / f"{stem}.csv", target)
        admin.add_dataset(dataset, target, sample_metadata(stem))


def analyst_service(
    store: AdminStore, cache: DatasetCache | None = None
) -> tuple[AnalystService, EngineThread]:
    """The analyst service in this process, both engines on one engine thread (close it)."""
    thread = EngineThread()
    analyst = AnalystService(
        store,
        SmartnoiseSqlEngine(thread=thread),
        cache or DatasetCache(2**30, None),
        opendp=OpenDPEngine(thread=thread),
    )
    return analyst, thread


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lomas-shared")


@pytest.fixture(scope="session")
def store_path(shared_dir: Path) -> Path:
    path = shared_dir / "admin.sqlite"
    store = SqliteStore(path)
    seed_datasets(AdminService(store), shared_dir / "data")
    store.close()
    return path


@pytest.fixture(scope="session")
def admin(store_path: Path) -> Iterator[AdminService]:
    """The admin's use cases on the very store file the shared server uses."""
    store = SqliteStore(store_path)
    yield AdminService(store)
    store.close()


@pytest.fixture(scope="session")
def server(store_path: Path, shared_dir: Path) -> Iterator[ServerProcess]:
    # Some tests fire 50 requests of one analyst at once to prove reservations atomic: the
    # per-analyst share of threads (tested on its own in test_time_limits.py) is raised here.
    process = ServerProcess(store_path, shared_dir, extra_args=MANY_AT_ONCE).start()
    yield process
    process.stop()


@dataclass
class User:
    name: str
    token: str
    api: Api


def new_user(admin: AdminService, server: ServerProcess, **grants: tuple[float, float]) -> User:
    """A fresh user of the shared server with the given budgets."""
    name = f"user-{uuid.uuid4().hex[:10]}"
    token = admin.add_user(name)
    for dataset, (epsilon, delta) in grants.items():
        admin.grant(name, dataset, epsilon, delta)
    return User(name, token, Api(server.api, token))


@pytest.fixture
def make_user(admin: AdminService, server: ServerProcess) -> Callable[..., User]:
    """A fresh user with the given budgets, e.g. make_user(PENGUIN=(1.0, 1e-5))."""

    def make(**grants: tuple[float, float]) -> User:
        return new_user(admin, server, **grants)

    return make


@pytest.fixture
def anonymous(server: ServerProcess) -> Api:
    return Api(server.api)


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretDB]:
    server = FerretDB(tmp_path_factory.mktemp("ferretdb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def file_server() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL, started for this test session on a free loopback port."""
    server = PostgresServer().start()
    yield server
    server.stop()


# What each test needs beyond Python, marked from the fixtures it uses (so a new test is
# marked without thinking of it): a quick inner loop is
# scripts/test -m "not slow and not postgres and not ferretdb and not java".
_NEEDS = {"postgres_server": "postgres", "ferretdb": "ferretdb"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _NEEDS.items():
            if fixture in used:
                item.add_marker(marker)
        if "spark" in item.nodeid.lower():
            item.add_marker("java")
        if item.nodeid.startswith("tests/integration/"):
            item.add_marker("integration")
