"""Shared fixtures: the real stand-ins and the real proxy, on loopback.

The stand-ins run in a background thread under uvicorn; the proxy runs as its own process
(``python -m proxy serve``), exactly as an operator starts it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from proxy.sandbox.auth0_standin import create_auth0_standin
from proxy.sandbox.standin import UpstreamIdp
from proxy.sandbox.workos_standin import create_workos_standin
from tests.hostile_kit import RawUpstream

ROOT = Path(__file__).resolve().parents[1]
CNAME_KEY = "test-cname-api-key"
CLIENT_ID = "client_test"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123"
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}  # for POST /-/reload

ROUTES_YAML = """\
version: 1
defaults:
  unknown: workos
  mode: normal
connections:
  acme-okta:
    protocol: saml
    state: workos
    audiences: [urn:auth0:globex-prod:acme-okta]
    issuers: [http://www.okta.com/acme]
  globex-adfs:
    protocol: saml
    state: legacy
    audiences: [urn:auth0:globex-prod:globex-adfs]
    issuers: [http://adfs.globex.com/adfs/services/trust]
  hooli-ping:
    protocol: saml
    state: workos
    audiences: [urn:auth0:globex-prod:hooli-ping]
  initech-entra:
    protocol: oidc
    state: workos
    client_ids: [3f2a9c1e-entra]
    issuers: [https://login.microsoftonline.com/initech/v2.0]
  umbrella-google:
    protocol: oidc
    state: legacy
    client_ids: [umbrella-google-client]
"""
MIGRATED = ("acme-okta", "initech-entra")
# Each connection's identity provider, as both stand-ins send a browser to it when they start a login.
IDPS = {
    "acme-okta": UpstreamIdp("saml", "https://acme.okta.test/app/sso/saml"),
    "globex-adfs": UpstreamIdp("saml", "https://adfs.globex.test/adfs/ls", binding="post"),
    "hooli-ping": UpstreamIdp("saml", "https://sso.hooli.test/idp/SSO.saml2"),
    "initech-entra": UpstreamIdp("oidc", "https://login.microsoftonline.test/initech/oauth2/v2.0/authorize"),
    "umbrella-google": UpstreamIdp("oidc", "https://accounts.google.test/o/oauth2/v2/auth"),
}


@dataclass(frozen=True)
class Started:
    """A login a stand-in started: the values the IdP will echo back."""

    state: str  # OIDC state, or SAML RelayState
    request_id: str | None = None  # SAML AuthnRequest ID (echoed as InResponseTo)


def read_started(response: httpx.Response) -> Started:
    """The state/RelayState and AuthnRequest ID of a response that starts a login (302 or auto-post page)."""
    import base64
    import re
    import zlib
    from urllib.parse import parse_qs, urlsplit

    if response.status_code in (301, 302, 303, 307):
        query = parse_qs(urlsplit(response.headers["location"]).query)
        if "SAMLRequest" in query:
            xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
            return Started(query["RelayState"][0], re.search(r' ID="([^"]+)"', xml).group(1))  # type: ignore[union-attr]
        return Started(query["state"][0])
    assert response.status_code == 200, response.text
    fields = dict(re.findall(r'name="(SAMLRequest|RelayState)" value="([^"]*)"', response.text))
    xml = base64.b64decode(fields["SAMLRequest"]).decode()
    return Started(fields["RelayState"], re.search(r' ID="([^"]+)"', xml).group(1))  # type: ignore[union-attr]


def big_routes_yaml(connections: int) -> str:
    """ROUTES_YAML plus ``connections`` generated SAML connections (about 200 bytes each)."""
    lines = [ROUTES_YAML.rstrip("\n")]
    for i in range(connections):
        lines += [
            f"  gen-{i:06d}:",
            "    protocol: saml",
            f"    state: {'workos' if i % 3 else 'legacy'}",
            f"    organization: org_{i:06d}",
            f"    audiences: ['urn:auth0:globex-prod:gen-{i:06d}']",
            f"    issuers: ['http://www.okta.com/exk{i:06d}']",
        ]
    return "\n".join(lines) + "\n"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_", "WORKOS_"))}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m proxy ARGS`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadServer:
    """An ASGI app served by uvicorn on a loopback port in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class StandIns:
    auth0: ThreadServer
    workos: ThreadServer
    proxy_port: int

    def received(self, which: str) -> list[dict[str, Any]]:
        server = self.auth0 if which == "auth0" else self.workos
        return list(httpx.get(f"{server.origin}/_standin/requests").json())

    def clear(self) -> None:
        for server in (self.auth0, self.workos):
            httpx.delete(f"{server.origin}/_standin/requests")

    def issue(self, connection: str, count: int) -> list[str]:
        """The states/RelayStates of ``count`` logins of ``connection`` started at Auth0, for load tests
        that send many callbacks Auth0 must accept (each is usable once)."""
        return [self.start(connection).state for _ in range(count)]

    def start(self, connection: str, at: str = "auth0") -> Started:
        """Start a login of ``connection`` at Auth0 (or WorkOS), as the app would, straight at the
        stand-in: the callback that carries its values is then one that service accepts."""
        if at == "auth0":
            url, headers = (
                f"{self.auth0.origin}/authorize?client_id=app&connection={connection}",
                {"cname-api-key": CNAME_KEY, "x-forwarded-for": "127.0.0.1"},  # as the proxy would send
            )
        else:
            url, headers = f"{self.workos.origin}/sso/authorize?connection={connection}", {}
        return read_started(httpx.get(url, headers=headers, timeout=10))


@dataclass
class ProxyProcess:
    """``python -m proxy serve`` as a child process, with its log lines collected."""

    env: dict[str, str]
    args: list[str]
    port: int
    admin_port: int
    proc: subprocess.Popen[str] | None = None
    log_lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, wait_ready: bool = True) -> ProxyProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait_ready:
            try:
                self.wait_ready()
            except BaseException:  # never leave an orphaned proxy behind a failed start
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError("proxy exited: " + "\n".join(self.log_lines))
            try:
                if httpx.get(f"{self.admin}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("proxy not ready: " + "\n".join(self.log_lines))

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()  # else a ResourceWarning, an error under filterwarnings=error
        return code

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.admin}/metrics").text
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out


def proxy_env(auth0_origin: str, workos_domain: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_", "WORKOS_"))}
    env.update(
        {
            "WORKOS_CUSTOM_DOMAIN": workos_domain,
            "WORKOS_CLIENT_ID": CLIENT_ID,
            "AUTH0_FALLBACK_ORIGIN": auth0_origin,
            "AUTH0_CNAME_API_KEY": CNAME_KEY,
            "SSO_PROXY_WORKOS_SCHEME": "http",
            "SSO_PROXY_DRAIN_SECONDS": "0",
            "SSO_PROXY_SHUTDOWN_TIMEOUT": "5",
            "SSO_PROXY_RELOAD_INTERVAL": "0.2",
            "SSO_PROXY_RELOAD_SETTLE": "0.1",
            "SSO_PROXY_ADMIN_TOKEN": ADMIN_TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def standins() -> Iterator[StandIns]:
    proxy_port = free_port()
    # The Auth0 stand-in issues states of another form than Auth0's own here, so an Auth0-started
    # login without its cookie follows the map, as these tests of the map expect. Auth0's own form
    # (the second witness, issue 23) is tested in tests/test_witness.py and tests/e2e.
    auth0 = ThreadServer(create_auth0_standin(CNAME_KEY, idps=IDPS, state_form="opaque")).start()
    workos = ThreadServer(
        create_workos_standin(CLIENT_ID, f"http://127.0.0.1:{proxy_port}", MIGRATED, idps=IDPS)
    ).start()
    yield StandIns(auth0, workos, proxy_port)
    auth0.stop()
    workos.stop()


def start_proxy(standins: StandIns, routes: Path, port: int | None = None, **env: str) -> ProxyProcess:
    admin_port = free_port()
    port = port or free_port()
    proc = ProxyProcess(
        env=proxy_env(standins.auth0.origin, f"127.0.0.1:{standins.workos.port}", **env),
        args=["--routes", str(routes), "--port", str(port), "--admin-port", str(admin_port)],
        port=port,
        admin_port=admin_port,
    )
    return proc.start()


@pytest.fixture(scope="session")
def routes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("routes") / "routes.yaml"
    path.write_text(ROUTES_YAML)
    return path


@pytest.fixture(scope="session")
def proxy(standins: StandIns, routes_file: Path) -> Iterator[ProxyProcess]:
    """The proxy in front of the stand-ins, on the port the WorkOS stand-in sends fallbacks to."""
    proc = start_proxy(standins, routes_file, port=standins.proxy_port)
    yield proc
    proc.stop()


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=10) as c:
        yield c


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The browser suite last: it is the slowest, and its session fixtures hold a browser open."""
    items.sort(key=lambda item: "tests/e2e/" in item.nodeid)


# --- the real server in front of a raw Auth0 (tests/hostile_kit.py) --------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[RawUpstream]:
    """Auth0 as bytes on the wire: what the proxy sends it is recorded byte for byte."""
    raw = RawUpstream().start()
    yield raw
    raw.stop()


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of ROUTES_YAML for one module's servers."""
    path = tmp_path_factory.mktemp("routes") / "routes.yaml"
    path.write_text(ROUTES_YAML)
    return path


def start_against(upstream: RawUpstream, routes: Path, **env: str) -> ProxyProcess:
    """The real server on free loopback ports, forwarding to ``upstream`` (WorkOS unreachable; the
    file watch off unless ``env`` turns it on)."""
    port, admin = free_port(), free_port()
    return ProxyProcess(
        env=proxy_env(upstream.origin, "127.0.0.1:9", **{"SSO_PROXY_RELOAD_INTERVAL": "0", **env}),
        args=["--routes", str(routes), "--port", str(port), "--admin-port", str(admin)],
        port=port,
        admin_port=admin,
    ).start()


@pytest.fixture()
def record(upstream: RawUpstream) -> RawUpstream:
    """The raw Auth0's record, emptied: what one test sent it."""
    upstream.requests.clear()
    return upstream


def rejected(proc: ProxyProcess, reason: str) -> float:
    """``sso_proxy_rejected_requests_total{reason}`` of a running proxy."""
    return proc.scrape().get(("sso_proxy_rejected_requests_total", (("reason", reason),)), 0.0)
