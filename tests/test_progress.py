"""Tests for proxy.progress (last callback per connection, reachability confirmed by traffic) and the report
(proxy.migrate.report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from proxy.migrate.report import (
    DONE,
    NEVER,
    ON_AUTH0,
    SHADOW,
    WAITING,
    _Merged,
    classify,
    fetch_progress,
    merge_snapshots,
    render_report,
    report_rows,
)
from proxy.progress import UNKNOWN, Progress
from proxy.routing.routemap import Connection, make_routemap
from tests.conftest import ROUTES_YAML, ProxyProcess, StandIns, run_cli, start_proxy


def test_progress_records_and_snapshots() -> None:
    progress = Progress()
    progress.use_map(
        make_routemap(
            [
                Connection("a", "saml", "workos", reachability="unconfirmed"),
                Connection("b", "saml", "legacy", reachability="unconfirmed"),
                Connection("c", "oidc", "legacy", reachability="confirmed"),
                Connection("d", "oidc", "legacy"),
            ]
        )
    )
    progress.record("a", "workos", "mapped", now=100.0)
    progress.record("a", "auth0", "fallback", now=160.0)
    progress.record(None, "auth0", "unknown_default", now=50.0)
    snap = dict(progress.entries())
    assert list(snap) == ["a", "b", "c", "d", UNKNOWN]
    assert snap["a"] == {
        "state": "workos",
        "last_callback": "1970-01-01T00:02:40Z",
        "last_callback_unix": 160.0,
        "callbacks": {"auth0": 1, "workos": 1},
        "fallbacks": 1,
        "shadow": 0,
        "reachability": "confirmed",
        "confirmed_by": "traffic",
    }
    assert (snap["b"]["reachability"], snap["b"]["confirmed_by"]) == ("unconfirmed", None)
    assert (snap["c"]["reachability"], snap["c"]["confirmed_by"]) == ("confirmed", "operator")
    assert "reachability" not in snap["d"]
    assert snap[UNKNOWN]["state"] is None


def test_progress_metrics() -> None:
    registry = CollectorRegistry()
    progress = Progress(registry)
    progress.use_map(
        make_routemap(
            [Connection("a", "saml", "workos", reachability="unconfirmed"), Connection("b", "saml", "legacy")]
        )
    )
    text = generate_latest(registry).decode()
    assert 'sso_proxy_connection_unconfirmed{connection="a"} 1.0' in text
    assert "sso_proxy_connection_last_callback_timestamp_seconds{" not in text
    progress.record("a", "workos", "mapped", now=1234.5)
    text = generate_latest(registry).decode()
    assert 'sso_proxy_connection_unconfirmed{connection="a"} 0.0' in text
    assert 'sso_proxy_connection_last_callback_timestamp_seconds{connection="a"} 1234.5' in text
    assert progress.seen("a") and not progress.seen("b")


def test_state_changed_gauge_only_for_recent_changes() -> None:
    import time
    from datetime import UTC, datetime

    from proxy.routing.routemap import format_instant

    registry = CollectorRegistry()
    progress = Progress(registry)
    now = time.time()
    recent, old = format_instant(datetime.fromtimestamp(now - 3600, UTC)), "2020-01-01T00:00:00Z"
    progress.use_map(
        make_routemap(
            [
                Connection("a", "saml", "workos", state_changed=recent),
                Connection("b", "saml", "legacy", state_changed=old),  # long ago: no series
                Connection("c", "saml", "legacy"),  # never changed: no series
            ]
        )
    )
    text = generate_latest(registry).decode()
    lines = [line for line in text.splitlines() if line.startswith("sso_proxy_connection_state_changed_seconds{")]
    assert len(lines) == 1 and lines[0].startswith('sso_proxy_connection_state_changed_seconds{connection="a"} ')
    assert abs(float(lines[0].split()[-1]) - int(now - 3600)) < 1


def test_state_changed_series_are_bounded() -> None:
    from proxy.progress import changed_recently

    conns = [Connection(f"c{i}", "saml", "workos", state_changed=f"2026-12-07T19:{i % 60:02d}:00Z") for i in range(90)]
    picked = changed_recently(make_routemap(conns), limit=5)
    assert [at for _, at in picked] == sorted((at for _, at in picked), reverse=True)
    assert len(picked) == 5 and picked[0][0] == "c59"


@pytest.mark.parametrize(
    ("state", "decisions", "fallbacks", "status"),
    [
        ("workos", {"workos": 5}, 0, DONE),
        ("workos", {"workos": 5, "auth0": 1}, 1, ON_AUTH0),
        ("workos", {}, 0, WAITING),
        ("legacy", {"auth0": 3}, 0, ON_AUTH0),
        ("legacy", {}, 0, NEVER),
        ("legacy", {"workos": 2}, 0, ON_AUTH0),  # just rolled back: next callbacks go to Auth0
        (None, {"workos": 2}, 0, DONE),  # _unknown, all to WorkOS
        (None, {"auth0": 2}, 0, ON_AUTH0),
        ("shadow", {"auth0": 4}, 0, SHADOW),  # on Auth0 on purpose, counting what WorkOS would get
        ("shadow", {}, 0, SHADOW),
    ],
)
def test_classify(state: str | None, decisions: dict[str, int], fallbacks: int, status: str) -> None:
    assert classify("x", _Merged(state=state, decisions=decisions, fallbacks=fallbacks)).status == status


def test_shadow_counts_are_merged_and_shown() -> None:
    """``routes report`` for a connection in state shadow: the replicas' counts of callbacks that would
    have gone to WorkOS, summed, in their own column and line."""
    one = {"s": {"state": "shadow", "last_callback_unix": 10, "callbacks": {"auth0": 3}, "fallbacks": 0, "shadow": 2}}
    two = {"s": {"state": "shadow", "last_callback_unix": 20, "callbacks": {"auth0": 1}, "fallbacks": 0, "shadow": 1}}
    (row,) = report_rows([one, two])
    assert (row.status, row.auth0, row.shadow) == (SHADOW, 4, 3)
    text = render_report([row], now=30.0)
    assert text.splitlines()[1].split()[-2:] == ["3", "-"]
    assert "in shadow (callbacks go to Auth0; 'shadow' counts those that would have gone to WorkOS): s 3" in text
    progress = Progress()
    progress.record("s", "auth0", "shadow", now=1.0, shadowed=True)
    progress.record("s", "auth0", "auth0_transaction", now=2.0)
    assert dict(progress.entries())["s"]["shadow"] == 1


def test_replicas_are_merged() -> None:
    one = {"a": {"state": "workos", "last_callback_unix": 10, "callbacks": {"workos": 2}, "fallbacks": 0}}
    two = {
        "a": {"state": "workos", "last_callback_unix": 30, "callbacks": {"workos": 1, "auth0": 1}, "fallbacks": 1},
        "b": {"state": "legacy", "callbacks": {}, "reachability": "unconfirmed"},
    }
    merged = merge_snapshots([one, two])
    assert (merged["a"].last, merged["a"].decisions, merged["a"].fallbacks) == (30.0, {"workos": 3, "auth0": 1}, 1)
    rows = report_rows([one, two])
    assert [(r.connection, r.status) for r in rows] == [("a", ON_AUTH0), ("b", NEVER)]
    text = render_report(rows, now=3630.0, since="2026-11-30T10:00:00Z")
    assert text.splitlines()[0].split() == [
        "connection",
        "state",
        "status",
        "last",
        "callback",
        "workos",
        "auth0",
        "fallbacks",
        "shadow",
        "reachability",
    ]
    assert "1h ago" in text
    assert (
        "done: 0, still on Auth0: 1, workos, no WorkOS callback yet: 0, shadow, on Auth0, counting: 0, never seen: 1"
        in text
    )
    assert "reachability unconfirmed (never seen through the proxy; their IdP may post to Auth0 directly): b" in text
    assert "counted since 2026-11-30T10:00:00Z" in text


def test_merge_ignores_odd_shapes() -> None:
    odd: dict[str, Any] = {"a": {"state": 5, "last_callback_unix": "x", "callbacks": [1], "fallbacks": "2"}}
    merged = merge_snapshots([odd])
    assert (merged["a"].state, merged["a"].last, merged["a"].decisions, merged["a"].fallbacks) == (None, None, {}, 0)


@pytest.mark.parametrize("admin", ["127.0.0.1:9", "http://127.0.0.1:9"])
def test_fetch_errors_are_one_line(admin: str) -> None:
    with pytest.raises(ValueError, match=r"(give the operations listener's URL|cannot connect)"):
        fetch_progress(admin, timeout=2)


def test_routes_and_report_on_a_running_proxy(standins: StandIns, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        ROUTES_YAML.replace(
            "  hooli-ping:\n    protocol: saml\n    state: workos",
            "  hooli-ping:\n    protocol: saml\n    state: workos\n    reachability: unconfirmed",
        ).replace(
            "  globex-adfs:\n    protocol: saml\n    state: legacy",
            "  globex-adfs:\n    protocol: saml\n    state: legacy\n    reachability: unconfirmed",
        )
    )
    proc: ProxyProcess = start_proxy(standins, routes)
    try:
        with httpx.Client(follow_redirects=False, timeout=10) as client:
            assert client.get(f"{proc.url}/login/callback?connection=acme-okta&code=c&state=s").status_code == 307
            issued = standins.start("globex-adfs").state  # a login Auth0 started: its stand-in accepts only those
            assert (
                client.get(f"{proc.url}/login/callback?connection=globex-adfs&code=c&state={issued}").status_code == 302
            )
        page = httpx.get(f"{proc.admin}/routes").text
        body = json.loads(page)
        assert page == json.dumps(body, indent=2) + "\n"  # written piece by piece, laid out as json.dumps does
        progress = body["connections_progress"]
        assert progress["acme-okta"]["callbacks"] == {"workos": 1}
        assert progress["globex-adfs"]["reachability"] == "confirmed"  # seen through the proxy
        assert progress["hooli-ping"]["reachability"] == "unconfirmed"
        assert progress["umbrella-google"]["last_callback"] is None
        samples = proc.scrape()
        assert samples[("sso_proxy_connection_unconfirmed", (("connection", "hooli-ping"),))] == 1.0
        assert samples[("sso_proxy_connection_unconfirmed", (("connection", "globex-adfs"),))] == 0.0
        assert ("sso_proxy_connection_last_callback_timestamp_seconds", (("connection", "acme-okta"),)) in samples
        report = run_cli("routes", "report", "--admin", proc.admin, "--admin", proc.admin)
        assert report.returncode == 0, report.stderr
        lines = {line.split()[0]: line for line in report.stdout.splitlines() if line.strip()}
        # The same replica named twice is asked once: no count doubled (issue 22).
        assert "done" in lines["acme-okta"] and " 1 " in lines["acme-okta"]
        assert f"replicas asked: 1 ({proc.admin})" in report.stdout
        assert "still on Auth0" in lines["globex-adfs"]
        assert "workos, no WorkOS callback yet" in lines["hooli-ping"]
        assert "never seen" in lines["umbrella-google"]
        assert "their IdP may post to Auth0 directly): hooli-ping" in report.stdout
        as_json = run_cli("routes", "report", "--admin", proc.admin, "--format", "json")
        assert as_json.returncode == 0, as_json.stderr
        rows = {row["connection"]: row for row in json.loads(as_json.stdout)["connections"]}
        assert rows["acme-okta"]["callbacks"] == {"workos": 1, "auth0": 0}
        assert rows["umbrella-google"]["callbacks"] == {"workos": 0, "auth0": 0}
    finally:
        proc.stop()
    failed = run_cli("routes", "report", "--admin", proc.admin)
    assert failed.returncode == 1
    assert failed.stderr.startswith("sso-proxy routes report: ") and "cannot connect" in failed.stderr


def test_per_connection_series_appear_only_for_connections_seen_or_switched() -> None:
    """Series follow traffic, not the map (issue 21): 1,000 connections, 3 seen -> 3 connections in /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from proxy.metrics import Metrics

    def conns(workos: frozenset[str] = frozenset()) -> list[Connection]:
        return [
            Connection(f"c{i:04d}", "saml", "workos" if f"c{i:04d}" in workos else "legacy", reachability="unconfirmed")
            for i in range(1000)
        ]

    def per_connection(metrics: Metrics) -> dict[str, set[str]]:
        text = generate_latest(metrics.registry).decode()
        out: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if "connection" in sample.labels:
                    out.setdefault(sample.name, set()).add(sample.labels["connection"])
        return out

    metrics = Metrics(CollectorRegistry())
    metrics.progress.use_map(make_routemap(conns(), hashed=False))
    assert per_connection(metrics) == {}
    for name in ("c0001", "c0500", "c0999"):
        metrics.progress.record(name, "auth0", "mapped")
        metrics.callbacks.labels("saml", name, "auth0", "mapped", "query").inc()
    seen = {"c0001", "c0500", "c0999"}
    got = per_connection(metrics)
    assert got["sso_proxy_connection_state"] == seen
    assert got["sso_proxy_connection_last_callback_timestamp_seconds"] == seen
    assert got["sso_proxy_connection_unconfirmed"] == seen
    assert all(names <= seen for names in got.values()), got
    # A reload that cuts one over: it is watched from then on (state 1, unconfirmed 1 until seen).
    metrics.progress.use_map(make_routemap(conns(frozenset({"c0002"})), hashed=False), ["c0002"])
    got = per_connection(metrics)
    assert got["sso_proxy_connection_state"] == seen | {"c0002"}
    assert got["sso_proxy_connection_unconfirmed"] == seen | {"c0002"}
    assert len(generate_latest(metrics.registry).splitlines()) < 300  # whatever the map's size
