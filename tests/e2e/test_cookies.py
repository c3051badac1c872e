"""Scenario 5: Auth0's cookies survive the proxy in both directions.

``/authorize`` is passed through to Auth0, which sets its session cookie on the custom domain; the
browser sends it back with the SAML callback, which the proxy forwards with it; Auth0's
``Set-Cookie`` headers on the callback answer reach the browser one by one.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from playwright.sync_api import BrowserContext

from .browser import travel
from .flows import check_saml_arrived, idp_initiated
from .world import INITECH, Idps, Stack, counted, labels

pytestmark = pytest.mark.e2e


def _jar(context: BrowserContext, url: str) -> dict[str, str]:
    return {cookie["name"]: cookie["value"] for cookie in context.cookies(url)}


def test_auth0_cookies_round_trip_through_the_proxy(context: BrowserContext, stack: Stack, idps: Idps) -> None:
    before = stack.proxy.callbacks()
    authorize = f"{stack.login}/authorize?" + urlencode(
        {
            "client_id": "globex-web",
            "response_type": "code",
            "redirect_uri": f"{stack.app_origin}/callback",
            "state": "app-state-1",
        }
    )
    first = travel(context, authorize, f"{stack.login}/u/login")
    assert first.path() == [("GET", f"{stack.login}/authorize", 302), ("GET", f"{stack.login}/u/login", 200)]
    session = _jar(context, stack.login)["auth0_session"]
    assert session.startswith("s-")

    start = idp_initiated(idps, stack, INITECH, "both")
    second = travel(context, start.url, f"{stack.app_origin}/callback")
    assert second.path()[-2:] == [
        ("POST", f"{stack.login}/login/callback", 302),
        ("GET", f"{stack.app_origin}/callback", 200),
    ]

    # Auth0 got the cookie it set earlier, on the callback the proxy forwarded.
    authorize_req, login_page, callback = stack.auth0.requests()
    assert (authorize_req.path, login_page.path, callback.path) == ("/authorize", "/u/login", "/login/callback")
    sent = SimpleCookie(callback.header("cookie") or "")
    assert sent["auth0_session"].value == session
    check_saml_arrived(callback, idps, start)

    # Auth0's two Set-Cookie headers reached the browser as two headers, and the jar took them.
    set_cookies = second.hops[1].set_cookies
    assert sorted(value.split("=", 1)[0] for value in set_cookies) == ["auth0", "auth0_compat"]
    jar = _jar(context, stack.login)
    assert jar["auth0_compat"] == "1"
    assert jar["auth0_session"] == session
    # ``auth0`` is SameSite=None without Secure on plain http, which Chromium rightly refuses to
    # store; over https (the stand-in sets Secure there) it would be kept like the others.
    assert "samesite=none" in next(v for v in set_cookies if v.startswith("auth0=")).lower()

    # Passthrough is not a callback: only the login itself was counted.
    assert counted(before, stack.proxy.callbacks()) == {labels("saml", INITECH, "auth0", "mapped", "query"): 1}
