"""``sso-proxy sandbox``: what it prints, its flags, and the stand-ins against a proxy run separately.

The sandbox runs as an operator starts it (``python -m proxy sandbox`` in a child process); the
proxy under test in ``--standins-only`` mode is a real ``python -m proxy serve`` configured with
exactly the settings the sandbox printed.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from proxy.errors import ConfigError
from proxy.routing.routemap import parse_routemap
from proxy.sandbox.auth0_standin import accepted_encoding
from proxy.sandbox.run import SANDBOX_CNAME_API_KEY, SandboxPlan, check_plan, parse_origin, port_in_use, sandbox_help
from tests.conftest import ROOT, ROUTES_YAML, ProxyProcess, free_port, read_started

FORM = {"content-type": "application/x-www-form-urlencoded"}
ROUTE_MAP = parse_routemap(ROUTES_YAML)


# --- pure parts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "origin"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        (" https://login.example.com ", "https://login.example.com"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("ftp://127.0.0.1", None),
        ("127.0.0.1:8000", None),
        ("http://127.0.0.1:8000/login/callback", None),
        ("http://127.0.0.1:8000?x=1", None),
        ("http://127.0.0.1:8000#x", None),
        ("http://user@127.0.0.1:8000", None),
        ("http://127.0.0.1:99999", None),
        ("http://", None),
        ("", None),
    ],
)
def test_parse_origin(value: str, origin: str | None) -> None:
    if origin is None:
        with pytest.raises(ConfigError, match="--proxy-origin"):
            parse_origin(value)
    else:
        assert parse_origin(value) == origin


@pytest.mark.parametrize(
    ("plan", "result"),
    [
        (SandboxPlan("r.yaml"), ("acme-okta", "hooli-ping", "initech-entra")),
        (SandboxPlan("r.yaml", migrated=("acme-okta",)), ("acme-okta",)),
        (SandboxPlan("r.yaml", migrated=()), ()),
        (SandboxPlan("r.yaml", migrated=("acme-okta", "nope")), "--migrated: nope not in the route map r.yaml"),
        (SandboxPlan("r.yaml", auth0_port=8080), "public listener and Auth0 stand-in both on port 8080"),
        (SandboxPlan("r.yaml", workos_port=9090), "operations listener and WorkOS stand-in both on port 9090"),
        (SandboxPlan("r.yaml", auth0_port=8080, standins_only=True), ("acme-okta", "hooli-ping", "initech-entra")),
        (SandboxPlan("r.yaml", port=0), "public listener port 0: must be 1-65535"),
        (SandboxPlan("r.yaml", workos_port=70000), "WorkOS stand-in port 70000: must be 1-65535"),
    ],
)
def test_check_plan(plan: SandboxPlan, result: tuple[str, ...] | str) -> None:
    if isinstance(result, str):
        with pytest.raises(ConfigError) as info:
            check_plan(plan, ROUTE_MAP)
        assert str(info.value) == result
    else:
        assert check_plan(plan, ROUTE_MAP) == result


@pytest.mark.parametrize(
    ("host", "browser", "loopback"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "localhost", "127.0.0.1"),
        ("::", "localhost", "[::1]"),
        ("::1", "[::1]", "[::1]"),
    ],
)
def test_hosts_as_reached(host: str, browser: str, loopback: str) -> None:
    plan = SandboxPlan("r.yaml", host=host)
    assert (plan.browser_host, plan.loopback_host) == (browser, loopback)
    assert plan.public == f"http://{browser}:8080"
    assert plan.proxy_env()["AUTH0_FALLBACK_ORIGIN"] == f"http://{loopback}:8081"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip, deflate, br, zstd", "br"),  # what Chromium and Firefox send
        ("gzip, deflate, br", "br"),
        ("gzip, deflate, zstd", "zstd"),
        ("gzip, deflate", "gzip"),
        ("BR;q=0.5, gzip", "br"),
        ("br;q=0, zstd;Q=0, gzip;q=0.1", "gzip"),  # q=0 refuses
        ("*", "br"),
        ("*;q=0, gzip", "gzip"),
        ("br;q=x, deflate", None),  # an unreadable weight refuses
        ("identity", None),
        ("", None),
        (" , ;q=1", None),
    ],
)
def test_accepted_encoding(accept: str, chosen: str | None) -> None:
    """The Auth0 stand-in's page compression, as an edge negotiates it (RFC 9110 section 12.5.3)."""
    assert accepted_encoding(accept) == chosen


@pytest.mark.parametrize("standins_only", [False, True])
def test_help_prints_every_address_and_secret(standins_only: bool) -> None:
    plan = SandboxPlan("routes.yaml", proxy_origin="http://127.0.0.1:7000", standins_only=standins_only)
    text = sandbox_help(plan, ROUTE_MAP, ("acme-okta", "initech-entra"))
    for value in plan.proxy_env().values():
        assert value in text
    assert f"cname-api-key: {SANDBOX_CNAME_API_KEY}" in text
    for port in plan.listeners().values():
        assert f":{port}" in text
    assert "sends the rest to  http://127.0.0.1:7000/login/callback?...&fallback=auth0" in text
    # The fallback example uses the connection that is cut over in the map but unknown to WorkOS.
    examples = "http://127.0.0.1:7000" if standins_only else "http://127.0.0.1:8080"
    assert f"'{examples}/login/callback?connection=hooli-ping'" in text
    assert ("sso-proxy serve --routes routes.yaml --port 7000" in text) is standins_only
    assert ("/metrics" in text) is not standins_only


def test_help_without_examples_for_what_the_map_lacks() -> None:
    route_map = parse_routemap(
        "version: 1\ndefaults: {unknown: auth0, mode: normal}\nconnections:\n"
        "  only-oidc: {protocol: oidc, state: workos}\n"
    )
    text = sandbox_help(SandboxPlan("r.yaml"), route_map, ("only-oidc",))
    assert "SAML" not in text and "legacy connection" not in text and "fallback=auth0 -> Auth0" not in text
    assert "code=abc&state=xyz" in text
    text = sandbox_help(SandboxPlan("r.yaml"), route_map, ())
    assert "handles:           (none)" in text
    assert "?connection=only-oidc" in text  # cut over in the map, unknown to WorkOS: the fallback example


def test_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use("127.0.0.1", sock.getsockname()[1])
    assert not port_in_use("127.0.0.1", free_port())
    assert not port_in_use("no-such-host.invalid", 8080)  # left to the listener's own error


# --- the command ----------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """``python -m proxy sandbox`` in a child process; its stdout collected line by line."""

    args: list[str]
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def start(self) -> Sandbox:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "sandbox", *self.args],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_", "WORKOS_"))},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pipe, sink in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._read, args=(pipe, sink), daemon=True).start()
        return self

    @staticmethod
    def _read(pipe: object, sink: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))

    def banner(self, timeout: float = 30) -> str:
        """The printed text, once the last line of it (the last example command) is out."""
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if any("authorize?client_id=app" in line for line in self.lines):
                time.sleep(0.1)  # the lines after it are written in the same call
                return "\n".join(self.lines)
            if self.proc.poll() is not None:
                raise RuntimeError("sandbox exited: " + "\n".join(self.errors))
            time.sleep(0.05)
        raise RuntimeError("no banner: " + "\n".join(self.lines + self.errors))

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def finish(self) -> tuple[int, str, str]:
        assert self.proc is not None
        code = self.proc.wait(30)
        time.sleep(0.1)
        self.stop()
        return code, "\n".join(self.lines), "\n".join(self.errors)


def ports(n: int) -> list[str]:
    return [str(free_port()) for _ in range(n)]


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_YAML)
    return path


@pytest.fixture
def sandbox(routes: Path) -> Iterator[tuple[Sandbox, str, dict[str, str]]]:
    public, admin, auth0, workos, api = ports(5)
    box = Sandbox(
        [
            *("--routes", str(routes), "--port", public, "--admin-port", admin, "--auth0-port", auth0),
            *("--workos-port", workos, "--workos-api-port", api, "--migrated", "globex-adfs,acme-okta,initech-entra"),
        ]
    ).start()
    text = box.banner()
    yield box, text, {"public": public, "admin": admin, "auth0": auth0, "workos": workos, "api": api}
    assert box.stop() == 0


def test_sandbox_serves_each_path_it_prints(sandbox: tuple[Sandbox, str, dict[str, str]]) -> None:
    _, text, port = sandbox
    public = f"http://127.0.0.1:{port['public']}"
    auth0 = f"http://127.0.0.1:{port['auth0']}"
    assert f"Auth0 stand-in       {auth0}  (demands the header cname-api-key: sandbox-cname-api-key," in text
    assert f"AUTH0_CNAME_API_KEY={SANDBOX_CNAME_API_KEY}" in text
    assert "handles:           globex-adfs, acme-okta, initech-entra" in text
    # Labels come from the map: globex-adfs is handled by the WorkOS stand-in but legacy in the map.
    assert "connection=globex-adfs' --data-urlencode" not in text
    # The printed key is the one the Auth0 stand-in demands.
    assert httpx.get(f"{auth0}/authorize").status_code == 403
    assert httpx.get(f"{auth0}/authorize", headers={"cname-api-key": SANDBOX_CNAME_API_KEY}).status_code == 400
    as_proxied = {"cname-api-key": SANDBOX_CNAME_API_KEY, "x-forwarded-for": "198.51.100.7"}
    assert httpx.get(f"{auth0}/authorize", headers=as_proxied).status_code == 302
    # Every printed curl command does what its comment says (run with httpx, not a shell).
    cut_over = httpx.post(f"{public}/login/callback?connection=acme-okta", content="SAMLResponse=PHNhbWw%2B")
    assert cut_over.status_code == 307
    assert cut_over.headers["location"].startswith(f"http://127.0.0.1:{port['workos']}/sso/client_sandbox/")
    legacy = httpx.post(f"{public}/login/callback?connection=globex-adfs", content="SAMLResponse=x", headers=FORM)
    assert legacy.status_code == 302 and "auth0" in legacy.headers["set-cookie"]
    bounced = httpx.post(
        f"{public}/login/callback?connection=hooli-ping", content="SAMLResponse=x", headers=FORM, follow_redirects=True
    )
    assert bounced.text == "<h1>Signed in through Auth0</h1>"
    assert [r.status_code for r in bounced.history] == [307, 307, 302]
    routes = httpx.get(f"http://127.0.0.1:{port['admin']}/routes").json()
    assert routes["source"].endswith("routes.yaml")


def test_standins_only_against_a_proxy_run_with_the_printed_settings(routes: Path) -> None:
    proxy_port, admin_port, auth0, workos = ports(4)
    box = Sandbox(
        [
            *("--standins-only", "--routes", str(routes), "--auth0-port", auth0, "--workos-port", workos),
            *("--proxy-origin", f"http://127.0.0.1:{proxy_port}"),
            # States of another form than Auth0's own: an unknown connection's Auth0-started login takes
            # the WorkOS detour below (with Auth0's form it goes straight to Auth0, tests/test_witness.py).
            *("--auth0-state-form", "opaque"),
        ]
    ).start()
    try:
        text = box.banner()
        # No proxy of its own: neither of the default proxy ports is taken, nothing about them is printed.
        assert "public listener" not in text and "operations listener" not in text
        assert "handles:           acme-okta, hooli-ping, initech-entra" in text  # state workos in --routes
        command = next(line for line in text.splitlines() if "AUTH0_CNAME_API_KEY=" in line)
        env = dict(word.split("=", 1) for word in shlex.split(command.rstrip("\\")))
        assert f"sso-proxy serve --routes {routes} --port {proxy_port}" in text
        proxy = ProxyProcess(
            env={**{k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_"))}, **env},
            args=["--routes", str(routes), "--port", proxy_port, "--admin-port", admin_port],
            port=int(proxy_port),
            admin_port=int(admin_port),
        ).start()
        try:
            # Logins the app started at Auth0 (the stand-in refuses a state it did not issue, as Auth0 does).
            def started(connection: str) -> str:
                reply = httpx.get(
                    f"http://127.0.0.1:{auth0}/authorize?connection={connection}",
                    headers={"cname-api-key": SANDBOX_CNAME_API_KEY, "x-forwarded-for": "127.0.0.1"},
                )
                return read_started(reply).state

            # Legacy: forwarded, and the Auth0 stand-in accepted the key the proxy was given.
            legacy = httpx.post(
                f"{proxy.url}/login/callback?connection=globex-adfs",
                content=f"RelayState={started('globex-adfs')}",
                headers=FORM,
            )
            assert legacy.status_code == 302
            # A connection WorkOS does not handle: bounced back to the proxy under test, then to Auth0.
            flow = httpx.post(
                f"{proxy.url}/login/callback?connection=umbrella-google&fallback=auth0",
                content=f"state={started('umbrella-google')}",
                headers=FORM,
            )
            assert flow.status_code == 302
            unknown = httpx.post(
                f"{proxy.url}/login/callback?connection=nobody",
                content=f"RelayState={started('globex-adfs')}",
                headers=FORM,
                follow_redirects=True,
            )
            hops = [str(r.url).split("/")[2] for r in unknown.history]
            assert hops == [f"127.0.0.1:{proxy_port}", f"127.0.0.1:{workos}", f"127.0.0.1:{proxy_port}"]
            assert unknown.text == "<h1>Signed in through Auth0</h1>"
        finally:
            assert proxy.stop() == 0
    finally:
        assert box.stop() == 0


@pytest.mark.parametrize("standins_only", [False, True])
def test_port_in_use_ends_with_one_line_naming_it(routes: Path, standins_only: bool) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        public, admin, auth0 = ports(3)
        args = ["--routes", str(routes), "--port", public, "--admin-port", admin, "--auth0-port", auth0]
        code, out, err = (
            Sandbox([*args, "--workos-port", busy] + (["--standins-only"] * standins_only)).start().finish()
        )
    assert code == 2
    assert out == ""
    where = f"WorkOS stand-in port {busy} on 127.0.0.1"
    assert err == f"sso-proxy sandbox: {where} is in use (choose another: --workos-port <port>)"


@pytest.mark.parametrize(
    ("message", "via_make", "expected"),
    [
        (
            "public listener port 8080 on 127.0.0.1 is in use (choose another with its flag)",
            True,
            "public listener port 8080 on 127.0.0.1 is in use (choose another: make run PORT=<port>)",
        ),
        (
            "operations listener port 9090 on 127.0.0.1 is in use (choose another with its flag)",
            True,
            "operations listener port 9090 on 127.0.0.1 is in use (choose another: make run ADMIN_PORT=<port>)",
        ),
        (
            "Auth0 stand-in port 8081 on 127.0.0.1 is in use (choose another with its flag)",
            False,
            "Auth0 stand-in port 8081 on 127.0.0.1 is in use (choose another: --auth0-port <port>)",
        ),
        ("--port: must be a whole number", True, "--port: must be a whole number"),  # other errors as they are
    ],
)
def test_a_port_in_use_names_the_flag_or_the_make_variable(message: str, via_make: bool, expected: str) -> None:
    from proxy.cli import port_hint

    assert port_hint(message, via_make) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxy-origin", "localhost:8080"], "sso-proxy sandbox: --proxy-origin: 'localhost:8080' is not an origin"),
        (["--migrated", "nope"], "sso-proxy sandbox: --migrated: nope not in the route map"),
        (
            ["--routes", "missing.yaml"],
            "sso-proxy sandbox: route map missing.yaml is invalid:\n  missing.yaml: cannot read",
        ),
    ],
)
def test_bad_flags_end_with_a_clear_line(routes: Path, args: list[str], message: str) -> None:
    code, out, err = Sandbox(["--routes", str(routes), *args, "--standins-only"]).start().finish()
    assert (code, out) == (2, "")
    assert err.startswith(message)
    assert "Traceback" not in err


def test_the_operator_commands_work_against_the_sandbox(tmp_path: Path) -> None:
    """The printed WORKOS_* assignments point `routes check` and the readiness gate of `routes set`
    at the sandbox's WorkOS API stand-in; its connections mirror what the WorkOS stand-in handles;
    the printed binding key is the one the proxy signs with."""
    routes = tmp_path / "routes.yaml"
    routes.write_text((Path(ROOT) / "routes.yaml").read_text())
    public, admin, auth0, workos, api = ports(5)
    box = Sandbox(
        [
            *("--routes", str(routes), "--port", public, "--admin-port", admin, "--auth0-port", auth0),
            *("--workos-port", workos, "--workos-api-port", api, "--migrated", "acme-okta,initech-entra"),
        ]
    ).start()
    try:
        text = box.banner()
        exports = dict(
            line.strip().removeprefix("export ").split("=", 1) for line in text.splitlines() if "export " in line
        )
        assert exports == {
            "SSO_PROXY_ROUTES": str(routes),
            "WORKOS_BASE_URL": f"http://127.0.0.1:{api}",
            "WORKOS_API_KEY": "sk_test_sandbox",
        }
        key = next(line.split("=", 1)[1] for line in text.splitlines() if "SSO_PROXY_TRANSACTION_KEYS=" in line)
        assert len(key) >= 32

        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "WORKOS_"))}, **exports}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "proxy", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )

        check = cli("routes", "check")  # the printed SSO_PROXY_ROUTES names the sandbox's map
        assert "ready in WorkOS: 2 of 4" in check.stdout, check.stdout + check.stderr
        assert (
            "cut over (or in shadow) but NOT ready in WorkOS (their logins bounce back or fail): hooli-ping"
            in check.stdout
        )
        refused = cli("routes", "set", "globex-adfs", "workos", "--routes", str(routes))
        assert refused.returncode != 0
        assert "globex-adfs: WorkOS connection conn_01JGLOBEXADFS000000000000000 is draft" in refused.stderr
        assert "state: legacy" in routes.read_text().split("globex-adfs:")[1].split("hooli-ping:")[0]
        moved = cli("routes", "set", "hooli-ping", "legacy", "--routes", str(routes))
        assert moved.returncode == 0, moved.stderr
        # A login the proxy binds: the printed key verifies its cookie (explain reads the same setting).
        started = httpx.get(f"http://127.0.0.1:{public}/authorize?client_id=app&connection=acme-okta")
        assert started.status_code == 302
        cookies = "; ".join(c.split(";", 1)[0] for c in started.headers.get_list("set-cookie"))
        assert "sso_proxy_tx_" in cookies
        relay = httpx.URL(started.headers["location"]).params["RelayState"]
        env["SSO_PROXY_TRANSACTION_KEYS"] = key
        explained = cli(
            "explain",
            f"http://127.0.0.1:{public}/login/callback?connection=acme-okta",
            *("--routes", str(routes), "-d", f"RelayState={relay}&SAMLResponse=x", "-b", cookies),
        )
        assert "auth0_transaction" in explained.stdout, explained.stdout + explained.stderr
    finally:
        assert box.stop() == 0
    assert not [line for line in box.errors if '"level":"warning"' in line], box.errors
