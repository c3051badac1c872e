"""Scenarios 1-4: signed SAML responses through the proxy in Chromium, in 307 and form mode.

Each test asserts where the browser ended, the hops it made, what the final server received (the
IdP's SAMLResponse, byte for byte, verifying with pysaml2 as SP), and the decision the proxy counted.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from playwright.sync_api import BrowserContext

from .browser import Trip, travel
from .flows import Start, check_saml_arrived, form, idp_initiated, sp_initiated
from .idp import Signing
from .servers import Labels
from .world import ACME, INITECH, UMBRELLA, UMBRELLA_EXTRA, Idps, Stack, counted, labels

pytestmark = pytest.mark.e2e
SIGNINGS: tuple[Signing, ...] = ("assertion", "response", "both")


def _login(context: BrowserContext, stack: Stack, start: Start, until: str) -> tuple[Trip, dict[Labels, float]]:
    before = stack.proxy.callbacks()
    trip = travel(context, start.url, until)
    return trip, counted(before, stack.proxy.callbacks())


def _to_workos(stack: Stack, start: Start) -> list[tuple[str, str, int]]:
    """The hops of a login the proxy sends on to WorkOS, per redirect mode."""
    idp_page = start.url.split("?", 1)[0]
    proxy_status = 307 if stack.mode == "307" else 200  # form mode: the proxy's auto-submitting page
    return [
        ("GET", idp_page, 200),
        ("POST", f"{stack.login}/login/callback", proxy_status),
        ("POST", stack.workos_callback, 200),
    ]


def _same_body_as_sent(trip: Trip, index: int, received: bytes, stack: Stack) -> None:
    """307 makes the browser resend its bytes; form mode re-encodes the same fields."""
    sent = trip.hops[index].sent_body
    assert sent is not None
    if stack.mode == "307":
        assert received == sent
    else:
        assert sorted(form_fields(received)) == sorted(form_fields(sent))


def form_fields(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


@pytest.mark.parametrize("signing", SIGNINGS)
def test_cut_over_connection_goes_to_workos_idp_initiated(
    context: BrowserContext, stack: Stack, idps: Idps, signing: Signing
) -> None:
    start = idp_initiated(idps, stack, ACME, signing)
    trip, moved = _login(context, stack, start, stack.workos_callback)

    assert trip.final_url == f"{stack.workos_callback}?connection={ACME}"
    assert f"connection: {ACME}" in trip.text
    assert trip.path() == _to_workos(stack, start)
    (arrived,) = stack.workos.requests()
    assert arrived.query == f"connection={ACME}"
    check_saml_arrived(arrived, idps, start)
    _same_body_as_sent(trip, 1, arrived.body, stack)
    assert stack.auth0.requests() == []
    assert moved == {labels("saml", ACME, "workos", "mapped", "query"): 1}


def test_cut_over_connection_goes_to_workos_sp_initiated(context: BrowserContext, stack: Stack, idps: Idps) -> None:
    start = sp_initiated(idps, stack, ACME, "both", at="workos")  # the app moved this login to WorkOS
    trip, moved = _login(context, stack, start, stack.workos_callback)

    assert trip.final_url == stack.workos_callback
    assert f"connection: {ACME}" in trip.text
    assert trip.path() == _to_workos(stack, start)
    (arrived,) = [r for r in stack.workos.requests() if r.path != "/sso/authorize"]
    assert arrived.query == ""
    assert check_saml_arrived(arrived, idps, start).audience == f"urn:auth0:globex:{ACME}"
    assert stack.auth0.requests() == []
    assert moved == {labels("saml", ACME, "workos", "mapped", "saml_audience"): 1}


@pytest.mark.parametrize("initiated", ["idp", "sp"])
def test_legacy_connection_is_forwarded_to_auth0(
    context: BrowserContext, stack: Stack, idps: Idps, initiated: str
) -> None:
    begin = idp_initiated if initiated == "idp" else sp_initiated
    start = begin(idps, stack, INITECH, "both")
    trip, moved = _login(context, stack, start, f"{stack.app_origin}/callback")

    assert trip.path() == [
        ("GET", start.url.split("?", 1)[0], 200),
        ("POST", f"{stack.login}/login/callback", 302),  # Auth0's answer, streamed back
        ("GET", f"{stack.app_origin}/callback", 200),
    ]
    assert trip.final_url.startswith(f"{stack.app_origin}/callback?code=")
    (arrived,) = [r for r in stack.auth0.requests() if r.path == "/login/callback"]
    assert (arrived.method, arrived.path) == ("POST", "/login/callback")
    assert arrived.query == (f"connection={INITECH}" if initiated == "idp" else "")
    assert arrived.body == trip.hops[1].sent_body  # forwarded byte for byte
    check_saml_arrived(arrived, idps, start)
    assert stack.workos.requests() == []
    identified_by = "query" if initiated == "idp" else "saml_audience"
    assert moved == {labels("saml", INITECH, "auth0", "mapped", identified_by): 1}


@pytest.mark.parametrize("initiated", ["idp", "sp"])
def test_connection_unknown_to_workos_falls_back_to_auth0(
    context: BrowserContext, stack: Stack, idps: Idps, initiated: str
) -> None:
    if initiated == "idp":
        start = idp_initiated(idps, stack, UMBRELLA, "response", query=UMBRELLA_EXTRA)
        query, identified_by = f"connection={UMBRELLA}{UMBRELLA_EXTRA}", "query"
    else:
        start = sp_initiated(idps, stack, UMBRELLA, "assertion")
        query, identified_by = "", "saml_issuer"  # its Audience is not urn:auth0:..., only the Issuer names it
    trip, moved = _login(context, stack, start, f"{stack.app_origin}/callback")

    proxy_status = 307 if stack.mode == "307" else 200
    assert trip.path() == [
        ("GET", start.url.split("?", 1)[0], 200),
        ("POST", f"{stack.login}/login/callback", proxy_status),
        ("POST", stack.workos_callback, 307),  # WorkOS: not mine, back with fallback=auth0
        ("POST", f"{stack.login}/login/callback", 302),  # forwarded to Auth0
        ("GET", f"{stack.app_origin}/callback", 200),
    ]
    assert trip.hops[3].url == f"{stack.login}/login/callback?{query}{'&' if query else ''}fallback=auth0"
    (bounced,) = stack.workos.requests()
    assert bounced.query == query
    (arrived,) = [r for r in stack.auth0.requests() if r.path == "/login/callback"]
    assert (arrived.method, arrived.path) == ("POST", "/login/callback")
    assert arrived.query == query  # fallback gone, the rest as the IdP sent it, in order
    assert form(arrived)["RelayState"] == [start.relay_state]
    _same_body_as_sent(trip, 1, arrived.body, stack)
    check_saml_arrived(arrived, idps, start)
    assert moved == {
        labels("saml", UMBRELLA, "workos", "mapped", identified_by): 1,
        labels("saml", UMBRELLA, "auth0", "fallback", identified_by): 1,
    }
