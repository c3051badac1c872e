"""Reload under load (bounded, loopback): callbacks never fail and never see a half-applied map.

Eight concurrent clients send callbacks for about six seconds while another thread swaps the
ConfigMap-style route file between version A and version B every 0.15 s (the proxy checks every
0.05 s), with broken versions in between. Then the swapping stops on a final version.

Checked: zero failed requests (no 5xx, no connection errors); every response is what A or B
decides for it; every callback log line names the map it was decided against (A or B, never a
broken one) and its decision is that map's; once the swapping stops, every request sent later than
the reload interval (+ a margin for the tick, the read and the parse) agrees with the final map.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CNAME_KEY, ROUTES_YAML, ProxyProcess, StandIns, read_started, start_proxy
from tests.samples import saml_form, saml_xml
from tests.test_reload import ConfigMapDir, reloads, stop_proxy

INTERVAL = 0.05
SWAP_EVERY = 0.15
SWAP_SECONDS = 6.0
FINAL_SECONDS = 1.5
MARGIN = 0.45  # a tick, a read, a parse, and event-loop lag on a busy 2-core machine
WORKERS = 8

# Version A is conftest's map; B flips acme-okta to legacy and globex-adfs to workos.
VERSION_A = ROUTES_YAML
VERSION_B = ROUTES_YAML.replace(
    "  acme-okta:\n    protocol: saml\n    state: workos", "  acme-okta:\n    protocol: saml\n    state: legacy"
).replace(
    "  globex-adfs:\n    protocol: saml\n    state: legacy", "  globex-adfs:\n    protocol: saml\n    state: workos"
)
assert VERSION_B.count("state: workos") == VERSION_A.count("state: workos")
# Broken versions; were any of them applied even in part, some response would show it (the kill
# switch sends everything, hooli-ping included, to Auth0).
BROKEN = [
    VERSION_B + "  bad: [unclosed\n",
    VERSION_A.replace("mode: normal", "mode: auth0") + "  extra:\n    protocol: saml\n    state: maybe\n",
    VERSION_B.replace("state: legacy", "state: paused", 1),
    "",
    VERSION_A.replace("version: 1", "version: 2"),
]
SHA = {"A": hashlib.sha256(VERSION_A.encode()).hexdigest(), "B": hashlib.sha256(VERSION_B.encode()).hexdigest()}


@dataclass(frozen=True)
class Kind:
    name: str
    connection: str
    query: str
    body: str
    expected: dict[str, str]  # version -> workos | auth0


KINDS = [
    Kind("acme-by-query", "acme-okta", "connection=acme-okta", saml_form(saml_xml()), {"A": "workos", "B": "auth0"}),
    Kind("acme-by-audience", "acme-okta", "", saml_form(saml_xml()), {"A": "workos", "B": "auth0"}),
    Kind(
        "globex-by-audience",
        "globex-adfs",
        "",
        saml_form(saml_xml(audience="urn:auth0:globex-prod:globex-adfs", issuer=None)),
        {"A": "auth0", "B": "workos"},
    ),
    Kind(
        "hooli-control",
        "hooli-ping",
        "connection=hooli-ping",
        saml_form(saml_xml(audience=None, issuer=None)),
        {"A": "workos", "B": "workos"},
    ),
]
BY_CONNECTION = {
    "acme-okta": {"A": "workos", "B": "auth0"},
    "globex-adfs": {"A": "auth0", "B": "workos"},
    "hooli-ping": {"A": "workos", "B": "workos"},
}


@dataclass(frozen=True)
class Result:
    kind: Kind
    sent: float  # monotonic
    outcome: str  # workos | auth0 | failed: ...
    seconds: float


class Swapper(threading.Thread):
    """Publishes A, broken, B, broken, ... until told to stop, then A, broken, and the final B."""

    def __init__(self, configmap: ConfigMapDir) -> None:
        super().__init__(daemon=True)
        self.configmap = configmap
        self.stop_swapping = threading.Event()
        self.published: Counter[str] = Counter()
        self.final_at: float | None = None
        self.error: BaseException | None = None

    def _publish(self, label: str, text: str) -> None:
        self.configmap.publish(text)
        self.published[label] += 1

    def run(self) -> None:
        try:
            i = 0
            while not self.stop_swapping.is_set():
                if i % 2 == 0:
                    self._publish("B" if i % 4 == 0 else "A", VERSION_B if i % 4 == 0 else VERSION_A)
                else:
                    self._publish("broken", BROKEN[(i // 2) % len(BROKEN)])
                i += 1
                time.sleep(SWAP_EVERY)
            self._publish("A", VERSION_A)
            time.sleep(SWAP_EVERY)
            self._publish("broken", BROKEN[0])
            time.sleep(SWAP_EVERY)
            self.final_at = time.monotonic()
            self._publish("B", VERSION_B)  # the final version
        except BaseException as exc:  # reported by the test
            self.error = exc


def classify(response: httpx.Response, workos_origin: str) -> str:
    location = response.headers.get("location", "")
    if response.status_code == 307 and location.startswith(f"{workos_origin}/sso/client_test/auth0/callback"):
        return "workos"
    if response.status_code == 302 and "/_standin/app" in location:
        return "auth0"
    return f"failed: {response.status_code} {location}"


async def drive(proxy: ProxyProcess, workos_origin: str, stop_at: list[float], standins: StandIns) -> list[Result]:
    """WORKERS clients sending callbacks back to back until ``stop_at[0]`` (monotonic)."""
    results: list[Result] = []
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(follow_redirects=False, timeout=10, limits=limits) as client:

        async def worker(n: int) -> None:
            i = n
            while time.monotonic() < stop_at[0]:
                kind = KINDS[i % len(KINDS)]
                i += 1
                url = f"{proxy.url}/login/callback" + (f"?{kind.query}" if kind.query else "")
                body = kind.body
                if not kind.query:  # SP-initiated (no ?connection=): the answer to a login Auth0 started
                    started = await client.get(
                        f"{standins.auth0.origin}/authorize?connection={kind.connection}",
                        headers={"cname-api-key": CNAME_KEY, "x-forwarded-for": "127.0.0.1"},
                    )
                    body = body.replace("RelayState=relay-123", f"RelayState={read_started(started).state}")
                sent = time.monotonic()
                try:
                    response = await client.post(
                        url, content=body, headers={"content-type": "application/x-www-form-urlencoded"}
                    )
                    outcome = classify(response, workos_origin)
                except httpx.HTTPError as exc:
                    outcome = f"failed: {type(exc).__name__}: {exc}"
                results.append(Result(kind, sent, outcome, time.monotonic() - sent))

        await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    return results


@pytest.fixture()
def configmap(tmp_path: Path) -> ConfigMapDir:
    root = tmp_path / "config"
    root.mkdir()
    return ConfigMapDir(root, VERSION_A)


@pytest.fixture()
def loaded_proxy(standins: StandIns, configmap: ConfigMapDir) -> Iterator[ProxyProcess]:
    proc = start_proxy(standins, configmap.path, SSO_PROXY_RELOAD_INTERVAL=str(INTERVAL))
    yield proc
    stop_proxy(proc)


def test_callbacks_under_continuous_reloads(
    loaded_proxy: ProxyProcess, configmap: ConfigMapDir, standins: StandIns
) -> None:
    proxy = loaded_proxy
    workos_origin = standins.workos.origin
    before = proxy.scrape()
    swapper = Swapper(configmap)
    stop_at = [float("inf")]

    async def scenario() -> list[Result]:
        task = asyncio.create_task(drive(proxy, workos_origin, stop_at, standins))
        started = time.monotonic()
        swapper.start()
        await asyncio.sleep(SWAP_SECONDS)
        swapper.stop_swapping.set()
        while swapper.final_at is None and swapper.is_alive():
            await asyncio.sleep(0.01)
        assert swapper.final_at is not None, f"swapper failed: {swapper.error!r}"
        stop_at[0] = max(swapper.final_at + FINAL_SECONDS, started)
        return await task

    # In a thread of its own: another suite's fixture (Playwright's sync API) may keep an event loop
    # running in the main thread for the whole session.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        results = pool.submit(asyncio.run, scenario()).result()
    swapper.join(5)
    assert swapper.error is None
    assert swapper.final_at is not None
    final_at = swapper.final_at
    standins.clear()

    # Zero failed requests.
    outcomes = Counter(r.outcome for r in results)
    failures = [r for r in results if r.outcome.startswith("failed")]
    # Every response is what A or B decides for it.
    off_map = [r for r in results if not r.outcome.startswith("failed") and r.outcome not in r.kind.expected.values()]
    # Once the swapping stops: everything sent after the interval (+ margin) agrees with the final map.
    settled_after = final_at + INTERVAL + MARGIN
    late = [r for r in results if r.sent >= settled_after and r.outcome != r.kind.expected["B"]]
    converged = max(
        (r.sent + r.seconds - final_at for r in results if r.sent >= final_at and r.outcome != r.kind.expected["B"]),
        default=0.0,
    )

    # Each callback was decided against exactly one good map, and its decision is that map's.
    version_of = {SHA["A"][:12]: "A", SHA["B"][:12]: "B"}
    decided: Counter[str] = Counter()
    mismatched = []
    for line in list(proxy.log_lines):
        if not line.startswith("{") or '"msg":"callback"' not in line:
            continue
        event = json.loads(line)
        version = version_of.get(event["map"])
        decided[version or event["map"]] += 1
        if version is None or event["decision"] != BY_CONNECTION[event["connection"]][version]:
            mismatched.append(event)

    after = proxy.scrape()
    successes = reloads(after, "success") - reloads(before, "success")
    errors = reloads(after, "error") - reloads(before, "error")
    duration = max(r.sent + r.seconds for r in results) - min(r.sent for r in results)
    latencies = sorted(r.seconds for r in results)
    p50, p99 = latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"\nreload load test: {len(results)} callbacks in {duration:.1f} s ({len(results) / duration:.0f}/s), "
        f"{WORKERS} workers; outcomes {dict(outcomes)}; failed {len(failures)}; off-map {len(off_map)}; "
        f"decided against A {decided['A']}, B {decided['B']}; "
        f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"published {dict(swapper.published)}; reloads success {successes:.0f}, error {errors:.0f}; "
        f"final map in force for every response {converged * 1000:.0f} ms after the swap "
        f"(bound {(INTERVAL + MARGIN) * 1000:.0f} ms)"
    )

    assert failures == [], failures[:5]
    assert off_map == [], off_map[:5]
    assert late == [], f"{len(late)} responses disagreed with the final map after {INTERVAL + MARGIN} s: {late[:5]}"
    assert mismatched == [], mismatched[:5]
    assert sum(decided.values()) == len(results)
    assert decided["A"] > 0 and decided["B"] > 0
    assert outcomes["workos"] > 0 and outcomes["auth0"] > 0
    # Many swaps were picked up, and broken versions were rejected (each counted, the map kept).
    assert successes >= swapper.published["A"] + swapper.published["B"] - 5
    assert errors >= 1
    assert httpx.get(f"{proxy.admin}/routes").json()["sha256"] == SHA["B"]
    assert httpx.get(f"{proxy.admin}/readyz").status_code == 200
