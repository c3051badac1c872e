"""Scenario 6: OIDC through the proxy with tokens signed by a real JOSE library (joserfc).

Front channel: the IdP's ``response_mode=form_post`` page posts ``id_token`` + ``state``; the proxy
reads the token's unverified ``aud`` only as a routing hint and sends the browser to WorkOS, where
the token still verifies. Back channel: a ``code`` + ``state`` redirect names no connection, so
``defaults.unknown`` (workos) decides; WorkOS does not know it and bounces it with
``fallback=auth0``; the proxy forwards it to Auth0 without the ``fallback`` parameter.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

import pytest
from playwright.sync_api import BrowserContext

from .browser import travel
from .flows import form
from .world import HOOLI, HOOLI_CLIENT_ID, Idps, Stack, counted, labels

pytestmark = pytest.mark.e2e


def _authorize(idps: Idps, stack: Stack, client_id: str, response_type: str, state: str) -> str:
    params = {
        "client_id": client_id,
        "redirect_uri": f"{stack.login}/login/callback",
        "response_type": response_type,
        "scope": "openid email",
        "state": state,
        "nonce": secrets.token_urlsafe(8),
    }
    if response_type == "id_token":
        params["response_mode"] = "form_post"
    return f"{idps.origin}/oidc/authorize?{urlencode(params)}"


def test_front_channel_id_token_is_routed_by_audience(context: BrowserContext, stack: Stack, idps: Idps) -> None:
    state = "auth0-state-" + secrets.token_urlsafe(12)
    before = stack.proxy.callbacks()
    trip = travel(context, _authorize(idps, stack, HOOLI_CLIENT_ID, "id_token", state), stack.workos_callback)

    assert trip.path() == [
        ("GET", f"{idps.origin}/oidc/authorize", 200),
        ("POST", f"{stack.login}/login/callback", 307 if stack.mode == "307" else 200),
        ("POST", stack.workos_callback, 200),
    ]
    assert f"connection: {HOOLI}" in trip.text
    (arrived,) = stack.workos.requests()
    fields = form(arrived)
    assert fields["state"] == [state]
    assert fields["id_token"] == [idps.oidc.issued[-1]]
    claims = idps.oidc.verify(fields["id_token"][0], HOOLI_CLIENT_ID)
    assert claims["email"] == "wile.e.coyote@customer.test"
    assert stack.auth0.requests() == []
    assert counted(before, stack.proxy.callbacks()) == {labels("oidc", HOOLI, "workos", "mapped", "oidc_aud"): 1}


def test_back_channel_code_goes_by_default_and_falls_back(context: BrowserContext, stack: Stack, idps: Idps) -> None:
    state = "auth0-state-" + secrets.token_urlsafe(12)
    before = stack.proxy.callbacks()
    trip = travel(context, _authorize(idps, stack, "globex-unmapped", "code", state), f"{stack.app_origin}/callback")

    (code,) = [c for c, client in idps.oidc.codes.items() if client == "globex-unmapped"][-1:]
    query = urlencode({"code": code, "state": state})
    assert trip.path() == [
        ("GET", f"{idps.origin}/oidc/authorize", 302),
        ("GET", f"{stack.login}/login/callback", 307),  # unknown: defaults.unknown = workos
        ("GET", stack.workos_callback, 307),  # WorkOS: not mine
        ("GET", f"{stack.login}/login/callback", 302),  # fallback=auth0: forwarded, Auth0 answers
        ("GET", f"{stack.app_origin}/callback", 200),
    ]
    assert trip.hops[1].url == f"{stack.login}/login/callback?{query}"
    assert trip.hops[2].url == f"{stack.workos_callback}?{query}"
    assert trip.hops[3].url == f"{stack.login}/login/callback?{query}&fallback=auth0"
    (bounced,) = stack.workos.requests()
    assert (bounced.method, bounced.query) == ("GET", query)
    (arrived,) = stack.auth0.requests()
    assert (arrived.method, arrived.path, arrived.query, arrived.body) == ("GET", "/login/callback", query, b"")
    assert counted(before, stack.proxy.callbacks()) == {
        labels("oidc", "_unknown", "workos", "unknown_default", "none"): 1,
        labels("oidc", "_unknown", "auth0", "fallback", "none"): 1,
    }
