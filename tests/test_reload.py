"""Hot reload against the real proxy process: symlink swap, SIGHUP, ``POST /-/reload``, keep-last-good.

The route file is published the way a Kubernetes ConfigMap volume does it: ``routes.yaml`` is a
symlink to ``..data/routes.yaml``, ``..data`` is a symlink to a timestamped directory, and an update
writes a new directory and swaps ``..data`` with one atomic rename (then removes the old directory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.metrics import Metrics
from proxy.reload import IN_PLACE_SETTLE, RouteStore, Snapshot
from proxy.routing.routemap import parse_routemap
from tests.conftest import ADMIN_AUTH, ROUTES_YAML, ProxyProcess, StandIns, big_routes_yaml, start_proxy
from tests.samples import saml_form, saml_xml

FORM = {"content-type": "application/x-www-form-urlencoded"}
ACME_BODY = saml_form(saml_xml())  # audience urn:auth0:globex-prod:acme-okta

# Version A is conftest's map (acme-okta: workos); version B moves acme-okta back to legacy.
VERSION_A = ROUTES_YAML
VERSION_B = ROUTES_YAML.replace(
    "  acme-okta:\n    protocol: saml\n    state: workos", "  acme-okta:\n    protocol: saml\n    state: legacy"
)
assert VERSION_B != VERSION_A
BROKEN_YAML = VERSION_B + "  bad: [unclosed\n"
BROKEN_FIELD = VERSION_B.replace(
    "  globex-adfs:\n    protocol: saml\n    state: legacy", "  globex-adfs:\n    protocol: saml\n    state: maybe"
)
assert BROKEN_FIELD != VERSION_B

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ConfigMapDir:
    """A directory laid out and updated like a Kubernetes ConfigMap volume."""

    def __init__(self, root: Path, text: str) -> None:
        self.root = root
        self.count = 0
        self.current: Path | None = None
        self.publish(text)
        (root / "routes.yaml").symlink_to(Path("..data") / "routes.yaml")

    @property
    def path(self) -> Path:
        return self.root / "routes.yaml"

    def publish(self, text: str, remove_old: bool = True) -> None:
        """Write a new version directory, then swap ``..data`` to it atomically."""
        self.count += 1
        version = self.root / f"..2026_{os.getpid()}_{self.count:05d}"
        version.mkdir()
        (version / "routes.yaml").write_text(text)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        old, self.current = self.current, version
        if old is not None and remove_old:
            shutil.rmtree(old)


def stop_proxy(proc: ProxyProcess) -> None:
    """Stop the proxy and close its log pipe (``ProxyProcess.stop`` leaves it open: a ResourceWarning)."""
    try:
        assert proc.stop() == 0, "\n".join(proc.log_lines)
    finally:
        if proc.proc is not None and proc.proc.stderr is not None:
            proc.proc.stderr.close()


def decision_of(
    client: httpx.Client, proxy: ProxyProcess, query: str = "connection=acme-okta", body: str = ACME_BODY
) -> str:
    """'workos' (307 to the WorkOS stand-in) or 'auth0' (forwarded; the Auth0 stand-in's 302)."""
    response = client.post(f"{proxy.url}/login/callback?{query}", content=body, headers=FORM)
    if response.status_code == 307 and "/sso/client_test/auth0/callback" in response.headers["location"]:
        return "workos"
    if response.status_code == 302 and "/_standin/app" in response.headers["location"]:
        return "auth0"
    raise AssertionError(f"unexpected response {response.status_code} {response.headers}")


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Poll until ``predicate`` holds; return the seconds it took."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def routes_info(proxy: ProxyProcess) -> dict[str, Any]:
    response = httpx.get(f"{proxy.admin}/routes")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def reloads(samples: Samples, result: str) -> float:
    return samples[("sso_proxy_routemap_reloads_total", (("result", result),))]


def info_shas(samples: Samples) -> list[str]:
    return [dict(labels)["sha256"] for (name, labels), v in samples.items() if name == "sso_proxy_routemap_info" and v]


def connection_states(samples: Samples) -> dict[str, str]:
    out: dict[str, str] = {}
    for (name, labels), value in samples.items():
        if name == "sso_proxy_connection_state" and value == 1:
            d = dict(labels)
            assert d["connection"] not in out, f"{d['connection']} has two states"
            out[d["connection"]] = d["state"]
    return out


def per_state(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["state"]: v for (name, labels), v in samples.items() if name == "sso_proxy_routemap_connections"
    }


def log_events(proxy: ProxyProcess, msg: str) -> list[dict[str, Any]]:
    out = []
    for line in list(proxy.log_lines):
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("msg") == msg:
                out.append(event)
    return out


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=10) as c:
        yield c


INTERVAL = 0.2


@pytest.fixture()
def configmap(tmp_path: Path) -> ConfigMapDir:
    root = tmp_path / "config"
    root.mkdir()
    return ConfigMapDir(root, VERSION_A)


@pytest.fixture()
def watched(standins: StandIns, configmap: ConfigMapDir) -> Iterator[ProxyProcess]:
    proc = start_proxy(standins, configmap.path, SSO_PROXY_RELOAD_INTERVAL=str(INTERVAL))
    yield proc
    stop_proxy(proc)


@pytest.fixture()
def unwatched(standins: StandIns, tmp_path: Path) -> Iterator[tuple[ProxyProcess, Path]]:
    """File watching off (interval 0): only SIGHUP and the endpoint reload."""
    path = tmp_path / "routes.yaml"
    path.write_text(VERSION_A)
    proc = start_proxy(standins, path, SSO_PROXY_RELOAD_INTERVAL="0")
    yield proc, path
    stop_proxy(proc)


def test_symlink_swap_is_picked_up_within_the_interval(
    watched: ProxyProcess, configmap: ConfigMapDir, client: httpx.Client, standins: StandIns
) -> None:
    assert decision_of(client, watched) == "workos"
    before = watched.scrape()
    assert info_shas(before) == [sha(VERSION_A)]
    assert routes_info(watched)["sha256"] == sha(VERSION_A)
    started = time.time()

    configmap.publish(VERSION_B)
    took = wait_for(lambda: decision_of(client, watched) == "auth0", timeout=INTERVAL + 2)
    assert took <= INTERVAL + 1.0, f"picked up after {took:.2f} s (interval {INTERVAL} s)"
    # Identified by audience (no connection in the query) follows the same map.
    # Identified by its Audience alone: an SP-initiated answer, so to a login Auth0 started.
    sp_initiated = saml_form(saml_xml(), relay_state=standins.start("acme-okta").state)
    assert decision_of(client, watched, query="", body=sp_initiated) == "auth0"

    info = routes_info(watched)
    assert info["sha256"] == sha(VERSION_B)
    assert info["source"] == str(configmap.path)  # the stable path, not the version directory
    assert info["connections"]["acme-okta"] == "legacy"
    assert info["connections_per_state"] == {"legacy": 3, "shadow": 0, "workos": 2}
    assert info["last_error"] is None

    after = watched.scrape()
    assert reloads(after, "success") == reloads(before, "success") + 1
    assert reloads(after, "error") == reloads(before, "error")
    assert info_shas(after) == [sha(VERSION_B)]
    assert after[("sso_proxy_routemap_last_success_timestamp_seconds", ())] >= started - 1
    assert per_state(after) == {"legacy": 3, "shadow": 0, "workos": 2}
    assert connection_states(after)["acme-okta"] == "legacy"
    [loaded] = [e for e in log_events(watched, "route map loaded") if e["trigger"] == "file"]
    assert loaded["changed"] == ["acme-okta: workos -> legacy"]
    assert loaded["sha256"] == sha(VERSION_B)

    # Swapping back to the same content as an earlier version is a change too.
    configmap.publish(VERSION_A)
    wait_for(lambda: decision_of(client, watched) == "workos", timeout=INTERVAL + 2)
    assert info_shas(watched.scrape()) == [sha(VERSION_A)]


def test_unchanged_content_is_not_reloaded(watched: ProxyProcess, configmap: ConfigMapDir) -> None:
    before = reloads(watched.scrape(), "success")
    configmap.publish(VERSION_A)  # a new directory and symlink, same bytes
    time.sleep(INTERVAL * 4)
    assert reloads(watched.scrape(), "success") == before
    assert [e for e in log_events(watched, "route map loaded") if e["trigger"] != "start"] == []


def test_sighup_reloads(unwatched: tuple[ProxyProcess, Path], client: httpx.Client) -> None:
    proxy, path = unwatched
    assert decision_of(client, proxy) == "workos"
    before = reloads(proxy.scrape(), "success")
    path.write_text(VERSION_B)
    time.sleep(0.5)
    assert decision_of(client, proxy) == "workos"  # watching is off: nothing yet

    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: decision_of(client, proxy) == "auth0", timeout=3)
    samples = proxy.scrape()
    assert reloads(samples, "success") == before + 1
    assert info_shas(samples) == [sha(VERSION_B)]
    assert [e["trigger"] for e in log_events(proxy, "route map loaded")] == ["start", "sighup"]

    # A SIGHUP with nothing new is said too: every trigger an operator sends gets a line.
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: bool(log_events(proxy, "route map unchanged")), timeout=3)
    [same] = log_events(proxy, "route map unchanged")
    assert (same["trigger"], same["sha256"]) == ("sighup", sha(VERSION_B))

    # A broken file on SIGHUP: logged, counted, the old map stays.
    path.write_text(BROKEN_FIELD)
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: bool(log_events(proxy, "route map rejected; last good map stays in force")), timeout=3)
    [rejected] = log_events(proxy, "route map rejected; last good map stays in force")
    assert rejected["trigger"] == "sighup"
    assert rejected["in_force"] == sha(VERSION_B)
    assert any("connections.globex-adfs.state" in e for e in rejected["errors"])
    assert decision_of(client, proxy) == "auth0"
    assert httpx.get(f"{proxy.admin}/readyz").status_code == 200
    assert proxy.proc.poll() is None


def test_reload_endpoint_reports_success_unchanged_and_error(
    unwatched: tuple[ProxyProcess, Path], client: httpx.Client
) -> None:
    proxy, path = unwatched
    reload_url = f"{proxy.admin}/-/reload"

    response = httpx.post(reload_url, headers=ADMIN_AUTH)
    assert response.status_code == 200
    assert response.json() == {"result": "unchanged", "sha256": sha(VERSION_A), "errors": []}

    path.write_text(VERSION_B)
    response = httpx.post(reload_url, headers=ADMIN_AUTH)
    assert response.status_code == 200
    assert response.json() == {"result": "success", "sha256": sha(VERSION_B), "errors": []}
    assert decision_of(client, proxy) == "auth0"  # in force as soon as the endpoint answered

    path.write_text(
        BROKEN_FIELD.replace(
            "    state: workos\n    audiences: [urn:auth0:globex-prod:hooli-ping]",
            "    state: workos\n    colour: blue\n    audiences: [urn:auth0:globex-prod:hooli-ping]",
        )
    )
    response = httpx.post(reload_url, headers=ADMIN_AUTH)
    assert response.status_code == 422
    body = response.json()
    assert body["result"] == "error"
    assert body["sha256"] is None
    # Every error, each located: file, connection, field.
    assert len(body["errors"]) == 2
    assert any(e.startswith(f"{path}: connections.globex-adfs.state:") and "'maybe'" in e for e in body["errors"])
    assert any(e.startswith(f"{path}: connections.hooli-ping.colour:") for e in body["errors"])
    assert decision_of(client, proxy) == "auth0"
    assert routes_info(proxy)["sha256"] == sha(VERSION_B)
    assert routes_info(proxy)["last_error"] == "\n".join(body["errors"])

    path.write_text("version: 1\nconnections: [unclosed\n")
    body = httpx.post(reload_url, headers=ADMIN_AUTH).json()
    assert body["result"] == "error"
    [error] = body["errors"]
    assert error.startswith(f"{path}:") and "not valid YAML" in error

    path.unlink()
    body = httpx.post(reload_url, headers=ADMIN_AUTH).json()
    assert body["result"] == "error"
    assert body["errors"] == [f"{path}: cannot read: No such file or directory"]
    assert httpx.get(f"{proxy.admin}/readyz").status_code == 200

    path.write_text(VERSION_A)
    assert httpx.post(reload_url, headers=ADMIN_AUTH).json()["result"] == "success"
    assert decision_of(client, proxy) == "workos"
    assert routes_info(proxy)["last_error"] is None
    samples = proxy.scrape()
    assert reloads(samples, "error") == 3
    assert reloads(samples, "success") == 3  # start, B, A


@pytest.mark.parametrize("broken", [BROKEN_YAML, BROKEN_FIELD], ids=["invalid-yaml", "invalid-field"])
def test_broken_file_keeps_the_old_map_serving(
    watched: ProxyProcess, configmap: ConfigMapDir, client: httpx.Client, broken: str
) -> None:
    assert decision_of(client, watched) == "workos"
    before = watched.scrape()
    loaded_at = routes_info(watched)["loaded_at"]

    configmap.publish(broken)
    wait_for(lambda: reloads(watched.scrape(), "error") > reloads(before, "error"), timeout=INTERVAL + 2)
    time.sleep(INTERVAL * 5)  # several more ticks see the same broken content

    during = watched.scrape()
    assert reloads(during, "error") == reloads(before, "error") + 1, "counted once per distinct broken content"
    assert during[("sso_proxy_routemap_file_rejected", ())] == 1  # stays 1: a new replica would not start
    assert reloads(during, "success") == reloads(before, "success")
    assert info_shas(during) == [sha(VERSION_A)]
    assert (
        during[("sso_proxy_routemap_last_success_timestamp_seconds", ())]
        == before[("sso_proxy_routemap_last_success_timestamp_seconds", ())]
    )
    assert per_state(during) == {"legacy": 2, "shadow": 0, "workos": 3}
    assert connection_states(during)["acme-okta"] == "workos"
    assert decision_of(client, watched) == "workos"
    assert decision_of(client, watched, query="") == "workos"
    assert httpx.get(f"{watched.admin}/readyz").status_code == 200
    info = routes_info(watched)
    assert info["sha256"] == sha(VERSION_A)
    assert info["loaded_at"] == loaded_at
    assert info["last_error"], "the reload error is shown"
    assert str(configmap.path) in info["last_error"]
    rejected = log_events(watched, "route map rejected; last good map stays in force")
    assert len(rejected) == 1
    assert rejected[0]["in_force"] == sha(VERSION_A)

    # A second, different broken content is a new error, counted once.
    configmap.publish(broken + "# another broken revision\n")
    wait_for(lambda: reloads(watched.scrape(), "error") == reloads(before, "error") + 2, timeout=INTERVAL + 2)
    time.sleep(INTERVAL * 3)
    assert reloads(watched.scrape(), "error") == reloads(before, "error") + 2

    # The fixed file is picked up.
    configmap.publish(VERSION_B)
    wait_for(lambda: decision_of(client, watched) == "auth0", timeout=INTERVAL + 2)
    after = watched.scrape()
    assert reloads(after, "success") == reloads(before, "success") + 1
    assert reloads(after, "error") == reloads(before, "error") + 2
    assert info_shas(after) == [sha(VERSION_B)]
    assert per_state(after) == {"legacy": 3, "shadow": 0, "workos": 2}
    assert connection_states(after)["acme-okta"] == "legacy"
    info = routes_info(watched)
    assert info["sha256"] == sha(VERSION_B)
    assert info["last_error"] is None
    assert after[("sso_proxy_routemap_file_rejected", ())] == 0


def test_broken_then_reverted_to_the_map_in_force(
    watched: ProxyProcess, configmap: ConfigMapDir, client: httpx.Client
) -> None:
    """Rolling a bad edit back to the content already in force clears the error; a repeat is seen again."""
    before = watched.scrape()
    configmap.publish(BROKEN_FIELD)
    wait_for(lambda: routes_info(watched)["last_error"] is not None, timeout=INTERVAL + 2)
    assert watched.scrape()[("sso_proxy_routemap_file_rejected", ())] == 1
    configmap.publish(VERSION_A)
    wait_for(lambda: routes_info(watched)["last_error"] is None, timeout=INTERVAL + 2)
    assert watched.scrape()[("sso_proxy_routemap_file_rejected", ())] == 0
    configmap.publish(BROKEN_FIELD)  # the same bad edit again is reported again
    wait_for(lambda: routes_info(watched)["last_error"] is not None, timeout=INTERVAL + 2)
    samples = watched.scrape()
    assert reloads(samples, "error") == reloads(before, "error") + 2
    assert reloads(samples, "success") == reloads(before, "success")
    assert decision_of(client, watched) == "workos"


def test_explicit_reload_of_broken_content_is_not_counted_again_by_the_watcher(
    watched: ProxyProcess, configmap: ConfigMapDir
) -> None:
    configmap.publish(BROKEN_FIELD)
    assert httpx.post(f"{watched.admin}/-/reload", headers=ADMIN_AUTH).json()["result"] == "error"
    after_post = reloads(watched.scrape(), "error")
    time.sleep(INTERVAL * 5)
    assert reloads(watched.scrape(), "error") == after_post
    assert len(log_events(watched, "route map rejected; last good map stays in force")) == after_post


# --- only a settled file is applied (issue 11, finding 11) ----------------------------------------


def make_store(path: Path, settle: float = 0.0) -> RouteStore:
    return RouteStore(str(path), None, Metrics(), logging.getLogger("test-reload"), settle=settle)


# A truncation of VERSION_B that is itself a valid map: globex-adfs and the rest are missing, so
# their callbacks would follow `unknown` (workos) instead of staying on Auth0.
HALF_B = VERSION_B[: VERSION_B.index("  globex-adfs:")]
assert parse_routemap(HALF_B).connections.keys() == {"acme-okta"}


def test_watcher_applies_content_written_in_place_only_once_settled(tmp_path: Path) -> None:
    """The same file rewritten: applied once it has read the same for IN_PLACE_SETTLE seconds,
    however often the watcher polls (issue 20, item 10)."""
    path = tmp_path / "routes.yaml"
    path.write_text(VERSION_A)
    store = make_store(path)
    store.load_initial()
    path.write_text(HALF_B)  # mid-write: the first half is on disk, and the writer pauses
    assert store.poll(now=100.0) is None  # seen
    assert store.next_poll(2.0, 100.0) == 2.0 and store.next_poll(30.0, 100.0) == IN_PLACE_SETTLE
    for tick in (100.1, 101.0, 102.0, 102.9):  # the writer's 2 s pause, polled often: never applied
        assert store.poll(now=tick) is None
    path.write_text(VERSION_B)  # the writer finishes
    assert store.poll(now=103.0) is None  # different from the last read: seen, again
    assert store.current is not None and store.current.route_map.sha256 == sha(VERSION_A)
    assert store.poll(now=105.9) is None
    result = store.poll(now=106.0)  # the same for IN_PLACE_SETTLE seconds: applied
    assert result is not None and (result.result, result.sha256) == ("success", sha(VERSION_B))
    assert store.poll(now=107.0) is None  # in force: nothing to do
    assert store.next_poll(2.0, 107.0) == 2.0
    assert reloads_of(store) == {"success": 2.0, "error": 0.0}

    # A broken file is counted once, not every tick.
    path.write_text(BROKEN_FIELD)
    assert store.poll(now=200.0) is None
    result = store.poll(now=200.0 + IN_PLACE_SETTLE)
    assert result is not None and result.result == "error"
    for tick in range(3):
        assert store.poll(now=210.0 + tick) is None
    assert reloads_of(store) == {"success": 2.0, "error": 1.0}


def test_watcher_applies_an_atomically_replaced_file_at_the_next_poll(tmp_path: Path) -> None:
    """A new file renamed over the route file (``routes set``) or a ConfigMap's symlink swap is
    complete when it appears: applied at the first poll that reads it."""
    path = tmp_path / "routes.yaml"
    path.write_text(VERSION_A)
    store = make_store(path)
    store.load_initial()
    temp = tmp_path / "routes.yaml.tmp"
    temp.write_text(VERSION_B)
    os.replace(temp, path)
    result = store.poll(now=100.0)
    assert result is not None and (result.result, result.sha256) == ("success", sha(VERSION_B))
    (tmp_path / "cm").mkdir()
    configmap = ConfigMapDir(tmp_path / "cm", VERSION_A)
    store = make_store(configmap.path)
    store.load_initial()
    configmap.publish(VERSION_B)
    result = store.poll(now=100.0)
    assert result is not None and result.sha256 == sha(VERSION_B)


@pytest.mark.parametrize("interval", ["0.1", "2"])
def test_a_writer_pausing_2_s_mid_file_is_never_served_half_written(
    standins: StandIns, tmp_path: Path, interval: str
) -> None:
    """Issue 20, item 10, through the real server: ``cat > routes.yaml`` writes a valid prefix,
    pauses 2 s, then writes the rest. /routes is polled throughout: the half map never goes live,
    whatever the poll interval, and the whole file does."""
    path = tmp_path / "routes.yaml"
    path.write_text(VERSION_A)
    proxy = start_proxy(standins, path, SSO_PROXY_RELOAD_INTERVAL=interval)
    seen: set[str] = set()
    try:
        with path.open("w") as fh:  # in place: truncated, the same file
            fh.write(HALF_B)
            fh.flush()
            paused = time.monotonic() + 2.0
            while time.monotonic() < paused:
                seen.add(routes_info(proxy)["sha256"])
                time.sleep(0.05)
            fh.write(VERSION_B[len(HALF_B) :])
        deadline = time.monotonic() + IN_PLACE_SETTLE + float(interval) + 5
        while time.monotonic() < deadline and sha(VERSION_B) not in seen:
            seen.add(routes_info(proxy)["sha256"])
            time.sleep(0.05)
        assert sha(HALF_B) not in seen
        assert sha(VERSION_B) in seen
        loaded = [e["sha256"] for e in log_events(proxy, "route map loaded")]
        assert loaded == [sha(VERSION_A), sha(VERSION_B)]
    finally:
        stop_proxy(proxy)


class ScriptedStore(RouteStore):
    """A store whose reads return a script of contents (a file being written), then the last one."""

    def __init__(self, path: Path, script: list[str], settle: float) -> None:
        super().__init__(str(path), None, Metrics(), logging.getLogger("test-reload"), settle=settle)
        self.script = list(script)
        self.reads = 0

    def snapshot(self) -> Snapshot:
        self.reads += 1
        text = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return Snapshot(text.encode(), sha(text))


def test_explicit_reload_needs_two_identical_reads_a_settle_apart(tmp_path: Path) -> None:
    store = ScriptedStore(tmp_path / "r.yaml", [VERSION_A], settle=0.01)
    store.load_initial()
    store.script = [HALF_B, VERSION_B[:-40], VERSION_B, VERSION_B]
    result = store.explicit_reload("sighup")
    assert (result.result, result.sha256) == ("success", sha(VERSION_B))
    assert store.reads == 2 + 4  # start: two reads; then half, more, full, full
    # Still changing after every round: not applied, not counted as an error.
    store.script = [f"{VERSION_A}# rev {n}\n" for n in range(100)]
    result = store.explicit_reload("endpoint")
    assert result.result == "unsettled" and "still changing" in result.errors[0]
    assert store.current is not None and store.current.route_map.sha256 == sha(VERSION_B)
    assert reloads_of(store) == {"success": 2.0, "error": 0.0}
    # Content already in force or already rejected needs no settling: one read.
    store.script, store.reads = [VERSION_B], 0
    assert store.explicit_reload("endpoint").result == "unchanged"
    assert store.reads == 1


def reloads_of(store: RouteStore) -> dict[str, float]:
    return {result: store.metrics.reloads.labels(result)._value.get() for result in ("success", "error")}


def test_a_file_rewritten_in_place_is_not_applied_half_written_on_sighup(
    standins: StandIns, tmp_path: Path, client: httpx.Client
) -> None:
    """`cat > routes.yaml`: truncate, write part, pause, write the rest. The half is a valid map.

    SIGHUP arrives while only the half is on disk; the rest follows well inside the settle period
    (3 s: on a loaded machine this test's own write of the rest was once later than a 1 s settle).
    """
    path = tmp_path / "routes.yaml"
    path.write_text(VERSION_A)
    proxy = start_proxy(standins, path, SSO_PROXY_RELOAD_INTERVAL="0", SSO_PROXY_RELOAD_SETTLE="3")
    try:
        assert proxy.proc is not None
        with path.open("w") as fh:
            fh.write(HALF_B)
            fh.flush()
            proxy.proc.send_signal(signal.SIGHUP)
            time.sleep(0.05)
            fh.write(VERSION_B[len(HALF_B) :])
        wait_for(lambda: routes_info(proxy)["sha256"] == sha(VERSION_B), timeout=15)
        loaded = [e["sha256"] for e in log_events(proxy, "route map loaded")]
        assert loaded == [sha(VERSION_A), sha(VERSION_B)]  # the half never went live
        assert decision_of(client, proxy) == "auth0"
    finally:
        stop_proxy(proxy)


# --- parsing off the event loop (issue 11, finding 12) ------------------------------------------------


def test_requests_are_answered_while_a_20000_connection_map_is_parsed(
    unwatched: tuple[ProxyProcess, Path], client: httpx.Client
) -> None:
    """Ordering, not milliseconds: callbacks logged between the parse's start and its end."""
    proxy, path = unwatched
    assert proxy.proc is not None
    big = big_routes_yaml(20_000)
    path.write_text(big)
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: bool(log_events(proxy, "route map changed; parsing")), timeout=30)
    answered = 0
    while not [e for e in log_events(proxy, "route map loaded") if e["trigger"] == "sighup"]:
        assert decision_of(client, proxy) in ("workos", "auth0")
        answered += 1
        assert answered < 100_000
    events = [json.loads(line) for line in list(proxy.log_lines) if line.startswith("{")]
    msgs = [e["msg"] for e in events]
    started = msgs.index("route map changed; parsing")
    ended = next(i for i, e in enumerate(events) if e["msg"] == "route map loaded" and e["trigger"] == "sighup")
    during = [m for m in msgs[started:ended] if m == "callback"]
    assert during, f"no request was answered while the map was parsed ({answered} sent)"
    assert routes_info(proxy)["sha256"] == sha(big)
    assert len(routes_info(proxy)["connections"]) == 20_005


def test_sighups_in_a_burst_fold_into_few_reloads(unwatched: tuple[ProxyProcess, Path]) -> None:
    proxy, path = unwatched
    assert proxy.proc is not None
    path.write_text(VERSION_B)
    for _ in range(200):
        proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: routes_info(proxy)["sha256"] == sha(VERSION_B), timeout=10)
    time.sleep(1)
    assert proxy.proc.poll() is None
    parses = log_events(proxy, "route map changed; parsing")
    assert len(parses) == 1  # the rest found the content in force: a hash compare each, at most
    assert reloads(proxy.scrape(), "success") == 2


def test_a_stale_temp_file_next_to_the_route_file_is_ignored(
    watched: ProxyProcess, configmap: ConfigMapDir, client: httpx.Client
) -> None:
    (configmap.root / ".routes.yaml.dead.tmp").write_text(BROKEN_FIELD)
    time.sleep(INTERVAL * 4)
    assert decision_of(client, watched) == "workos"
    assert reloads(watched.scrape(), "error") == 0
    assert routes_info(watched)["last_error"] is None


# --- reloads are cheap to ask for (issue 11, finding 10) ---------------------------------------------


def test_a_broken_file_posted_again_and_again_is_counted_and_logged_once(
    unwatched: tuple[ProxyProcess, Path],
) -> None:
    proxy, path = unwatched
    path.write_text(BROKEN_FIELD)
    before = reloads(proxy.scrape(), "error")
    bodies = [httpx.post(f"{proxy.admin}/-/reload", headers=ADMIN_AUTH).json() for _ in range(20)]
    assert {b["result"] for b in bodies} == {"error"}
    assert all(b["errors"] == bodies[0]["errors"] for b in bodies)  # every caller still sees why
    assert reloads(proxy.scrape(), "error") == before + 1
    assert len(log_events(proxy, "route map rejected; last good map stays in force")) == 1
    assert len(log_events(proxy, "route map changed; parsing")) == 1  # parsed once, then known by its hash


def test_one_explicit_reload_waits_at_a_time_and_a_further_one_is_told_busy(tmp_path: Path) -> None:
    """Three POSTs at once while the file keeps changing: one runs, one waits, the third is answered busy."""
    import asyncio

    store = ScriptedStore(tmp_path / "r.yaml", [VERSION_A], settle=0.02)
    store.load_initial()
    # The first reload reads 11 different revisions and gives up; the second reads the rest, then B twice.
    store.script = [f"{VERSION_A}# rev {n}\n" for n in range(15)] + [VERSION_B]

    async def three() -> list[str]:
        tasks = [asyncio.create_task(store.reload("endpoint")) for _ in range(3)]
        return [r.result for r in await asyncio.gather(*tasks)]

    assert asyncio.run(three()) == ["unsettled", "success", "busy"]
    assert store.current is not None and store.current.route_map.sha256 == sha(VERSION_B)
