"""Real servers for tests: the lomas server (stand-alone or inside a plain Jupyter server)
started as a subprocess on a free loopback port, and spoken to over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from lomas_server import api_contract

API = "/lomas/api/v1"
_TEMPLATES = [
    (re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "$"), path, method)
    for path, method, _ in api_contract.operations()
]


def check_reply(response: requests.Response) -> requests.Response:
    """Fail unless a reply to a documented operation is what api.yaml says it is."""
    path = response.request.path_url.split("?")[0].split(API, 1)[-1]
    method = (response.request.method or "").lower()
    for pattern, template, documented in _TEMPLATES:
        if documented == method and pattern.match(path):
            if not response.headers.get("Content-Type", "").startswith("application/json"):
                return response
            problem = api_contract.reply_problem(
                template, method, response.status_code, response.json()
            )
            assert problem is None, f"{method.upper()} {path} -> {response.status_code}: {problem}"
    return response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m lomas_server`` (or ``jupyter server`` with the extension) on loopback."""

    def __init__(
        self,
        store: Path | str,
        workdir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        as_jupyter_extension: bool = False,
    ) -> None:
        self.store = store
        self.workdir = workdir
        self.extra_args = extra_args
        self.as_jupyter_extension = as_jupyter_extension
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + API
        self.log_path = workdir / f"server-{self.port}.log"
        self.jupyter_token = "jupyter-" + os.urandom(8).hex()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def store_url(self) -> str:
        """A Path is an SQLite file; a string is a store URL as is (mongodb://...)."""
        return f"sqlite:///{self.store}" if isinstance(self.store, Path) else self.store

    def command(self) -> list[str]:
        common = [
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.workdir}",
            f"--IdentityProvider.token={self.jupyter_token}",
            f"--LomasServerApp.store_url={self.store_url}",
            "--ServerApp.open_browser=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            common.append("--allow-root")
        if self.as_jupyter_extension:
            return [
                sys.executable,
                "-m",
                "jupyter_server",
                "--ServerApp.jpserver_extensions={'lomas_server': True}",
                *common,
                *self.extra_args,
            ]
        return [sys.executable, "-m", "lomas_server", *common, *self.extra_args]

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                # Any answer means the server is up (503 when its admin store is down).
                requests.get(self.api + "/health", timeout=10)
                return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not come up within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Api:
    """HTTP calls to the API with an optional token; every reply is checked against api.yaml."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"token {token}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return check_reply(self.session.get(self.base + path, timeout=120, **kwargs))

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return check_reply(self.session.post(self.base + path, timeout=120, **kwargs))

    def send(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        """Any method (PUT, PATCH, ...), with a JSON body when given."""
        if body is not None:
            kwargs["json"] = body
        return check_reply(self.session.request(method, self.base + path, timeout=120, **kwargs))

    def sql(
        self, dataset: str, query: str, epsilon: float, delta: float = 0.0, **extra: Any
    ) -> requests.Response:
        body = {"query": query, "epsilon": epsilon, "delta": delta, **extra}
        return self.post(f"/datasets/{dataset}/smartnoise-sql", body)


class DemoProcess:
    """``lomas-server demo`` in a folder, on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> DemoProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.folder / "runtime")}
        with open(self.folder / "demo.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lomas_server",
                    "demo",
                    "--dir",
                    str(self.folder),
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.folder / "demo.log").read_text())
            try:
                if requests.get(self.url + API + "/health", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the demo server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


class FerretDB:
    """A real MongoDB-wire server (FerretDB on SQLite) on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str:
        candidates = [
            os.environ.get("LOMAS_FERRETDB"),
            str(Path(sys.executable).with_name("ferretdb")),
        ]
        for candidate in candidates:
            if candidate and Path(candidate).is_file():
                return candidate
        raise RuntimeError(
            "FerretDB is not built: run scripts/build-ferretdb (or set LOMAS_FERRETDB)"
        )

    def start(self, timeout: float = 30.0) -> FerretDB:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "ferretdb.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary(),
                    "--handler=sqlite",
                    f"--sqlite-url=file:{data}/",
                    f"--listen-addr=127.0.0.1:{self.port}",
                    f"--debug-addr=127.0.0.1:{free_port()}",
                    "--telemetry=disable",
                    f"--state-dir={self.workdir}",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "ferretdb.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("FerretDB did not start")

    def database_url(self, name: str) -> str:
        return f"{self.url}{name}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class MotoS3:
    """A real S3-compatible server (moto_server) on a free loopback port."""

    KEY_ID, SECRET = "lomas-test-key", "lomas-test-secret-SHOULD-NOT-LEAK"

    def __init__(self, workdir: Path, *, enforce_auth: bool = False) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.enforce_auth = enforce_auth
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MotoS3:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.enforce_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # every request checked: unknown keys denied
        binary = Path(sys.executable).with_name("moto_server")
        with open(self.workdir / "moto.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.endpoint + "/moto-api/", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.KEY_ID,
            aws_secret_access_key=self.SECRET,
        )

    def options(self) -> dict[str, str]:
        """The source options that reach this server with this server's credentials."""
        return {
            "endpoint_url": self.endpoint,
            "access_key_id": self.KEY_ID,
            "secret_access_key": self.SECRET,
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class AnalystJupyter:
    """The analyst's own Jupyter server (``jupyter server``, ``jupyter lab`` or ``jupyter
    notebook``: ``app``) with lomas-jupyter's server extension, on loopback; ``env`` says how
    it finds the DP server (LOMAS_URL and LOMAS_TOKEN, or a connection file)."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        *,
        app: str = "jupyter_server",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.env = env
        self.app = app  # the module run: jupyter_server, jupyterlab or notebook
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "analyst-" + os.urandom(8).hex()
        self.log_path = workdir / f"jupyter-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> AnalystJupyter:
        command = [
            sys.executable,
            "-m",
            self.app,
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.workdir}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            "--ServerApp.jpserver_extensions={'lomas_jupyter': True}",
            *self.extra_args,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        # Only what the test gives says where the DP server is: not the runner's own settings.
        base = {k: v for k, v in os.environ.items() if not k.startswith("LOMAS_")}
        env = {**base, "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"), **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter exited with {self.process.returncode}:\n{self.log()}")
            try:
                requests.get(self.url + "/api/status", timeout=10, headers=self.headers)
                return self
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyter did not come up within {timeout} s:\n{self.log()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.headers)
        return requests.get(self.url + path, timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class FileServer:
    """A small HTTP server for dataset downloads: files with ETags, and some broken paths.

    ``/forbidden/...`` answers 403; ``/cut/NAME`` announces NAME's full length and then closes
    the connection halfway through the body.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def _headers(self) -> bytes | None:
                path = self.path.split("?")[0]
                if path.startswith("/forbidden/"):
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                name = path.removeprefix("/cut")
                body = files.get(name)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hash(body) & 0xFFFFFFFF:x}"')
                self.end_headers()
                return body

            def do_HEAD(self) -> None:
                self._headers()

            def do_GET(self) -> None:
                body = self._headers()
                if body is None:
                    return
                if self.path.startswith("/cut/"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PostgresServer:
    """A real PostgreSQL server (Debian's) in a temporary folder, on a free loopback port."""

    def __init__(self) -> None:
        import tempfile

        # A folder of its own under /tmp: test folders are private to root, and PostgreSQL
        # runs as its own user.
        self.workdir = Path(tempfile.mkdtemp(prefix="lomas-pg-"))
        self.port = free_port()
        self.data = self.workdir / "pgdata"

    @staticmethod
    def _bin(name: str) -> str:
        for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (folder / name).exists():
                return str(folder / name)
        raise RuntimeError("PostgreSQL is not installed (Debian package 'postgresql')")

    def _as_owner(self, *command: str) -> list[str]:
        # PostgreSQL refuses to run as root; CI runs as root.
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return list(command)

    def start(self) -> PostgresServer:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            import shutil

            shutil.chown(self.workdir, "postgres")
        subprocess.run(
            self._as_owner(
                self._bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            self._as_owner(
                self._bin("pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.workdir / "pg.log"),
                "-w",
                "start",
                "-o",
                f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1",
            ),
            check=True,
            capture_output=True,
        )
        return self

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        import shutil

        subprocess.run(
            self._as_owner(self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.workdir, ignore_errors=True)
