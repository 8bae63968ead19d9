"""``lomas-server demo``: a working service with sample data in one command.

Creates (or reuses) an admin store in a folder, with the bundled Palmer penguins and Titanic
datasets, a ``demo`` user holding a budget on each, writes ``connection.json`` for clients and
starts the server on 127.0.0.1. Re-running it keeps the store, hence the budget already spent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from traitlets import Bool, Int, Unicode
from traitlets.config import Application

from lomas_server.errors import ServiceError
from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore

DEMO_USER = "demo"
# An admin of the demo service, for examples/admin.ipynb (AdminClient.discover finds its file).
DEMO_ADMIN = "demo-admin"
ADMIN_CONNECTION_FILE = "admin-connection.json"
ADMIN_TOKEN_FILE = ".demo-admin-token"
STORE_FILE = "admin.sqlite"
CONNECTION_FILE = "connection.json"
TOKEN_FILE = ".demo-token"


@dataclass(frozen=True)
class SampleDataset:
    name: str
    file: str
    metadata: str
    epsilon: float
    delta: float


SAMPLES = (
    SampleDataset("PENGUIN", "penguin.csv", "penguin.yaml", epsilon=10.0, delta=1e-3),
    SampleDataset("TITANIC", "titanic.csv", "titanic.yaml", epsilon=10.0, delta=1e-3),
)


def prepare_demo(folder: Path) -> tuple[str, list[str]]:
    """Create or reuse the demo store; return the demo user's token and the dataset names.
    The demo admin's token is left in its own file (write_connection writes its connection)."""
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = folder / "data"
    data_dir.mkdir(exist_ok=True)
    store = SqliteStore(folder / STORE_FILE)
    try:
        admin = AdminService(store)
        token = _demo_token(admin, folder, DEMO_USER, TOKEN_FILE)
        _demo_token(admin, folder, DEMO_ADMIN, ADMIN_TOKEN_FILE, is_admin=True)
        for sample in SAMPLES:
            if store.get_dataset(sample.name) is None:
                path = _copy_sample(sample.file, data_dir)
                metadata = yaml.safe_load(_sample_text(sample.metadata))
                admin.add_dataset(sample.name, path, metadata)
            if store.get_grant(DEMO_USER, sample.name) is None:
                admin.grant(DEMO_USER, sample.name, sample.epsilon, sample.delta)
        return token, [sample.name for sample in SAMPLES]
    finally:
        store.close()


def _demo_token(
    admin: AdminService, folder: Path, user: str, file_name: str, *, is_admin: bool = False
) -> str:
    token_file = folder / file_name
    if admin.store.get_user(user) is None:
        token = admin.add_user(user, is_admin=is_admin)
    elif token_file.exists():
        return token_file.read_text().strip()
    else:
        # Only the token's hash is stored; if its file is gone, issue a new one.
        token = admin.rotate_token(user)
    _write_private(token_file, token + "\n")
    return token


def _sample_text(name: str) -> str:
    return resources.files("lomas_server.sample_data").joinpath(name).read_text(encoding="utf-8")


def _copy_sample(name: str, data_dir: Path) -> Path:
    target = data_dir / name
    with resources.as_file(resources.files("lomas_server.sample_data").joinpath(name)) as source:
        shutil.copyfile(source, target)
    return target


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_connection(folder: Path, url: str, token: str, datasets: list[str]) -> Path:
    path = folder / CONNECTION_FILE
    payload = {"url": url, "user": DEMO_USER, "token": token, "datasets": datasets}
    _write_private(path, json.dumps(payload, indent=2) + "\n")
    admin_token = (folder / ADMIN_TOKEN_FILE).read_text().strip()
    admin_payload = {"url": url, "user": DEMO_ADMIN, "token": admin_token}
    _write_private(folder / ADMIN_CONNECTION_FILE, json.dumps(admin_payload, indent=2) + "\n")
    return path


def _instructions(url: str, connection: Path, token: str) -> str:
    api = f"{url}/lomas/api/v1"
    return f"""
lomas demo server: {api}
  connection file: {connection}
  user: {DEMO_USER}   datasets: PENGUIN, TITANIC
  admin: {DEMO_ADMIN} (examples/admin.ipynb; {ADMIN_CONNECTION_FILE})

Try it:
  curl -H "Authorization: token {token}" {api}/datasets
  curl -H "Authorization: token {token}" -H "Content-Type: application/json" \\
       -d '{{"query": "SELECT species, COUNT(*) AS n FROM df GROUP BY species", "epsilon": 0.5}}' \\
       {api}/datasets/PENGUIN/smartnoise-sql

From Python:
  from lomas_jupyter import Client
  client = Client.from_file("{connection}")
  client.smartnoise_sql("PENGUIN", "SELECT COUNT(*) AS n FROM df", epsilon=0.5)
"""


class DemoApp(Application):
    """``lomas-server demo``: the server's subcommand that starts a demo on 127.0.0.1."""

    name = "lomas-server demo"
    description = "Start a demo DP server with sample datasets on 127.0.0.1."

    dir = Unicode("lomas-demo", help="Folder for the demo store and connection file.").tag(
        config=True
    )
    port = Int(0, help="Port to listen on (default: a free one).").tag(config=True)
    setup_only = Bool(
        False, help="Create the store and connection file, do not start the server."
    ).tag(config=True)

    aliases = {"dir": "DemoApp.dir", "port": "DemoApp.port"}
    flags = {
        "setup-only": (
            {"DemoApp": {"setup_only": True}},
            "Create the store and connection file, do not start the server.",
        )
    }

    def start(self) -> None:
        self.exit(self.run())

    def run(self) -> int:
        folder = Path(self.dir).resolve()
        try:
            token, datasets = prepare_demo(folder)
        except ServiceError as err:
            print(f"lomas-server demo: {err.message}", file=sys.stderr)
            return 2
        port = self.port or free_port()
        url = f"http://127.0.0.1:{port}"
        connection = write_connection(folder, url, token, datasets)
        print(_instructions(url, connection, token), flush=True)
        if self.setup_only:
            return 0
        from lomas_server.app import launch

        # The server is the process's one application from here on (traitlets keeps one).
        type(self).clear_instance()
        server_args = [
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={folder}",
            f"--LomasServerApp.store_url=sqlite:///{folder / STORE_FILE}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            server_args.append("--allow-root")
        return launch(server_args)
