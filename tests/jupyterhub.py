"""A real JupyterHub for tests: configurable-http-proxy (npm), the dummy authenticator, local
single-user servers, and lomas-server as a Hub-managed service, all on loopback.

The Hub is driven over its REST API with a test-only service token (``driver``): it starts
users' servers and makes their tokens. Code runs in a user's kernel through the single-user
server's own kernel API and websocket, as a notebook front-end would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "tests" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
BIN = Path(sys.executable).parent

CONFIG = """
import sys
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{folder}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.pid_file = "{folder}/hub.pid"
c.ConfigurableHTTPProxy.command = ["{proxy}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = ["{bin}/jupyterhub-singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.notebook_dir = "{folder}/home"
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
# What a deployment adds so that kernels find the service and their tokens may use it
# (docs/deploy.md): a kernel's token gets the subset of these scopes its user holds.
c.Spawner.environment = {{"LOMAS_URL": "http://127.0.0.1:{port}/services/lomas/"}}
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=lomas",
]
c.JupyterHub.services = [
    {{
        "name": "lomas",
        "url": "http://127.0.0.1:{lomas_port}",
        "command": {lomas_command},
        "environment": {{"LOMAS_IDENTITY": "hub", "LOMAS_STORE_URL": "{store_url}"}},
    }},
    {{"name": "driver", "api_token": "{driver_token}"}},
]
c.JupyterHub.load_groups = {groups}
c.JupyterHub.load_roles = [
    {{
        "name": "lomas-service",
        "services": ["lomas"],
        "scopes": ["read:users:groups", "read:roles:users"],
    }},
    # Every user's tokens may be used at the service; its groups say who may use it.
    {{"name": "user", "scopes": ["self", "access:services!service=lomas"]}},
    {{
        "name": "test-driver",
        "services": ["driver"],
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "admin:groups"],
    }},
]
"""


class JupyterHubProcess:
    """``jupyterhub`` with its proxy and the lomas service, in a folder of its own."""

    def __init__(
        self,
        folder: Path,
        store_url: str,
        *,
        groups: dict[str, list[str]],
        lomas_args: tuple[str, ...] = (),
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hub_api = f"{self.url}/hub/api"
        self.lomas_port = free_port()
        self.lomas_url = f"{self.url}/services/lomas/"
        self.driver_token = uuid.uuid4().hex
        (folder / "home").mkdir(parents=True, exist_ok=True)
        lomas_command = [
            str(BIN / "lomas-server"),
            "--ip=127.0.0.1",
            f"--port={self.lomas_port}",
            "--ServerApp.port_retries=0",
            "--allow-root",  # the tests run as root here and in CI
            *lomas_args,
        ]
        self.config = folder / "jupyterhub_config.py"
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                hub_port=free_port(),
                proxy_api_port=free_port(),
                folder=folder,
                proxy=PROXY,
                bin=BIN,
                lomas_port=self.lomas_port,
                lomas_command=json.dumps(lomas_command),
                store_url=store_url,
                driver_token=self.driver_token,
                groups=json.dumps({name: {"users": users} for name, users in groups.items()}),
            )
        )
        self.log_path = folder / "jupyterhub.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.driver_token}"

    def start(self, timeout: float = 90.0) -> JupyterHubProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "jupyterhub"), "-f", str(self.config)],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()  # its proxy may have outlived it
                raise RuntimeError(f"jupyterhub exited:\n{self.log()}")
            try:
                hub_up = self.session.get(f"{self.hub_api}/", timeout=2).ok
                lomas = requests.get(f"{self.lomas_url}lomas/api/v1/health", timeout=2)
                if hub_up and lomas.ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyterhub did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # the Hub stops its proxy, services and user servers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # A Hub that failed or was killed leaves its proxy running: stop it by its pid file.
        pid_file = self.folder / "proxy.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError, PermissionError):
                pass

    # -- the Hub's REST API, as its admin ----------------------------------------------------
    def hub(self, method: str, path: str, body: Any = None) -> Any:
        reply = self.session.request(method, f"{self.hub_api}/{path}", json=body, timeout=60)
        assert reply.status_code < 400, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json() if reply.content else None

    def user_token(self, user: str, scopes: list[str] | None = None) -> str:
        """A token of ``user``: with all their own rights (what their browser session holds),
        or only ``scopes``."""
        if not self._exists(user):
            self.hub("POST", "users", {"usernames": [user]})
        body: dict[str, Any] = {"note": "tests", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        return str(self.hub("POST", f"users/{user}/tokens", body)["token"])

    def _exists(self, user: str) -> bool:
        return self.session.get(f"{self.hub_api}/users/{user}", timeout=30).status_code == 200

    def start_server(self, user: str, timeout: float = 120.0) -> str:
        """Start ``user``'s single-user server; its URL through the proxy."""
        if not self._exists(user):
            self.hub("POST", "users", {"usernames": [user]})
        self.session.post(f"{self.hub_api}/users/{user}/server", timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.hub("GET", f"users/{user}")
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                return f"{self.url}/user/{user}/"
            time.sleep(0.5)
        raise RuntimeError(f"the server of {user} did not start:\n{self.log()[-4000:]}")


class RemoteKernel:
    """A kernel in a single-user server, run through its REST API and websocket."""

    def __init__(self, server_url: str, token: str) -> None:
        self.server_url = server_url
        self.token = token
        reply = requests.post(
            f"{server_url}api/kernels",
            json={"name": "python3"},
            headers={"Authorization": f"token {token}"},
            timeout=60,
        )
        assert reply.status_code == 201, reply.text
        self.kernel_id = reply.json()["id"]
        self.session_id = uuid.uuid4().hex

    def run(self, code: str, timeout: float = 120.0) -> dict[str, Any]:
        """Run ``code``: its text output, display data and error, if any."""
        return IOLoop.current().run_sync(lambda: self._run(code), timeout=timeout)

    async def _run(self, code: str) -> dict[str, Any]:
        ws_url = (
            self.server_url.replace("http://", "ws://")
            + f"api/kernels/{self.kernel_id}/channels?session_id={self.session_id}"
        )
        request = HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"})
        connection = await websocket_connect(request)
        msg_id = uuid.uuid4().hex
        connection.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "tests",
                        "session": self.session_id,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "stop_on_error": True},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out: dict[str, Any] = {"text": "", "data": [], "error": None}
        while True:
            raw = await connection.read_message()
            if raw is None:
                raise RuntimeError("the kernel's websocket closed")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                out["text"] += content["text"]
            elif kind in ("display_data", "execute_result"):
                out["data"].append(content["data"])
            elif kind == "error":
                out["error"] = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                connection.close()
                return out

    def shutdown(self) -> None:
        requests.delete(
            f"{self.server_url}api/kernels/{self.kernel_id}",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        )
