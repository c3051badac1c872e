"""Metrics through a running server: each kind of request changes exactly the series it should.

Every test scrapes the operations listener before and after driving requests through the public
listener and compares the change of every ``sso_proxy_`` series (histogram ``_count`` included;
``_bucket``/``_sum`` and the ``_created`` timestamps vary with timing and are left out) with the
exact expected change. Nothing else may move.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from proxy import __version__
from proxy.routing.routemap import parse_routemap
from tests.conftest import ADMIN_AUTH, ROUTES_YAML, ProxyProcess, StandIns, free_port, start_proxy
from tests.samples import id_token, saml_form, saml_redirect_query, saml_xml

Labels = tuple[tuple[str, str], ...]
Key = tuple[str, Labels]
Scrape = dict[Key, float]

FORM = {"content-type": "application/x-www-form-urlencoded"}
MAX_BODY = 65536
READ_TIMEOUT = 0.5
VARYING = ("_bucket", "_sum", "_created")
# A time, not a count: it moves with every callback of the connection (tests/test_progress.py checks it).
VARYING_NAMES = frozenset(("sso_proxy_connection_last_callback_timestamp_seconds",))


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


STATES = {name: conn.state for name, conn in parse_routemap(ROUTES_YAML).connections.items()}


def first_seen(before: Scrape, connection: str) -> dict[Key, float]:
    """A connection's state series appears with its first callback (series follow traffic, issue 21)."""
    if connection not in STATES:
        return {}
    series = key("sso_proxy_connection_state", connection=connection, state=STATES[connection])
    return {} if series in before else {series: 1.0}


def changes(before: Scrape, after: Scrape) -> dict[Key, float]:
    """The ``sso_proxy_`` series whose value changed, by how much (timing-dependent samples left out)."""
    out: dict[Key, float] = {}
    for k in before.keys() | after.keys():
        name = k[0]
        if not name.startswith("sso_proxy_") or name.endswith(VARYING) or name in VARYING_NAMES:
            continue
        diff = after.get(k, 0.0) - before.get(k, 0.0)
        if diff:
            out[k] = diff
    return out


def settle(proxy: ProxyProcess, before: Scrape, expected: dict[Key, float], timeout: float = 2.0) -> dict[Key, float]:
    """Changes since ``before``, re-scraped briefly until they match (a counter is bumped just after
    the response's last byte is sent, so a scrape can race the client reading it)."""
    deadline = time.monotonic() + timeout
    while True:
        got = changes(before, proxy.scrape())
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def request_changes(
    group: str, method: str, status: int, upstream_status: int | None = None, upstream: bool | None = None
) -> dict[Key, float]:
    """What one public request adds: requests, duration count, and (when forwarded) the upstream series."""
    out = {
        key("sso_proxy_requests_total", path_group=group, method=method, status_class=f"{status // 100}xx"): 1.0,
        key("sso_proxy_request_duration_seconds_count", path_group=group): 1.0,
    }
    if upstream if upstream is not None else upstream_status is not None:
        status_class = f"{(upstream_status or status) // 100}xx"
        out[key("sso_proxy_upstream_requests_total", status_class=status_class)] = 1.0
        out[key("sso_proxy_upstream_response_seconds_count")] = 1.0
    return out


def add(*parts: dict[Key, float]) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + v
    return out


def callback_key(protocol: str, connection: str, decision: str, reason: str, identified_by: str) -> Key:
    return key(
        "sso_proxy_callbacks_total",
        protocol=protocol,
        connection=connection,
        decision=decision,
        reason=reason,
        identified_by=identified_by,
    )


@pytest.fixture(scope="module")
def routes_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("metrics-routes") / "routes.yaml"
    path.write_text(ROUTES_YAML)
    return path


@pytest.fixture(scope="module")
def mproxy(standins: StandIns, routes_path: Path) -> Iterator[ProxyProcess]:
    """This module's own proxy: reloads only when asked, a short read timeout and a small body limit."""
    proc = start_proxy(
        standins,
        routes_path,
        SSO_PROXY_RELOAD_INTERVAL="0",
        SSO_PROXY_READ_TIMEOUT=str(READ_TIMEOUT),
        SSO_PROXY_MAX_BODY_BYTES=str(MAX_BODY),
    )
    yield proc
    assert proc.stop() == 0


@contextlib.contextmanager
def route_map(proxy: ProxyProcess, path: Path, text: str) -> Iterator[None]:
    """Serve ``text`` as the route map for the block, then the original map again."""
    original = path.read_text()
    try:
        path.write_text(text)
        reply = httpx.post(f"{proxy.admin}/-/reload", timeout=10, headers=ADMIN_AUTH)
        assert reply.status_code == 200 and reply.json()["result"] == "success", reply.text
        yield
    finally:
        path.write_text(original)
        assert httpx.post(f"{proxy.admin}/-/reload", timeout=10, headers=ADMIN_AUTH).json()["result"] == "success"


# --- callbacks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    query: str
    body: str | None
    status: int
    labels: tuple[str, str, str, str, str]  # protocol, connection, decision, reason, identified_by
    forwarded: bool = False
    extra: dict[Key, float] = field(default_factory=dict)


# Callbacks that reach Auth0 must answer a login Auth0 started (its stand-in refuses any other state,
# as Auth0 does): ISSUED is replaced, at send time, by a state or RelayState the Auth0 stand-in issued.
ISSUED = "ISSUED-BY-AUTH0"
GARBAGE_SAML = f"SAMLResponse=%%%not-base64-at-all!!!&RelayState={ISSUED}"
CASES = [
    Case(
        "query_workos",
        "POST",
        "connection=acme-okta",
        saml_form(saml_xml()),
        307,
        ("saml", "acme-okta", "workos", "mapped", "query"),
    ),
    Case(
        "query_legacy",
        "POST",
        "connection=globex-adfs",
        saml_form(saml_xml(audience="urn:auth0:globex-prod:globex-adfs", issuer=None)),
        302,
        ("saml", "globex-adfs", "auth0", "mapped", "query"),
        forwarded=True,
    ),
    Case(
        "saml_audience",
        "POST",
        "",
        saml_form(saml_xml(audience="urn:auth0:globex-prod:hooli-ping", issuer=None, destination=None), ISSUED),
        307,
        ("saml", "hooli-ping", "workos", "mapped", "saml_audience"),
    ),
    Case(
        "saml_audience_redirect_binding",
        "GET",
        saml_redirect_query(saml_xml()) + "&RelayState=r",
        None,
        307,
        ("saml", "acme-okta", "workos", "mapped", "saml_audience"),
    ),
    Case(
        "saml_issuer",
        "POST",
        "",
        saml_form(
            saml_xml(audience=None, issuer="http://adfs.globex.com/adfs/services/trust", destination=None), ISSUED
        ),
        302,
        ("saml", "globex-adfs", "auth0", "mapped", "saml_issuer"),
        forwarded=True,
    ),
    Case(
        "saml_destination",
        "POST",
        "",
        saml_form(
            saml_xml(
                audience="urn:example:not-mapped",
                issuer="http://idp.example/not-mapped",
                destination="https://login.globex.com/login/callback?connection=hooli-ping",
            )
        ),
        307,
        ("saml", "hooli-ping", "workos", "mapped", "saml_destination"),
    ),
    Case(
        "oidc_aud",
        "POST",
        "",
        f"id_token={id_token({'aud': '3f2a9c1e-entra', 'iss': 'https://idp.example/other'})}&state=s",
        307,
        ("oidc", "initech-entra", "workos", "mapped", "oidc_aud"),
    ),
    Case(
        "oidc_aud_legacy",
        "POST",
        "",
        f"id_token={id_token({'aud': ['umbrella-google-client']})}&state={ISSUED}",
        302,
        ("oidc", "umbrella-google", "auth0", "mapped", "oidc_aud"),
        forwarded=True,
    ),
    Case(
        "oidc_iss",
        "POST",
        "",
        f"id_token={id_token({'aud': 'not-mapped', 'iss': 'https://login.microsoftonline.com/initech/v2.0'})}&state=s",
        307,
        ("oidc", "initech-entra", "workos", "mapped", "oidc_iss"),
    ),
    Case(
        "none_code_state",
        "GET",
        f"code=abc&state={ISSUED}",
        None,
        307,
        ("oidc", "_unknown", "workos", "unknown_default", "none"),
    ),
    Case(
        "none_no_hints",
        "GET",
        "",
        None,
        307,
        ("unknown", "_unknown", "workos", "unknown_default", "none"),
    ),
    Case(
        "fallback",
        "POST",
        "connection=hooli-ping&fallback=auth0",
        saml_form(saml_xml(audience="urn:auth0:globex-prod:hooli-ping")),
        302,
        ("saml", "hooli-ping", "auth0", "fallback", "query"),
        forwarded=True,
        extra={key("sso_proxy_fallbacks_total", connection="hooli-ping", solicited="false", verdict="accepted"): 1.0},
    ),
    Case(
        "fallback_identified_by_body",
        "POST",
        "fallback=auth0",
        saml_form(saml_xml(), ISSUED),
        302,
        ("saml", "acme-okta", "auth0", "fallback", "saml_audience"),
        forwarded=True,
        extra={key("sso_proxy_fallbacks_total", connection="acme-okta", solicited="false", verdict="accepted"): 1.0},
    ),
    Case(
        "unparseable_saml",
        "POST",
        "",
        GARBAGE_SAML,
        307,
        ("saml", "_unknown", "workos", "unparseable", "none"),
    ),
    Case(
        "unparseable_saml_xml",
        "POST",
        "",
        saml_form(b"<not-closed"),
        307,
        ("saml", "_unknown", "workos", "unparseable", "none"),
    ),
    Case(
        "unparseable_id_token",
        "POST",
        "",
        "id_token=not-a-jwt&state=s",
        307,
        ("oidc", "_unknown", "workos", "unparseable", "none"),
    ),
]


def send_case(proxy: ProxyProcess, case: Case, standins: StandIns) -> httpx.Response:
    query, body = case.query, case.body
    if ISSUED in query or ISSUED in (body or ""):
        # The app started this login at Auth0 (straight at the stand-in: the proxy counts nothing).
        issued = standins.start("umbrella-google" if case.labels[0] == "oidc" else "globex-adfs").state
        query, body = query.replace(ISSUED, issued), body.replace(ISSUED, issued) if body is not None else None
    url = f"{proxy.url}/login/callback" + (f"?{query}" if query else "")
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        if body is None:
            return client.request(case.method, url)
        return client.request(case.method, url, content=body.encode(), headers=FORM)


def unbound(case: Case, protocol: str, decision: str) -> dict[Key, float]:
    """A callback carrying a state or RelayState that no binding cookie names is counted as unbound
    (these requests carry no cookie); a fallback is not a login's first arrival, so it is not."""
    carries = any(name in case.query or name in (case.body or "") for name in ("state=", "RelayState="))
    if not carries or case.labels[3] == "fallback":
        return {}
    return {key("sso_proxy_unbound_callbacks_total", protocol=protocol, decision=decision): 1.0}


def case_changes(case: Case) -> dict[Key, float]:
    return add(
        unbound(case, case.labels[0], case.labels[2]),
        {callback_key(*case.labels): 1.0},
        request_changes("callback", case.method, case.status, case.status if case.forwarded else None),
        case.extra,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_callback_metrics(mproxy: ProxyProcess, standins: StandIns, case: Case) -> None:
    before = mproxy.scrape()
    reply = send_case(mproxy, case, standins)
    assert reply.status_code == case.status, reply.text
    if case.status == 307:
        assert "/sso/client_test/auth0/callback" in reply.headers["location"]
    expected = add(case_changes(case), first_seen(before, case.labels[1]))
    assert settle(mproxy, before, expected) == expected


KILL_SWITCH_YAML = ROUTES_YAML.replace("mode: normal", "mode: auth0")
SHADOW_YAML = ROUTES_YAML.replace("mode: normal", "mode: shadow")
BY_ID = {c.id: c for c in CASES}
MODE_CASES = {
    name: BY_ID[name]
    for name in ("query_workos", "query_legacy", "saml_audience", "none_code_state", "unparseable_saml")
}


def test_kill_switch_metrics(mproxy: ProxyProcess, standins: StandIns, routes_path: Path) -> None:
    with route_map(mproxy, routes_path, KILL_SWITCH_YAML):
        for name, case in MODE_CASES.items():
            protocol, connection, _, _, identified_by = case.labels
            before = mproxy.scrape()
            reply = send_case(mproxy, case, standins)
            assert reply.status_code == 302, (name, reply.text)  # every callback goes to Auth0
            expected = add(
                unbound(case, protocol, "auth0"),
                {callback_key(protocol, connection, "auth0", "kill_switch", identified_by): 1.0},
                request_changes("callback", case.method, 302, 302),
            )
            assert settle(mproxy, before, expected) == expected, name


def test_shadow_metrics(mproxy: ProxyProcess, standins: StandIns, routes_path: Path) -> None:
    with route_map(mproxy, routes_path, SHADOW_YAML):
        for name, case in MODE_CASES.items():
            protocol, connection, would, _, identified_by = case.labels
            before = mproxy.scrape()
            reply = send_case(mproxy, case, standins)
            assert reply.status_code == 302, (name, reply.text)  # shadow: decided and counted, sent to Auth0
            expected = add(
                unbound(case, protocol, "auth0"),
                {callback_key(protocol, connection, "auth0", "shadow", identified_by): 1.0},
                {key("sso_proxy_shadow_decisions_total", connection=connection, would=would): 1.0},
                request_changes("callback", case.method, 302, 302),
            )
            assert settle(mproxy, before, expected) == expected, name


# --- bounded labels -----------------------------------------------------------------------------


def test_unmapped_connection_names_are_labelled_unknown(mproxy: ProxyProcess, standins: StandIns) -> None:
    stranger = "stranger-" + secrets.token_hex(6)
    before = mproxy.scrape()
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        base = f"{mproxy.url}/login/callback"
        assert client.get(f"{base}?connection={stranger}&code=c&state=s").status_code == 307
        body = saml_form(saml_xml(audience=f"urn:auth0:globex-prod:{stranger}", issuer=f"http://{stranger}"))
        assert client.post(base, content=body.encode(), headers=FORM).status_code == 307
        issued = standins.start("umbrella-google").state  # Auth0 started it; WorkOS sent it back
        assert client.get(f"{base}?connection={stranger}&code=c&state={issued}&fallback=auth0").status_code == 302
    expected = add(
        {callback_key("oidc", "_unknown", "workos", "unknown_default", "none"): 1.0},
        {key("sso_proxy_unbound_callbacks_total", protocol="oidc", decision="workos"): 1.0},
        request_changes("callback", "GET", 307),
        {callback_key("saml", "_unknown", "workos", "unknown_default", "none"): 1.0},
        {key("sso_proxy_unbound_callbacks_total", protocol="saml", decision="workos"): 1.0},
        request_changes("callback", "POST", 307),
        {callback_key("oidc", "_unknown", "auth0", "fallback", "none"): 1.0},
        {key("sso_proxy_fallbacks_total", connection="_unknown", solicited="false", verdict="accepted"): 1.0},
        request_changes("callback", "GET", 302, 302),
    )
    assert settle(mproxy, before, expected) == expected
    assert stranger not in httpx.get(f"{mproxy.admin}/metrics").text


def test_odd_methods_are_labelled_other(mproxy: ProxyProcess) -> None:
    before = mproxy.scrape()
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        # The Auth0 stand-in does not route PROPFIND: it answers 405, passed back unchanged.
        assert client.request("PROPFIND", f"{mproxy.url}/dav/folder").status_code == 405
        # Only GET and POST on /login/callback are callbacks; anything else there is passed through.
        assert client.request("PURGE", f"{mproxy.url}/login/callback").status_code == 405
        assert client.request("OPTIONS", f"{mproxy.url}/anything").status_code == 200
    expected = add(
        request_changes("passthrough", "other", 405, 405),
        request_changes("passthrough", "other", 405, 405),
        request_changes("passthrough", "OPTIONS", 200, 200),
    )
    assert settle(mproxy, before, expected) == expected


# --- passthrough, upstream, rejections ------------------------------------------------------------


def test_passthrough_metrics(mproxy: ProxyProcess) -> None:
    before = mproxy.scrape()
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        assert client.get(f"{mproxy.url}/authorize?client_id=app").status_code == 302
        assert client.post(f"{mproxy.url}/oauth/token", data={"grant_type": "code"}).status_code == 200
        assert client.get(f"{mproxy.url}/.well-known/openid-configuration").status_code == 200
        assert client.head(f"{mproxy.url}/.well-known/jwks.json").status_code == 200
    expected = add(
        request_changes("passthrough", "GET", 302, 302),
        request_changes("passthrough", "POST", 200, 200),
        request_changes("passthrough", "GET", 200, 200),
        request_changes("passthrough", "HEAD", 200, 200),
    )
    assert settle(mproxy, before, expected) == expected


def test_upstream_timeout(mproxy: ProxyProcess) -> None:
    """A read timeout answers 504, counts as kind=timeout, and the in-flight gauge goes 1 -> 0."""
    before = mproxy.scrape()
    result: dict[str, float] = {}

    def slow() -> None:
        started = time.monotonic()
        reply = httpx.get(f"{mproxy.url}/_standin/slow?seconds=3", timeout=10)
        result["status"] = reply.status_code
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    in_flight_seen = 0.0
    deadline = time.monotonic() + 2
    while thread.is_alive() and time.monotonic() < deadline and not in_flight_seen:
        in_flight_seen = mproxy.scrape().get(key("sso_proxy_upstream_in_flight"), 0.0)
    thread.join(10)
    assert result["status"] == 504
    assert READ_TIMEOUT <= result["seconds"] < READ_TIMEOUT + 1.5
    assert in_flight_seen == 1.0
    expected = add(
        {key("sso_proxy_upstream_errors_total", kind="timeout"): 1.0},
        request_changes("passthrough", "GET", 504),
    )
    assert settle(mproxy, before, expected) == expected
    assert mproxy.scrape()[key("sso_proxy_upstream_in_flight")] == 0.0


def test_upstream_connect_error(standins: StandIns, routes_path: Path) -> None:
    """Auth0 unreachable (a closed port): 502 for passthrough and forwarded callbacks, kind=connect."""
    proc = start_proxy(standins, routes_path, AUTH0_FALLBACK_ORIGIN=f"http://127.0.0.1:{free_port()}")
    try:
        before = proc.scrape()
        with httpx.Client(follow_redirects=False, timeout=10) as client:
            assert client.get(f"{proc.url}/authorize").status_code == 502
            legacy = f"{proc.url}/login/callback?connection=globex-adfs"
            assert client.post(legacy, content=b"SAMLResponse=PHNhbWw%2B", headers=FORM).status_code == 502
        expected = add(
            {key("sso_proxy_upstream_errors_total", kind="connect"): 2.0},
            request_changes("passthrough", "GET", 502),
            request_changes("callback", "POST", 502),
            {callback_key("saml", "globex-adfs", "auth0", "mapped", "query"): 1.0},
            # the lost login is attributed to its connection (the dashboard's per-connection errors)
            {key("sso_proxy_callback_errors_total", connection="globex-adfs", kind="connect"): 1.0},
            first_seen(before, "globex-adfs"),
        )
        assert settle(proc, before, expected) == expected
        assert proc.scrape()[key("sso_proxy_upstream_in_flight")] == 0.0
    finally:
        assert proc.stop() == 0


def test_body_too_large(mproxy: ProxyProcess) -> None:
    """Refused with 413 before routing, whether the size is announced (Content-Length) or not (chunked)."""

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 8192 + 2):
            yield b"x" * 8192

    before = mproxy.scrape()
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        announced = b"SAMLResponse=" + b"A" * MAX_BODY
        reply = client.post(f"{mproxy.url}/login/callback", content=announced, headers=FORM)
        assert reply.status_code == 413
        assert client.post(f"{mproxy.url}/oauth/token", content=chunks()).status_code == 413
        # At the limit exactly: accepted.
        exact = b"SAMLResponse=" + b"A" * (MAX_BODY - len(b"SAMLResponse="))
        assert client.post(f"{mproxy.url}/login/callback", content=exact, headers=FORM).status_code == 307
    expected = add(
        {key("sso_proxy_rejected_requests_total", reason="body_too_large"): 2.0},
        request_changes("callback", "POST", 413),
        request_changes("passthrough", "POST", 413),
        request_changes("callback", "POST", 307),
        {callback_key("saml", "_unknown", "workos", "unparseable", "none"): 1.0},
    )
    assert settle(mproxy, before, expected) == expected


# --- the operations listener is not on the public one ------------------------------------------------

OPS_PATHS = [("GET", "/metrics"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/routes"), ("POST", "/-/reload")]


def test_operations_endpoints_are_not_served_publicly(mproxy: ProxyProcess, standins: StandIns) -> None:
    before = mproxy.scrape()
    standins.clear()
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        for method, path in OPS_PATHS:
            reply = client.request(method, f"{mproxy.url}{path}")
            # The Auth0 stand-in's echo: the request was passed through, not answered by the proxy.
            assert reply.status_code == 200, (method, path)
            assert reply.headers["content-type"] == "application/json", (method, path)
            echoed = reply.json()
            assert (echoed["method"], echoed["path"]) == (method, path)
            assert "sso_proxy_" not in reply.text
            assert reply.text not in ("ok\n", "ready\n", "draining\n")
    arrived = [(r["method"], r["path"]) for r in standins.received("auth0")]
    assert arrived == OPS_PATHS
    expected = add(
        *[request_changes("passthrough", method, 200, 200) for method, _ in OPS_PATHS],
    )
    # In particular no reload happened (sso_proxy_routemap_reloads_total did not move).
    assert settle(mproxy, before, expected) == expected
    # The operations listener does serve them.
    assert "sso_proxy_build_info" in httpx.get(f"{mproxy.admin}/metrics").text
    assert httpx.get(f"{mproxy.admin}/healthz").status_code == 200


# --- static series --------------------------------------------------------------------------------


def test_build_info_and_standard_collectors(mproxy: ProxyProcess) -> None:
    scrape = mproxy.scrape()
    assert scrape[key("sso_proxy_build_info", version=__version__, python=platform.python_version())] == 1.0
    assert [k for k in scrape if k[0] == "sso_proxy_build_info"] == [
        key("sso_proxy_build_info", version=__version__, python=platform.python_version())
    ]
    names = {name for name, _ in scrape}
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_objects_collected_total",
        "python_gc_collections_total",
    ):
        assert name in names, name
    assert scrape[key("sso_proxy_draining")] == 0.0
    assert scrape[key("sso_proxy_upstream_in_flight")] == 0.0
    # Error kinds and rejection reasons exist at zero before the first one, so rate() works from the start.
    for kind in ("connect", "timeout", "reset", "protocol"):
        assert key("sso_proxy_upstream_errors_total", kind=kind) in scrape
    for reason in ("body_too_large", "incomplete_body"):
        assert key("sso_proxy_rejected_requests_total", reason=reason) in scrape


def routemap_series(scrape: Scrape) -> dict[Key, float]:
    return {k: v for k, v in scrape.items() if k[0] in ("sso_proxy_routemap_info", "sso_proxy_routemap_connections")}


def test_routemap_info_and_connections(mproxy: ProxyProcess, routes_path: Path) -> None:
    sha = hashlib.sha256(routes_path.read_bytes()).hexdigest()
    scrape = mproxy.scrape()
    assert routemap_series(scrape) == {
        key("sso_proxy_routemap_info", sha256=sha, source=str(routes_path)): 1.0,
        key("sso_proxy_routemap_connections", state="workos"): 3.0,
        key("sso_proxy_routemap_connections", state="legacy"): 2.0,
        key("sso_proxy_routemap_connections", state="shadow"): 0.0,
    }
    assert scrape[key("sso_proxy_routemap_reloads_total", result="success")] >= 1.0
    assert time.time() - 3600 < scrape[key("sso_proxy_routemap_last_success_timestamp_seconds")] <= time.time()
    routes = httpx.get(f"{mproxy.admin}/routes").json()
    assert routes["sha256"] == sha
    assert routes["version"] == __version__
    assert routes["connections_per_state"] == {"workos": 3, "shadow": 0, "legacy": 2}


def test_reload_metrics(mproxy: ProxyProcess, routes_path: Path) -> None:
    """A rejected map counts an error and changes nothing else; an accepted one swaps every map series."""
    original = routes_path.read_text()
    old_sha = hashlib.sha256(original.encode()).hexdigest()
    before = mproxy.scrape()
    try:
        routes_path.write_text("version: 1\nconnections: [not, a, mapping]\n")
        reply = httpx.post(f"{mproxy.admin}/-/reload", timeout=10, headers=ADMIN_AUTH)
        assert reply.status_code == 422
        expected = {
            key("sso_proxy_routemap_reloads_total", result="error"): 1.0,
            key("sso_proxy_routemap_file_rejected"): 1.0,  # until the file holds a valid map
        }
        assert settle(mproxy, before, expected) == expected

        cut_over = original.replace(
            "  globex-adfs:\n    protocol: saml\n    state: legacy",
            "  globex-adfs:\n    protocol: saml\n    state: workos",
        )
        assert cut_over != original
        routes_path.write_text(cut_over)
        new_sha = hashlib.sha256(cut_over.encode()).hexdigest()
        before = mproxy.scrape()
        assert httpx.post(f"{mproxy.admin}/-/reload", timeout=10, headers=ADMIN_AUTH).json()["result"] == "success"
        after = mproxy.scrape()
        got = changes(before, after)
        stamp = key("sso_proxy_routemap_last_success_timestamp_seconds")
        assert got.pop(stamp) > 0
        assert got == {
            key("sso_proxy_routemap_reloads_total", result="success"): 1.0,
            key("sso_proxy_routemap_file_rejected"): -1.0,
            key("sso_proxy_routemap_info", sha256=old_sha, source=str(routes_path)): -1.0,
            key("sso_proxy_routemap_info", sha256=new_sha, source=str(routes_path)): 1.0,
            key("sso_proxy_routemap_connections", state="workos"): 1.0,
            key("sso_proxy_routemap_connections", state="legacy"): -1.0,
            key("sso_proxy_connection_state", connection="globex-adfs", state="legacy"): -1.0,
            key("sso_proxy_connection_state", connection="globex-adfs", state="workos"): 1.0,
        }
    finally:
        routes_path.write_text(original)
        assert httpx.post(f"{mproxy.admin}/-/reload", timeout=10, headers=ADMIN_AUTH).json()["result"] == "success"
    assert routemap_series(mproxy.scrape())[key("sso_proxy_routemap_info", sha256=old_sha, source=str(routes_path))]


def test_loop_histogram_buckets_are_inclusive_and_cumulative() -> None:
    """The lock-free histogram exposes what prometheus_client's would: le inclusive, cumulative."""
    from prometheus_client import CollectorRegistry, Histogram

    from proxy.metrics import LoopHistogram

    ours = LoopHistogram("ours_seconds", "x", ["g"], (0.1, 1.0), CollectorRegistry())
    theirs = Histogram("theirs_seconds", "x", ["g"], buckets=(0.1, 1.0), registry=CollectorRegistry())
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        ours.labels("a").observe(value)
        theirs.labels("a").observe(value)

    def samples(metric: object, prefix: str) -> dict[tuple[str, str], float]:
        (family,) = metric.collect()  # type: ignore[attr-defined]
        return {
            (s.name.removeprefix(prefix), s.labels.get("le", "")): s.value
            for s in family.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours, "ours") == samples(theirs, "theirs")
