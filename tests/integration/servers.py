"""Real servers (uvicorn, gunicorn) running the demo's own settings (``testproject.settings``)
pointed at the test cluster's database, and an HTTP client with a cookie jar to talk to them
as a browser or an API client would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from django.conf import settings
from django.db import connections

ROOT = Path(__file__).resolve().parents[2]
REPLICAS: list[str] = list(settings.PGREPLICA["REPLICAS"])
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env() -> dict[str, str]:
    """The demo settings' environment, pointed at the test database on the test cluster."""
    primary = connections[settings.PGREPLICA["PRIMARY"]].settings_dict
    replicas = [connections[alias].settings_dict for alias in REPLICAS]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "DJANGO_")) and key != "PGREPLICA_READ_YOUR_WRITES"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="testproject.settings",
        PYTHONPATH=str(ROOT),
        DATABASE_HOST=str(primary["HOST"]),
        DATABASE_PORT=str(primary["PORT"]),
        DATABASE_NAME=str(primary["NAME"]),  # test_<name>: where the tests' rows are
        DATABASE_USER=str(primary["USER"]),
        DATABASE_PASSWORD=str(primary.get("PASSWORD") or ""),
        DATABASE_REPLICAS=",".join(f"{r['HOST']}:{r['PORT']}" for r in replicas),
        # No broker: the order confirmation runs inline after the commit that queued it.
        CELERY_TASK_ALWAYS_EAGER="1",
    )
    return env


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def start_server(name: str, command: Callable[[int], list[str]], log: Path, **env: str) -> Server:
    """``command(port)`` (a server's argv) on a free port, once it accepts connections."""
    for _attempt in range(3):  # another process may take the port between probe and bind
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                command(port),
                cwd=ROOT,
                env={**server_env(), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return server
            except OSError:
                time.sleep(0.05)  # polling for the server to come up
        stop(server)
        if "address already in use" not in server.log_tail().lower():
            pytest.fail(f"{name} did not come up:\n{server.log_tail()}", pytrace=False)
    pytest.fail(f"{name} found no free port in 3 attempts", pytrace=False)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    data: Any


@dataclass
class HttpClient:
    """One client of the server: a browser's cookie jar, and headers it adds itself."""

    server: Server
    headers: dict[str, str] = field(default_factory=dict)
    jar: CookieJar = field(default_factory=CookieJar)

    def __post_init__(self) -> None:
        # No ProxyHandler from the environment: an http_proxy must not see 127.0.0.1.
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Response:
        headers = {"Accept": "application/json", **self.headers}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.server.url + path, data, headers, method=method)
        try:
            with self.opener.open(req, timeout=10) as resp:
                status, raw, got = resp.status, resp.read(), resp.headers
        except HTTPError as err:  # 4xx/5xx still carry the JSON answer
            status, raw, got = err.code, err.read(), err.headers
        assert status < 500, f"{method} {path}: {status}\n{self.server.log_tail()}"
        parsed = json.loads(raw) if got.get_content_type() == "application/json" else raw
        return Response(status, dict(got.items()), parsed)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def cookies(self) -> set[str]:
        return {cookie.name for cookie in self.jar}
