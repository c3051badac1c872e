"""Issue 23 in Chromium: who started a login, even when the binding cookie is gone.

The matrix's world (tests/e2e/test_binding_matrix.py: TLS, real IdP, stand-ins), with one proxy
(``defaults.unknown: workos``, 307) and connections cut over to WorkOS, twice: the Auth0 stand-in
issuing states of Auth0's own form (as Auth0 does: base64url MessagePack ``{h, n, tid, cid}``), and
issuing another form (``opaque``: Auth0 after a format change, or a state the witness does not know).

- The cookie removed before the callback (the browser's cookies cleared while the user is on the
  IdP's sign-in page, which is what a fresh context, a lost cookie or a key rotation leave): with
  Auth0's form, OIDC (code, form_post) and SAML (HTTP-POST) logins end at Auth0 with ZERO requests
  to WorkOS, reason ``auth0_state``.
- 12 logins started one after another in 12 tabs, all waiting at the IdP before any comes back: the
  list of logins keeps 8 cookies, so the 4 oldest lose theirs. What happens to those 4 is measured
  with both forms (README "Who starts a login" reports it).
- The other form, cookie kept: the cookie alone still routes, and every such callback is counted as
  the two witnesses disagreeing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from .app_page import WELCOME
from .browser import launch, travel
from .servers import Labels
from .test_binding_matrix import CLIENT_ID, Matrix, Side, conn_name, running_matrix, start_url

pytestmark = pytest.mark.e2e

SIDE = ("workos", "307")
TABS = 12
IN_FLIGHT = 8  # txcookie/binding: the list of logins keeps the newest 8


# Its own Playwright, like test_binding_matrix.py's: the Sync API allows one per thread at a time, so
# this module must run before the session browser of tests/e2e/conftest.py starts (test_cookies.py
# onwards): hence its name, which sorts right after test_binding_matrix.py.
@pytest.fixture(scope="module", params=["auth0", "opaque"])
def witness(
    request: pytest.FixtureRequest, e2e_tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Matrix, BrowserContext]]:
    """(the stand-in's state form, the world, Chromium trusting exactly its test certificate)."""
    form = str(request.param)
    with running_matrix(tmp_path_factory.mktemp(f"witness-{form}"), state_form=form, run=(SIDE,)) as matrix:
        with launch(tmp_path_factory.mktemp(f"chromium-witness-{form}"), matrix.spki, 15_000) as context:
            yield form, matrix, context


def moved(side: Side, name: str, before: dict[Labels, float]) -> dict[str, float]:
    """Per reason, how much ``name`` (a counter labelled with reason) grew since ``before``."""
    out: dict[str, float] = {}
    for labels, value in side.counter(name).items():
        grown = value - before.get(labels, 0.0)
        if grown:
            reason = dict(labels).get("reason", dict(labels).get("protocol", ""))
            out[reason] = out.get(reason, 0.0) + grown
    return out


def workos_callbacks(side: Side) -> int:
    return len([r for r in side.workos.requests() if r.path == f"/sso/{CLIENT_ID}/auth0/callback"])


def reset(matrix: Matrix, side: Side, context: BrowserContext) -> None:
    context.clear_cookies()
    for server in (matrix.auth0, matrix.app, side.workos):
        server.clear()


@pytest.mark.parametrize("protocol", ["oidc-code", "oidc-post", "saml-post"])
def test_an_auth0_started_login_whose_cookie_is_removed_before_the_callback(
    witness: tuple[str, Matrix, BrowserContext], protocol: str
) -> None:
    """Auth0's form: straight to Auth0, zero WorkOS requests (auth0_state). Another form: nothing
    says Auth0 started it, so it goes to WorkOS (its connection is cut over, or unidentifiable and
    defaults.unknown is workos), which does not know the login and sends it back (fallback=auth0)."""
    form, matrix, context = witness
    side = matrix.sides[SIDE]
    name = conn_name(protocol, "workos")  # cut over: without a witness its callbacks go to WorkOS
    reset(matrix, side, context)
    before = side.callbacks()
    matrix.oidc.prompt = True
    tab = context.new_page()
    try:
        tab.goto(start_url(matrix, side, name, "auth0"))
        tab.wait_for_selector("#sign-in")
        assert any(c["name"].startswith("sso_proxy_tx_") for c in context.cookies())
        context.clear_cookies()  # the binding cookie is gone before the IdP sends the user back
        with tab.expect_event("load", predicate=lambda p: p.url.startswith(f"{matrix.app_origin}/callback")):
            tab.click("#sign-in")
        assert WELCOME in tab.inner_text("body")
    finally:
        matrix.oidc.prompt = False
        tab.close()
    arrived = [r for r in matrix.auth0.requests() if r.path == "/login/callback"]
    assert len(arrived) == 1 and "sso_proxy_tx_" not in (arrived[0].header("cookie") or "")
    reasons = moved(side, "sso_proxy_callbacks_total", before)
    if form == "auth0":
        assert side.workos.requests() == []  # zero WorkOS round trips
        assert reasons == {"auth0_state": 1.0}
    else:
        assert workos_callbacks(side) == 1  # the detour
        first = "unknown_default" if protocol == "oidc-code" else "mapped"
        assert reasons == {first: 1.0, "fallback": 1.0}


def test_twelve_tabs(witness: tuple[str, Matrix, BrowserContext]) -> None:
    """12 Auth0-started logins, one after another, all at the IdP before any returns; signed in
    oldest first. The newest 8 keep their cookies (auth0_transaction); the 4 oldest lost theirs
    (deleted by the 9th to 12th /authorize) and are routed by the state's form, or, without it, go
    through WorkOS and back (a solicited fallback each)."""
    form, matrix, context = witness
    side = matrix.sides[SIDE]
    name = conn_name("oidc-code", "workos")
    reset(matrix, side, context)
    before = side.callbacks()
    disagreed = side.counter("sso_proxy_witness_disagreements_total")
    fallbacks = side.counter("sso_proxy_fallbacks_total")
    matrix.oidc.prompt = True
    tabs = []
    try:
        for _ in range(TABS):
            tab = context.new_page()
            tab.goto(start_url(matrix, side, name, "auth0"))
            tab.wait_for_selector("#sign-in")
            tabs.append(tab)
        held = [c for c in context.cookies() if c["name"].startswith("sso_proxy_tx_") and c["value"]]
        assert len(held) == IN_FLIGHT
        for tab in tabs:
            with tab.expect_event("load", predicate=lambda p: p.url.startswith(f"{matrix.app_origin}/callback")):
                tab.click("#sign-in")
            assert WELCOME in tab.inner_text("body")
    finally:
        matrix.oidc.prompt = False
        for tab in tabs:
            tab.close()
    reasons = moved(side, "sso_proxy_callbacks_total", before)
    lost = TABS - IN_FLIGHT
    assert len([r for r in matrix.auth0.requests() if r.path == "/login/callback"]) == TABS  # all signed in
    if form == "auth0":
        assert reasons == {"auth0_transaction": float(IN_FLIGHT), "auth0_state": float(lost)}, reasons
        assert workos_callbacks(side) == 0
        assert moved(side, "sso_proxy_witness_disagreements_total", disagreed) == {}
    else:
        # Each lost login: to WorkOS (not identifiable: defaults.unknown), back with fallback=auth0.
        assert reasons == {
            "auth0_transaction": float(IN_FLIGHT),
            "unknown_default": float(lost),
            "fallback": float(lost),
        }, reasons
        assert workos_callbacks(side) == lost
        solicited: dict[str, float] = {}
        for labels, value in side.counter("sso_proxy_fallbacks_total").items():
            kind = dict(labels)["solicited"]
            solicited[kind] = solicited.get(kind, 0.0) + value - fallbacks.get(labels, 0.0)
        assert solicited.get("true") == float(lost), solicited
        # Every bound callback carried a state of another form: the witnesses disagreed 8 times.
        assert moved(side, "sso_proxy_witness_disagreements_total", disagreed) == {"oidc": float(IN_FLIGHT)}


@pytest.mark.parametrize("protocol", ["oidc-code", "saml-post"])
def test_the_cookie_alone_routes_and_the_witnesses_are_compared(
    witness: tuple[str, Matrix, BrowserContext], protocol: str
) -> None:
    """Cookie kept: Auth0 gets it whatever the state's form, with zero WorkOS requests; a state not
    of Auth0's form is counted as a disagreement, one of Auth0's form is not."""
    form, matrix, context = witness
    side = matrix.sides[SIDE]
    name = conn_name(protocol, "workos")
    reset(matrix, side, context)
    before = side.callbacks()
    disagreed = side.counter("sso_proxy_witness_disagreements_total")
    trip = travel(context, start_url(matrix, side, name, "auth0"), f"{matrix.app_origin}/callback")
    assert WELCOME in trip.text, trip.path()
    assert side.workos.requests() == []
    assert moved(side, "sso_proxy_callbacks_total", before) == {"auth0_transaction": 1.0}
    grown = moved(side, "sso_proxy_witness_disagreements_total", disagreed)
    assert grown == ({} if form == "auth0" else {protocol.split("-")[0]: 1.0})
