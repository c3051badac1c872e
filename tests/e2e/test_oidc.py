"""Scenario 6: OIDC through the proxy with tokens signed by a real JOSE library (joserfc).

Front channel: WorkOS starts the login (the app moved it there); the IdP's ``response_mode=form_post``
page posts ``id_token`` + ``state``; the proxy reads the token's unverified ``aud`` only as a routing
hint and sends the browser to WorkOS, where the token still verifies and the state is WorkOS's own.
Back channel: Auth0 starts the login of a connection the route map does not know; the IdP's
``code`` + ``state`` redirect names no connection, so ``defaults.unknown`` (workos) decides (this
suite runs over plain http, where the browser keeps no ``Secure`` binding cookie: see
test_binding_matrix.py for the same login over https, which goes straight back to Auth0); WorkOS did
not start it and bounces it with ``fallback=auth0``; the proxy forwards it to Auth0 without the
``fallback`` parameter, and Auth0 accepts the state it issued.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import BrowserContext

from .browser import travel
from .flows import form
from .world import HOOLI, HOOLI_CLIENT_ID, UNMAPPED_OIDC, Idps, Stack, counted, labels

pytestmark = pytest.mark.e2e


def _state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def test_front_channel_id_token_is_routed_by_audience(context: BrowserContext, stack: Stack, idps: Idps) -> None:
    before = stack.proxy.callbacks()
    start = f"{stack.workos_origin}/sso/authorize?connection={HOOLI}"
    trip = travel(context, start, stack.workos_callback)

    assert trip.path() == [
        ("GET", f"{stack.workos_origin}/sso/authorize", 302),
        ("GET", f"{idps.origin}/oidc/authorize", 200),
        ("POST", f"{stack.login}/login/callback", 307 if stack.mode == "307" else 200),
        ("POST", stack.workos_callback, 200),
    ]
    assert f"connection: {HOOLI}" in trip.text
    (arrived,) = [r for r in stack.workos.requests() if r.path != "/sso/authorize"]
    fields = form(arrived)
    assert fields["state"] == [_state_of(trip.hops[1].url)]  # WorkOS's own state, back at WorkOS
    assert fields["id_token"] == [idps.oidc.issued[-1]]
    claims = idps.oidc.verify(fields["id_token"][0], HOOLI_CLIENT_ID)
    assert claims["email"] == "wile.e.coyote@customer.test"
    assert stack.auth0.requests() == []
    assert counted(before, stack.proxy.callbacks()) == {labels("oidc", HOOLI, "workos", "mapped", "oidc_aud"): 1}


def test_back_channel_code_goes_by_default_and_falls_back(context: BrowserContext, stack: Stack, idps: Idps) -> None:
    before = stack.proxy.callbacks()
    start = f"{stack.login}/authorize?" + urlencode(
        {"client_id": "globex-web", "response_type": "code", "connection": UNMAPPED_OIDC}
    )
    trip = travel(context, start, f"{stack.app_origin}/callback")

    (code,) = [c for c, client in idps.oidc.codes.items() if client == UNMAPPED_OIDC][-1:]
    query = urlencode({"code": code, "state": _state_of(trip.hops[1].url)})
    assert trip.path() == [
        ("GET", f"{stack.login}/authorize", 302),  # Auth0 starts the login, through the proxy
        ("GET", f"{idps.origin}/oidc/authorize", 302),
        ("GET", f"{stack.login}/login/callback", 307),  # unknown: defaults.unknown = workos
        ("GET", stack.workos_callback, 307),  # WorkOS: not mine
        ("GET", f"{stack.login}/login/callback", 302),  # fallback=auth0: forwarded, Auth0 answers
        ("GET", f"{stack.app_origin}/callback", 200),
    ]
    assert trip.hops[2].url == f"{stack.login}/login/callback?{query}"
    assert trip.hops[3].url == f"{stack.workos_callback}?{query}"
    assert trip.hops[4].url == f"{stack.login}/login/callback?{query}&fallback=auth0"
    (bounced,) = stack.workos.requests()
    assert (bounced.method, bounced.query) == ("GET", query)
    (arrived,) = [r for r in stack.auth0.requests() if r.path == "/login/callback"]
    assert (arrived.method, arrived.path, arrived.query, arrived.body) == ("GET", "/login/callback", query, b"")
    assert counted(before, stack.proxy.callbacks()) == {
        labels("oidc", "_unknown", "workos", "unknown_default", "none"): 1,
        labels("oidc", "_unknown", "auth0", "fallback", "none"): 1,
    }
