"""What an upstream response starts, as tables: OIDC/OAuth2 redirects (social included), SAML
Redirect and POST binding, the AuthnRequest's root read by a scan or expat, hostile input."""

from __future__ import annotations

import base64
import gzip
import time
import zlib
from urllib.parse import urlencode

import pytest

from proxy import logins
from proxy.logins import (
    MAX_INFLATED_REQUEST,
    MAX_PAGE_BYTES,
    OIDC_STATE,
    SAML_RELAYSTATE,
    Login,
    decode_page,
    inspect_location,
    inspect_page,
    inspect_response,
    may_be_post_page,
    read_saml_request,
)

OWN = frozenset({"login.globex.com"})
CALLBACK = "https://login.globex.com/login/callback"


def authn_request(request_id: str = "_abc123", acs: str | None = CALLBACK) -> bytes:
    acs_attr = f' AssertionConsumerServiceURL="{acs}"' if acs else ""
    return (
        f'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="{request_id}" '
        f'Version="2.0"{acs_attr}><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">'
        "urn:auth0:globex:acme</saml:Issuer></samlp:AuthnRequest>"
    ).encode()


def deflated(xml: bytes) -> str:
    return base64.b64encode(zlib.compress(xml)[2:-4]).decode()


def post_page(saml_request: str, relay_state: str = "rs-1", action: str = "https://idp.acme.com/sso") -> bytes:
    return (
        "<!DOCTYPE html><html><body onload='document.forms[0].submit()'>"
        f'<form method="POST" action="{action}">'
        f'<input type="hidden" name="SAMLRequest" value="{saml_request}"/>'
        f"<input type=hidden name='RelayState' value='{relay_state}'>"
        "<noscript><input type=submit value=Continue></noscript></form></body></html>"
    ).encode()


# --- what a response starts ------------------------------------------------------------------------


def oidc_location(**params: str) -> str:
    query = {"client_id": "c", "response_type": "code", "redirect_uri": CALLBACK, "state": "st-1", **params}
    return "https://idp.acme.com/authorize?" + urlencode({k: v for k, v in query.items() if v != "-"})


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (oidc_location(), Login(OIDC_STATE, ("st-1",))),
        # social: Google's authorize endpoint, the callback with a trailing slash
        (
            "https://accounts.google.com/o/oauth2/auth?response_type=code&redirect_uri="
            "https%3A%2F%2Flogin.globex.com%2Flogin%2Fcallback%2F&scope=openid&state=g%2Bs%3D&client_id=x",
            Login(OIDC_STATE, ("g+s=",)),
        ),
        (oidc_location(redirect_uri="https://LOGIN.globex.com/login/callback"), Login(OIDC_STATE, ("st-1",))),
        (oidc_location(state="-"), None),  # no state
        (oidc_location(state=""), None),
        (oidc_location(redirect_uri="-"), None),  # no redirect_uri
        (oidc_location(redirect_uri="https://app.globex.com/callback"), None),  # to an app: not a login callback
        (oidc_location(redirect_uri="https://evil.com/login/callback"), None),
        (oidc_location(redirect_uri="https://login.globex.com/login/callbackx"), None),
        (oidc_location(state="s" * 3000), None),
        (
            oidc_location(state="/" * 2000),
            Login(OIDC_STATE, ("/" * 2000,)),
        ),  # the limit is on the value, not its escapes
        ("/u/login?state=abc&redirect_uri=" + CALLBACK, None),  # relative: Auth0's own pages
        ("https://login.globex.com/u/login?state=abc&redirect_uri=" + CALLBACK, None),  # own host
        ("https://idp.acme.com/authorize", None),
        # The IdP's address is the browser's business; only that it is not this service matters.
        ("https://idp.acme.com:bad/authorize?state=s&redirect_uri=" + CALLBACK, Login(OIDC_STATE, ("s",))),
        ("https://user@login.globex.com/x?state=s&redirect_uri=" + CALLBACK, None),  # userinfo: refused
        (oidc_location(redirect_uri="https://login.globex.com:bad/login/callback"), None),
        (oidc_location(redirect_uri="https://login.globex.com/login/callback?x=1#f"), Login(OIDC_STATE, ("st-1",))),
        ("javascript:alert(1)?state=s", None),
        # The app's callback after the login: another host with state, but nothing comes back here.
        ("https://app.globex.com/callback?code=c&state=app", None),
        # SAML HTTP-Redirect binding
        (
            "https://idp.acme.com/sso?" + urlencode({"SAMLRequest": deflated(authn_request()), "RelayState": "rs-1"}),
            Login(SAML_RELAYSTATE, ("rs-1", "_abc123")),
        ),
        (
            "https://idp.acme.com/sso?" + urlencode({"SAMLRequest": deflated(authn_request(acs=None))}),
            Login(SAML_RELAYSTATE, ("_abc123",)),
        ),
        (
            "https://idp.acme.com/sso?"
            + urlencode({"SAMLRequest": deflated(authn_request(acs=CALLBACK + "?connection=acme")), "RelayState": "r"}),
            Login(SAML_RELAYSTATE, ("r", "_abc123")),
        ),
        (  # the IdP would post to another SP: not ours to bind
            "https://idp.acme.com/sso?"
            + urlencode({"SAMLRequest": deflated(authn_request(acs="https://sp.other.com/acs")), "RelayState": "r"}),
            None,
        ),
        (  # garbage SAMLRequest: only the RelayState
            "https://idp.acme.com/sso?" + urlencode({"SAMLRequest": "!!!", "RelayState": "rs-2"}),
            Login(SAML_RELAYSTATE, ("rs-2",)),
        ),
        ("https://idp.acme.com/sso?" + urlencode({"SAMLRequest": "!!!"}), None),
    ],
)
def test_inspect_location(location: str, expected: Login | None) -> None:
    assert inspect_location(location, OWN) == expected


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (302, [(b"location", oidc_location().encode())], Login(OIDC_STATE, ("st-1",))),
        (303, [(b"location", oidc_location().encode())], Login(OIDC_STATE, ("st-1",))),
        (200, [(b"location", oidc_location().encode())], None),
        (302, [], None),
    ],
)
def test_inspect_response(status: int, headers: list[tuple[bytes, bytes]], expected: Login | None) -> None:
    assert inspect_response(status, headers, OWN) == expected


def test_authn_request_reading() -> None:
    assert read_saml_request(deflated(authn_request()), True) == ("_abc123", CALLBACK)
    plain = base64.b64encode(authn_request()).decode()
    assert read_saml_request(plain, False) == ("_abc123", CALLBACK)
    assert read_saml_request(plain.replace("+", " "), False) == ("_abc123", CALLBACK)
    assert read_saml_request(base64.b64encode(b"<Other ID='x'/>").decode(), False) == (None, None)


@pytest.mark.parametrize(
    "xml",
    [
        b'<!DOCTYPE r [<!ENTITY a "aaaa">]><samlp:AuthnRequest ID="&a;"/>',
        b'<!DOCTYPE r SYSTEM "http://evil/dtd"><AuthnRequest ID="x"/>',
        b"not xml",
        b"",
    ],
)
def test_authn_request_dtds_refused(xml: bytes) -> None:
    assert read_saml_request(base64.b64encode(xml).decode(), False) == (None, None)


def test_authn_request_inflation_is_capped() -> None:
    bomb = b"<AuthnRequest " + b" " * (50 * MAX_INFLATED_REQUEST) + b'ID="x"/>'
    started = time.perf_counter()
    assert read_saml_request(deflated(bomb), True) == (None, None)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (post_page(base64.b64encode(authn_request()).decode()), Login(SAML_RELAYSTATE, ("rs-1", "_abc123"))),
        (post_page(base64.b64encode(authn_request()).decode(), "a&amp;b"), Login(SAML_RELAYSTATE, ("a&b", "_abc123"))),
        (post_page("garbage", "rs-9"), Login(SAML_RELAYSTATE, ("rs-9",))),
        (post_page(base64.b64encode(authn_request()).decode(), action="https://login.globex.com/x"), None),
        (post_page(base64.b64encode(authn_request()).decode(), action="/relative"), None),
        (b"<html><body>Nothing to see</body></html>", None),
        (b"<html>SAMLRequest mentioned but no form</html>", None),
        (b"<form action='https://idp.acme.com/'><input name=SAMLRequest></form>", None),  # empty request
    ],
)
def test_inspect_page(page: bytes, expected: Login | None) -> None:
    assert inspect_page(page, OWN) == expected


GZ = [(b"content-type", b"text/html"), (b"content-encoding", b"gzip")]


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, [(b"content-type", b"text/html; charset=utf-8")], True),
        (200, [(b"content-type", b"TEXT/HTML"), (b"content-length", b"5000")], True),
        (200, GZ, True),
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"br")], False),  # not readable here
        (200, [(b"content-type", b"text/html"), (b"content-length", b"99999999")], False),
        (200, [(b"content-type", b"text/html"), (b"content-length", b"x")], False),
        (200, [(b"content-type", b"application/json")], False),
        (200, [], False),
        (302, [(b"content-type", b"text/html")], False),
    ],
)
def test_may_be_post_page(status: int, headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert may_be_post_page(status, headers) is expected


def test_decode_page() -> None:
    page = post_page("x")
    assert decode_page(page, []) == page
    assert decode_page(gzip.compress(page), GZ) == page
    assert decode_page(zlib.compress(page), [(b"content-encoding", b"deflate")]) == page
    assert decode_page(b"not gzip", GZ) is None
    assert decode_page(gzip.compress(b" " * (4 * MAX_PAGE_BYTES)), GZ) is None  # capped


@pytest.mark.parametrize("size", [10_000, 80_000])
@pytest.mark.parametrize(
    "unit",
    [
        b"<input ",
        b"<input name='SAMLRequest' value='",
        b"<form SAMLRequest ",
        b"<input a=",
        b'<input name="x" ' + b'a="' * 3,
    ],
)
def test_hostile_pages_are_read_in_linear_time(unit: bytes, size: int) -> None:
    page = (b"SAMLRequest" + unit * (size // len(unit)))[:MAX_PAGE_BYTES]
    started = time.perf_counter()
    inspect_page(page, OWN)
    # Linear: 80 KB of the worst shapes is read in milliseconds; a quadratic scan would take seconds.
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "location",
    [
        "https://idp.acme.com/?" + "state=" * 3000,
        "https://idp.acme.com/?" + "&" * 16000,
        "https://idp.acme.com/?redirect_uri=" + "%" * 16000,
        "https://" + "a" * 20000 + "/?state=s",
    ],
)
def test_hostile_locations(location: str) -> None:
    started = time.perf_counter()
    assert inspect_location(location, OWN) is None
    assert time.perf_counter() - started < 1.0


def test_the_redirect_uri_memo_is_bounded_and_per_host_set() -> None:
    url = "https://idp.example/authorize?state=s&redirect_uri=https%3A%2F%2Flogin.globex.com%2Flogin%2Fcallback"
    assert inspect_location(url, frozenset({"login.globex.com"})) == Login(OIDC_STATE, ("s",))
    assert inspect_location(url, frozenset({"other.example"})) is None  # remembered per set of own hosts
    for n in range(1000):
        inspect_location(url.replace("login.globex.com", f"h{n}.example"), frozenset({f"h{n}.example"}))
    assert len(logins._OWN_CALLBACKS) <= logins._OWN_CALLBACKS_MAX
