"""Real servers for tests: the lomas server (stand-alone or inside a plain Jupyter server)
started as a subprocess on a free loopback port, and spoken to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

API = "/lomas/api/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m lomas_server`` (or ``jupyter server`` with the extension) on loopback."""

    def __init__(
        self,
        store: Path,
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

    def command(self) -> list[str]:
        common = [
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.workdir}",
            f"--IdentityProvider.token={self.jupyter_token}",
            f"--LomasServerApp.store_url=sqlite:///{self.store}",
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
                if requests.get(self.api + "/health", timeout=2).status_code == 200:
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
    """HTTP calls to the API with an optional token."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"token {token}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=120, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return self.session.post(self.base + path, timeout=120, **kwargs)

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
