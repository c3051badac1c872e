"""Real servers on loopback: ASGI apps under uvicorn in threads, and the proxy as a subprocess.

Every readiness wait polls with a deadline; nothing sleeps in the hope that a server is up.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import uvicorn

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE = 20.0


def wait_for(check: Callable[[], bool], what: str, deadline: float = START_DEADLINE) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` when ``deadline`` seconds pass."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    """A loopback port nobody listens on right now (for the proxy, which binds its own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One plain HTTP exchange without following redirects; (status, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


class ThreadedServer:
    """An ASGI app served by uvicorn in a background thread with its own event loop.

    The socket is bound at construction, so the port is known before the app is built (the apps
    and the proxy need each other's URLs).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, app: Any, **options: Any) -> Self:
        """Serve ``app``; ``options`` go to ``uvicorn.Config`` (a TLS server's certificate files)."""
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto", **options)
        server = self._server = uvicorn.Server(config)
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._socket]}, name=self.name, daemon=True
        )
        thread.start()
        wait_for(lambda: server.started or not thread.is_alive(), f"{self.name} to start")
        if not server.started:
            raise RuntimeError(f"{self.name} failed to start")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._socket.close()


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request a stand-in received."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class StandIn(ThreadedServer):
    """A server that records what it receives (the sandbox stand-ins, the app page)."""

    def __init__(self, name: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(name)
        self.headers = dict(headers or {})  # sent with our own /_standin calls

    def requests(self) -> list[Recorded]:
        status, body = http("GET", f"{self.origin}/_standin/requests", headers=self.headers)
        assert status == 200, f"{self.name} /_standin/requests answered {status}"
        return [
            Recorded(
                method=item["method"],
                path=item["path"],
                query=item["query"],
                headers=[(k, v) for k, v in item["headers"]],
                body=base64.b64decode(item["body_b64"]),
            )
            for item in json.loads(body)
            # Chromium asks every origin it lands on for a favicon; that is not part of a flow.
            if not item["path"].startswith("/_standin/") and item["path"] != "/favicon.ico"
        ]

    def clear(self) -> None:
        status, _ = http("DELETE", f"{self.origin}/_standin/requests", headers=self.headers)
        assert status in (200, 204), f"{self.name} DELETE /_standin/requests answered {status}"


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Labels = frozenset[tuple[str, str]]


def parse_metrics(text: str, name: str) -> dict[Labels, float]:
    """The samples of one metric in Prometheus text format, keyed by their label set."""
    samples: dict[Labels, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            labels = frozenset(_LABEL.findall(match["labels"] or ""))
            samples[labels] = float(match["value"])
    return samples


class ProxyProcess:
    """``python -m proxy serve`` as a subprocess, its log in a file, its operations listener polled."""

    def __init__(self, routes: Path, env: Mapping[str, str], log: Path) -> None:
        self.routes = routes
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.log = log
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_", "WORKOS_"))}
        self._env = {**inherited, **env}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> ProxyProcess:
        """Spawn the process; :meth:`wait_ready` waits for it (so several can start at once)."""
        command = [
            sys.executable, "-m", "proxy", "serve",
            "--routes", str(self.routes),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--admin-port", str(self.admin_port),
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=REPO, env=self._env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self) -> ProxyProcess:
        try:
            wait_for(self._ready, f"the proxy's /readyz on {self.admin}")
        except TimeoutError:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"the proxy exited with {self._process.returncode}:\n{self.log_text()}")
        try:
            return http("GET", f"{self.admin}/readyz")[0] == 200
        except OSError:
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def callbacks(self) -> dict[Labels, float]:
        """``sso_proxy_callbacks_total`` as it stands now."""
        status, body = http("GET", f"{self.admin}/metrics")
        assert status == 200, f"/metrics answered {status}"
        return parse_metrics(body.decode(), "sso_proxy_callbacks_total")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
