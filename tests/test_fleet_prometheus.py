"""``routes report --prometheus`` against a real Prometheus scraping two real replicas (issue 22).

Traffic before and after a cut-over, one replica restarted after it, and the report's JSON checked
against what was sent: only callbacks after the change count, a series first seen after it counts
from zero, and the restart's counter reset loses nothing.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from proxy.migrate.edit import run_set
from proxy.routing.routemap import load_routemap
from tests.conftest import ROUTES_YAML, ProxyProcess, StandIns, free_port, run_cli, start_proxy

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="the prometheus server (Debian package prometheus)")
SCRAPE = 1.0
JSON = ("--format", "json")


@pytest.fixture()
def fleet(standins: StandIns, tmp_path: Path) -> Iterator[tuple[list[ProxyProcess], str, Path]]:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES_YAML)
    keys = {"SSO_PROXY_TRANSACTION_KEYS": "fleet-key-" + "f" * 32}
    replicas = [start_proxy(standins, routes, **keys), start_proxy(standins, routes, **keys)]
    port = free_port()
    config = tmp_path / "prometheus.yml"
    targets = ", ".join(f"'127.0.0.1:{r.admin_port}'" for r in replicas)
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE:g}s, scrape_timeout: {SCRAPE:g}s, evaluation_interval: 10s}}\n"
        f"scrape_configs:\n  - job_name: sso-proxy\n    static_configs: [{{targets: [{targets}]}}]\n"
    )
    assert PROMETHEUS is not None
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _up(url) == 2, 60, "Prometheus scraping both replicas")
        yield replicas, url, routes
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        assert server.stderr is not None
        server.stderr.close()
        for replica in replicas:
            replica.stop()


def _up(url: str) -> int:
    try:
        result = httpx.get(f"{url}/api/v1/query", params={"query": "sum(up)"}, timeout=2).json()["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return 0
    return int(float(result[0]["value"][1])) if result else 0


def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _send(replica: ProxyProcess, query: str, count: int, status: int | None) -> None:
    """``count`` callbacks; ``status`` None: forwarded to Auth0, whatever its stand-in answers."""
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        for _ in range(count):
            got = client.get(f"{replica.url}/login/callback?{query}").status_code
            assert got == status if status is not None else got < 500


def _settle() -> None:
    """Long enough for every replica to be scraped after what was just sent."""
    time.sleep(3 * SCRAPE)


def _scraped(url: str, promql: str, want: float) -> None:
    """Wait until Prometheus holds what was sent (a loaded machine delays scrapes), then one more
    second: a state change is recorded to the second, so what came before it must be older."""

    def holds() -> bool:
        try:
            result = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=2).json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return False
        return bool(result) and float(result[0]["value"][1]) == want

    _until(holds, 60, f"{promql} == {want}")
    time.sleep(1.1)


def test_report_from_prometheus_counts_since_the_cut_over_across_a_restart(
    fleet: tuple[list[ProxyProcess], str, Path], standins: StandIns
) -> None:
    (a, b), url, routes = fleet
    legacy = "connection=globex-adfs&code=c&state=s"
    # Before the cut-over: globex-adfs on Auth0 through both replicas; acme-okta (no change recorded).
    _send(a, legacy, 3, None)
    _send(b, legacy, 2, None)
    _send(a, "connection=acme-okta&code=c&state=s", 2, 307)
    _scraped(url, 'sum(sso_proxy_callbacks_total{connection="globex-adfs"})', 5)
    _scraped(url, 'sum(sso_proxy_callbacks_total{connection="acme-okta"})', 2)
    old_sha = load_routemap(str(routes)).sha256
    assert run_set(str(routes), ["globex-adfs"], "workos", io.StringIO(), io.StringIO(), by="test") == 0
    since = load_routemap(str(routes)).connections["globex-adfs"].state_changed
    sha = load_routemap(str(routes)).sha256
    for replica in (a, b):
        _until(lambda r=replica: httpx.get(f"{r.admin}/routes").json()["sha256"] == sha, 15, "the new map")
    # After it: to WorkOS on both (a's workos series is new: it must count from zero), and fallbacks.
    _send(a, legacy, 4, 307)
    _send(b, legacy, 1, 307)
    # Fallbacks Auth0 accepts (IdP-initiated, naming the connection) reach Auth0; one with a state it
    # never issued is refused, and does not count as reaching it.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    response = b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>'
    redirect = base64.b64encode(deflate.compress(response) + deflate.flush()).decode()
    accepted = "connection=globex-adfs&" + urlencode({"SAMLResponse": redirect}) + "&fallback=auth0"
    _send(b, accepted, 2, 302)
    _send(a, "connection=acme-okta&code=c&state=s", 1, 307)
    _scraped(url, 'sum(sso_proxy_callbacks_total{connection="globex-adfs"})', 7 + 5)
    # b restarts (same address, so the same series: its counters reset), then takes more traffic.
    b.stop()
    restarted = ProxyProcess(env=b.env, args=b.args, port=b.port, admin_port=b.admin_port).start()
    fleet[0][1] = restarted
    _send(restarted, legacy, 3, 307)
    _send(restarted, accepted, 1, 302)
    _send(restarted, legacy + "&fallback=auth0", 1, 400)
    b_workos = (
        f'sso_proxy_callbacks_total{{connection="globex-adfs",decision="workos",instance="127.0.0.1:{b.admin_port}"}}'
    )
    _scraped(url, f"sum({b_workos})", 3)  # the restarted process's (the old one had 1)
    _settle()

    report = run_cli("routes", "report", "--prometheus", url, "--routes", str(routes), *JSON)
    assert report.returncode == 0, report.stderr
    rows = {row["connection"]: row for row in json.loads(report.stdout)["connections"]}
    moved = rows["globex-adfs"]
    assert (moved["state"], moved["since"]) == ("workos", since)
    assert moved["callbacks"] == {"workos": 4 + 1 + 3, "auth0": 2 + 1}  # nothing from before the change
    assert moved["auth0_by_reason"] == {"fallback": 4}
    assert moved["fallbacks"] == {"accepted": 3, "refused": 1, "unknown": 0}
    assert moved["verdict"] == "still reaching Auth0"
    # No change recorded: counted over the default window, so everything sent.
    assert rows["acme-okta"]["since"] is None
    assert rows["acme-okta"]["callbacks"] == {"workos": 3, "auth0": 0}
    assert rows["acme-okta"]["verdict"] == "done"
    assert rows["umbrella-google"]["callbacks"] == {"workos": 0, "auth0": 0}
    assert rows["umbrella-google"]["verdict"] == "never seen"

    table = run_cli("routes", "report", "--prometheus", url)
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if line.startswith("globex-adfs "))
    assert since is not None and since in line and "still reaching Auth0" in line  # since: from the gauge

    # The runbook's gate: every replica serves the new map (Prometheus, then each replica asked).
    def check_fleet(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("routes", "check-fleet", "--routes", str(routes), *args)

    on_it = check_fleet("--prometheus", url)
    assert on_it.returncode == 0, on_it.stdout + on_it.stderr
    assert f"2 of 2 replica(s) serve sha256 {sha}" in on_it.stdout
    assert "keys: every replica verifies every signing key" in on_it.stdout
    assert check_fleet("--admin", a.admin, "--admin", restarted.admin, "--admin", a.admin).returncode == 0
    behind = check_fleet("--prometheus", url, "--sha256", old_sha)
    assert behind.returncode == 1 and "0 of 2 replica(s)" in behind.stdout
