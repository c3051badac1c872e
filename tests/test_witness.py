"""Issue 23 through the running server: Auth0's own state as a second witness, and a connection in shadow.

Two Auth0 stand-ins: one issues states of Auth0's own form (base64url MessagePack ``{h, n, tid,
cid}``, as Auth0 does), the other another form (``state_form="opaque"``: Auth0 after a format
change). The browser is played by hand, as in tests/test_binding_proxy.py: a callback "with the
cookie" carries the binding cookie the proxy set on the way out; "without" is a browser that lost it
(more logins than the cookies kept, a fresh context, a key rotation).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from proxy.routing.auth0state import is_auth0_state
from proxy.sandbox.auth0_standin import create_auth0_standin
from proxy.sandbox.workos_standin import create_workos_standin
from tests.conftest import (
    CLIENT_ID,
    CNAME_KEY,
    IDPS,
    MIGRATED,
    ROOT,
    ROUTES_YAML,
    ProxyProcess,
    StandIns,
    ThreadServer,
    free_port,
    run_cli,
    start_proxy,
)
from tests.samples import saml_form, saml_xml

KEYS = "w" * 40
FORM = {"content-type": "application/x-www-form-urlencoded"}
# hooli-ping moves legacy -> shadow: its callbacks go to Auth0, and those that would go to WorkOS are counted.
SHADOW_ROUTES = ROUTES_YAML.replace(
    "  hooli-ping:\n    protocol: saml\n    state: workos", "  hooli-ping:\n    protocol: saml\n    state: shadow"
)


def _standins(state_form: str) -> StandIns:
    proxy_port = free_port()
    auth0 = ThreadServer(create_auth0_standin(CNAME_KEY, idps=IDPS, state_form=state_form)).start()
    workos = ThreadServer(create_workos_standin(CLIENT_ID, f"http://127.0.0.1:{proxy_port}", MIGRATED, idps=IDPS))
    return StandIns(auth0, workos.start(), proxy_port)


@pytest.fixture(scope="module", params=["auth0", "opaque"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, StandIns, ProxyProcess]]:
    """(the stand-in's state form, the stand-ins, the proxy in front of them)."""
    form = str(request.param)
    standins = _standins(form)
    routes = tmp_path_factory.mktemp(f"witness-{form}") / "routes.yaml"
    routes.write_text(SHADOW_ROUTES)
    proxy = start_proxy(standins, routes, port=standins.proxy_port, SSO_PROXY_TRANSACTION_KEYS=KEYS)
    yield form, standins, proxy
    proxy.stop()
    standins.auth0.stop()
    standins.workos.stop()


def metric(proxy: ProxyProcess, name: str, **labels: str) -> float:
    return proxy.scrape().get((name, tuple(sorted(labels.items()))), 0.0)


def start_login(proxy: ProxyProcess, connection: str) -> tuple[httpx.Response, str, str]:
    """/authorize through the proxy, as a browser sends it (no binding cookies): (response, state or
    RelayState, the binding cookie's name=value)."""
    started = httpx.get(f"{proxy.url}/authorize?client_id=app&connection={connection}", timeout=10)
    if started.status_code == 302:
        query = parse_qs(urlsplit(started.headers["location"]).query)
        state = (query.get("state") or query["RelayState"])[0]
    else:
        state = started.text.split('name="RelayState" value="', 1)[1].split('"', 1)[0]
    pair = next(v for v in started.headers.get_list("set-cookie") if v.startswith("sso_proxy_tx_"))
    return started, state, pair.split(";", 1)[0]


def callback(proxy: ProxyProcess, connection: str, state: str, cookie: str | None) -> httpx.Response:
    headers = {"cookie": cookie} if cookie else {}
    if connection == "initech-entra":  # OIDC code flow: code + state, nothing names the connection
        return httpx.get(f"{proxy.url}/login/callback?code=c1&state={state}", headers=headers, timeout=10)
    body = saml_form(saml_xml(audience=f"urn:auth0:globex-prod:{connection}"), relay_state=state).encode()
    return httpx.post(f"{proxy.url}/login/callback", content=body, headers={**FORM, **headers}, timeout=10)


@pytest.mark.parametrize("connection", ["initech-entra", "acme-okta"], ids=["oidc-code", "saml-post"])
def test_an_auth0_started_login_without_its_cookie(world: tuple[str, StandIns, ProxyProcess], connection: str) -> None:
    """Both connections are cut over (workos). Auth0's own form: the callback goes to Auth0 by its
    state alone (reason auth0_state), no WorkOS request. Another form: only the cookie could have
    said so, so it takes the WorkOS detour, as before this change."""
    form, standins, proxy = world
    _, state, _cookie = start_login(proxy, connection)
    assert is_auth0_state(state) is (form == "auth0")
    protocol = "oidc" if connection == "initech-entra" else "saml"
    named = "_unknown" if protocol == "oidc" else connection
    identified = "none" if protocol == "oidc" else "saml_audience"
    standins.clear()
    reply = callback(proxy, connection, state, None)
    if form == "auth0":
        assert reply.status_code == 302, reply.text  # the Auth0 stand-in signs in
        assert [r["path"] for r in standins.received("auth0")] == ["/login/callback"]
        assert standins.received("workos") == []
        labels = {"protocol": protocol, "connection": named, "decision": "auth0", "identified_by": identified}
        assert metric(proxy, "sso_proxy_callbacks_total", reason="auth0_state", **labels) >= 1
    else:
        assert reply.status_code == 307
        assert standins.received("auth0") == []


@pytest.mark.parametrize("connection", ["initech-entra", "acme-okta"], ids=["oidc-code", "saml-post"])
def test_with_its_cookie_the_cookie_routes_and_the_witnesses_are_compared(
    world: tuple[str, StandIns, ProxyProcess], connection: str
) -> None:
    """With the cookie it goes to Auth0 whatever the state's form (auth0_transaction); a state not of
    Auth0's form on such a callback is counted as the witnesses disagreeing."""
    form, standins, proxy = world
    protocol = "oidc" if connection == "initech-entra" else "saml"
    _, state, cookie = start_login(proxy, connection)
    before = metric(proxy, "sso_proxy_witness_disagreements_total", protocol=protocol)
    standins.clear()
    reply = callback(proxy, connection, state, cookie)
    assert reply.status_code == 302, reply.text
    assert standins.received("workos") == []
    after = metric(proxy, "sso_proxy_witness_disagreements_total", protocol=protocol)
    assert after - before == (0 if form == "auth0" else 1)


def test_a_fallback_is_not_compared(world: tuple[str, StandIns, ProxyProcess]) -> None:
    """A bound callback that comes back with fallback=auth0 goes to Auth0 as a fallback whatever binds
    it: its witnesses are not read, so a state of another form is no disagreement (the alert divides
    the disagreements by the callbacks the cookie routed, reason auth0_transaction)."""
    _, standins, proxy = world
    _, state, cookie = start_login(proxy, "initech-entra")
    before = metric(proxy, "sso_proxy_witness_disagreements_total", protocol="oidc")
    standins.clear()
    reply = httpx.get(
        f"{proxy.url}/login/callback?code=c1&state={state}&fallback=auth0", headers={"cookie": cookie}, timeout=10
    )
    assert reply.status_code == 302, reply.text  # Auth0 issued that state: it signs in
    assert [r["path"] for r in standins.received("auth0")] == ["/login/callback"]
    assert metric(proxy, "sso_proxy_witness_disagreements_total", protocol="oidc") == before


def test_a_forged_state_of_the_form_only_reaches_auth0_which_refuses_it(
    world: tuple[str, StandIns, ProxyProcess],
) -> None:
    """Anyone can write a state of Auth0's form: it sends the callback to Auth0 (as fallback=auth0
    already can), which refuses a state it did not issue."""
    from proxy.sandbox.standin import auth0_state

    _, standins, proxy = world
    standins.clear()
    reply = httpx.get(f"{proxy.url}/login/callback?code=c1&state={auth0_state()}", timeout=10)
    assert reply.status_code == 400 and "invalid state" in reply.text
    assert standins.received("workos") == []


def test_a_connection_in_shadow_goes_to_auth0_and_counts_what_would_go_to_workos(
    world: tuple[str, StandIns, ProxyProcess], tmp_path: Path
) -> None:
    """hooli-ping is in state shadow: an IdP-initiated callback (nobody started it) goes to Auth0 and is
    counted in sso_proxy_shadow_total{connection}; a login Auth0 started (bound) goes to Auth0 and is
    not counted (it would not have gone to WorkOS either). GET /routes, `routes report` and `explain`
    show it."""
    _, standins, proxy = world
    before = metric(proxy, "sso_proxy_shadow_total", connection="hooli-ping")
    body = saml_form(saml_xml(audience="urn:auth0:globex-prod:hooli-ping")).encode()
    standins.clear()
    for _ in range(2):
        reply = httpx.post(f"{proxy.url}/login/callback?connection=hooli-ping", content=body, headers=FORM, timeout=10)
        assert reply.status_code == 302
    assert standins.received("workos") == []
    assert metric(proxy, "sso_proxy_shadow_total", connection="hooli-ping") == before + 2
    labels = {"protocol": "saml", "connection": "hooli-ping", "decision": "auth0", "identified_by": "query"}
    assert metric(proxy, "sso_proxy_callbacks_total", reason="shadow", **labels) >= 2
    assert metric(proxy, "sso_proxy_connection_state", connection="hooli-ping", state="shadow") == 1
    assert metric(proxy, "sso_proxy_shadow_decisions_total", connection="hooli-ping", would="workos") == 0

    _, state, cookie = start_login(proxy, "hooli-ping")
    assert callback(proxy, "hooli-ping", state, cookie).status_code == 302
    assert metric(proxy, "sso_proxy_shadow_total", connection="hooli-ping") == before + 2

    progress = httpx.get(f"{proxy.admin}/routes", timeout=10).json()["connections_progress"]["hooli-ping"]
    assert progress["state"] == "shadow" and progress["shadow"] == before + 2
    report = run_cli("routes", "report", "--admin", proxy.admin)
    assert report.returncode == 0, report.stderr
    (line,) = [row for row in report.stdout.splitlines() if row.startswith("hooli-ping ")]
    assert "shadow, on Auth0, counting" in line
    counted = f"would have gone to WorkOS): hooli-ping {int(before) + 2}"
    assert f"in shadow (callbacks go to Auth0; 'shadow' counts those that {counted}" in report.stdout

    routes = tmp_path / "routes.yaml"
    routes.write_text(SHADOW_ROUTES)
    explained = subprocess.run(
        [sys.executable, "-m", "proxy", "explain", "--routes", str(routes),
         "https://login.example.com/login/callback?connection=hooli-ping", "-d", body.decode()],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert explained.returncode == 10, explained.stderr
    assert "connection:     hooli-ping (state shadow)" in explained.stdout
    assert (
        "reason:         shadow (connection in shadow: would go to workos; counted in sso_proxy_shadow_total)"
        in explained.stdout
    )
