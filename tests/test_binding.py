"""Transaction binding as tables: MACs, the cookie's bounds, rotation, tampering, expiry, and what
an upstream response starts (OIDC/OAuth2 redirect, SAML Redirect and POST binding), hostile input."""

from __future__ import annotations

import base64
import gzip
import time
import zlib
from urllib.parse import urlencode

import pytest

from proxy import binding
from proxy.binding import (
    AUTH0_COOKIE,
    AUTH0_PURPOSE,
    MAX_ENTRIES,
    OIDC_STATE,
    SAML_RELAYSTATE,
    WORKOS_COOKIE,
    WORKOS_PURPOSE,
    Binder,
    Entry,
    Keys,
    Login,
    add_entry,
    cookie_values,
    decode_cookie,
    decode_page,
    encode_cookie,
    find_entry,
    inspect_location,
    inspect_page,
    inspect_response,
    may_be_post_page,
    read_saml_request,
)
from proxy.callback import Callback, callback_digest, in_response_to, transaction_values

KEY_A = b"a" * 32
KEY_B = b"b" * 32
KEYS = Keys((KEY_A,))
NOW = 1_700_000_000.0
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


# --- MACs and the cookie ---------------------------------------------------------------------------


def test_mac_is_hmac_sha256_truncated_and_purpose_bound() -> None:
    import hashlib
    import hmac

    expected = hmac.new(KEY_A, AUTH0_PURPOSE + b"\x00state-1", hashlib.sha256).digest()[:16]
    assert binding.mac(KEY_A, AUTH0_PURPOSE, "state-1") == expected
    assert binding.mac(KEY_A, WORKOS_PURPOSE, "state-1") != expected
    assert binding.mac(KEY_B, AUTH0_PURPOSE, "state-1") != expected


def test_keys_are_required_and_never_printed() -> None:
    with pytest.raises(ValueError):
        Keys(())
    assert "aaaa" not in repr(Keys((KEY_A,)))
    assert "aaaa" not in repr(Binder(Keys((KEY_A,))))


def test_round_trip() -> None:
    entries = add_entry((), ("state-1",), KEYS, AUTH0_PURPOSE, int(NOW) + 600)
    value = encode_cookie(entries, KEYS, AUTH0_PURPOSE)
    assert decode_cookie(value, KEYS, AUTH0_PURPOSE, NOW) == entries
    assert decode_cookie(value.encode(), KEYS, AUTH0_PURPOSE, NOW) == entries
    assert find_entry(entries, ["other", "state-1"], KEYS, AUTH0_PURPOSE) == 0
    assert find_entry(entries, ["other"], KEYS, AUTH0_PURPOSE) is None
    # A MAC made for one purpose never verifies for the other.
    assert decode_cookie(value, KEYS, WORKOS_PURPOSE, NOW) == ()


def test_several_logins_in_flight_oldest_dropped() -> None:
    entries: tuple[Entry, ...] = ()
    for i in range(MAX_ENTRIES + 3):
        entries = add_entry(entries, (f"state-{i}", f"_id{i}"), KEYS, AUTH0_PURPOSE, int(NOW) + 600 + i)
        value = encode_cookie(entries, KEYS, AUTH0_PURPOSE)
        assert len(value) <= binding.MAX_COOKIE_CHARS
        entries = decode_cookie(value, KEYS, AUTH0_PURPOSE, NOW)
    assert len(entries) == MAX_ENTRIES
    assert find_entry(entries, ["state-0"], KEYS, AUTH0_PURPOSE) is None  # the oldest went
    assert find_entry(entries, ["state-3"], KEYS, AUTH0_PURPOSE) == 0
    assert find_entry(entries, [f"_id{MAX_ENTRIES + 2}"], KEYS, AUTH0_PURPOSE) == MAX_ENTRIES - 1


def test_the_same_value_twice_is_one_entry() -> None:
    entries = add_entry((), ("s",), KEYS, AUTH0_PURPOSE, int(NOW) + 10)
    entries = add_entry(entries, ("s",), KEYS, AUTH0_PURPOSE, int(NOW) + 20)
    assert [e.expires for e in entries] == [int(NOW) + 20]


def test_expired_entries_are_gone() -> None:
    entries = add_entry((), ("old",), KEYS, AUTH0_PURPOSE, int(NOW) - 1)
    entries = add_entry(entries, ("new",), KEYS, AUTH0_PURPOSE, int(NOW) + 600)
    decoded = decode_cookie(encode_cookie(entries, KEYS, AUTH0_PURPOSE), KEYS, AUTH0_PURPOSE, NOW)
    assert find_entry(decoded, ["old"], KEYS, AUTH0_PURPOSE) is None
    assert find_entry(decoded, ["new"], KEYS, AUTH0_PURPOSE) == 0
    assert decode_cookie(encode_cookie(entries, KEYS, AUTH0_PURPOSE), KEYS, AUTH0_PURPOSE, NOW + 601) == ()


def test_rotation_first_key_signs_all_verify() -> None:
    old = Keys((KEY_A,))
    rotated = Keys((KEY_B, KEY_A))
    entries = add_entry((), ("state-old",), old, AUTH0_PURPOSE, int(NOW) + 600)
    value = encode_cookie(entries, old, AUTH0_PURPOSE)
    # A login started before the rotation still matches after it.
    decoded = decode_cookie(value, rotated, AUTH0_PURPOSE, NOW)
    assert find_entry(decoded, ["state-old"], rotated, AUTH0_PURPOSE) == 0
    # A new login is signed with the new key; the old entry is kept beside it.
    both = add_entry(decoded, ("state-new",), rotated, AUTH0_PURPOSE, int(NOW) + 600)
    value = encode_cookie(both, rotated, AUTH0_PURPOSE)
    assert decode_cookie(value, Keys((KEY_B,)), AUTH0_PURPOSE, NOW) == both
    # Once the old key is retired, cookies it alone signed hold nothing.
    assert decode_cookie(encode_cookie(entries, old, AUTH0_PURPOSE), Keys((KEY_B,)), AUTH0_PURPOSE, NOW) == ()


def _valid() -> str:
    return encode_cookie(add_entry((), ("s",), KEYS, AUTH0_PURPOSE, int(NOW) + 600), KEYS, AUTH0_PURPOSE)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "x",
        "!!!!",
        "=" * 40,
        "A" * 600,  # oversized
        base64.urlsafe_b64encode(b"\x00" * 21).decode(),  # right shape, wrong tag
        _valid()[:-2] + ("AA" if not _valid().endswith("AA") else "BB"),  # tag tampered
        "B" + _valid()[1:] if not _valid().startswith("B") else "C" + _valid()[1:],  # expiry tampered
        _valid() + "A",
        "\u00e9" * 10,
        b"\xff\xfe\x00",
    ],
)
def test_tampered_garbage_or_oversized_cookie_holds_nothing(value: str | bytes | None) -> None:
    assert decode_cookie(value, KEYS, AUTH0_PURPOSE, NOW) == ()


@pytest.mark.parametrize("size", [0, binding.RECORD - 1, binding.RECORD + 1, (MAX_ENTRIES + 1) * binding.RECORD])
def test_a_signed_but_malformed_payload_holds_nothing(size: int) -> None:
    import hashlib
    import hmac

    payload = (int(NOW) + 60).to_bytes(4, "big") * (size // 4 + 1)
    payload = payload[:size]
    tag = hmac.digest(KEY_A, AUTH0_PURPOSE + payload, hashlib.sha256)[:16]
    value = base64.urlsafe_b64encode(payload + tag).decode().rstrip("=")
    assert decode_cookie(value, KEYS, AUTH0_PURPOSE, NOW) == ()


@pytest.mark.parametrize("key", [b"a" * 32, b"k" * 64, b"long" * 40, bytes(range(256))])
def test_the_fast_hmac_is_hmac_sha256(key: bytes) -> None:
    """Keys.digest (prepared inner/outer states) against the standard library's HMAC."""
    keys = Keys((b"x" * 32, key))
    for value in ("", "state-1", "\u00e9t\u00e9", "s" * 500):
        message = AUTH0_PURPOSE + b"\x00" + value.encode()
        assert keys.digest(1, message) == binding.mac(key, AUTH0_PURPOSE, value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], []),
        ([(b"cookie", b"a=1; sso_proxy_tx=V1; b=2")], [b"V1"]),
        ([(b"cookie", b"sso_proxy_tx=V1"), (b"cookie", b"x_sso_proxy_tx=no; sso_proxy_tx=V2")], [b"V1", b"V2"]),
        ([(b"cookie", b"sso_proxy_txx=no")], []),
        ([(b"user-agent", b"sso_proxy_tx=no")], []),
    ],
)
def test_cookie_values(headers: list[tuple[bytes, bytes]], expected: list[bytes]) -> None:
    assert cookie_values(headers, AUTH0_COOKIE) == expected


def test_set_cookie_attributes() -> None:
    header = binding.set_cookie(AUTH0_COOKIE, "V", 600).decode()
    assert header == "sso_proxy_tx=V; Path=/login/callback; Max-Age=600; Secure; HttpOnly; SameSite=None"
    assert "Max-Age=0" in binding.delete_cookie(AUTH0_COOKIE).decode()
    assert binding.update_cookie(AUTH0_COOKIE, (), KEYS, AUTH0_PURPOSE, NOW) == binding.delete_cookie(AUTH0_COOKIE)


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
    bomb = b"<AuthnRequest " + b" " * (50 * binding.MAX_INFLATED_REQUEST) + b'ID="x"/>'
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
    assert decode_page(gzip.compress(b" " * (4 * binding.MAX_PAGE_BYTES)), GZ) is None  # capped


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
    page = (b"SAMLRequest" + unit * (size // len(unit)))[: binding.MAX_PAGE_BYTES]
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


# --- the callback side -----------------------------------------------------------------------------


def saml_response(in_response_to: str | None) -> bytes:
    attr = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    return (
        f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r"{attr}>'
        "<saml:Issuer xmlns:saml='urn:oasis:names:tc:SAML:2.0:assertion'>idp</saml:Issuer></samlp:Response>"
    ).encode()


@pytest.mark.parametrize(
    ("cb", "expected"),
    [
        (Callback(b"code=c&state=s1"), [("state", "s1")]),
        (Callback(b"", b"id_token=t&state=s%2B1", True), [("state", "s+1")]),
        (Callback(b"", b"id_token=t&state=s1", False), []),  # not a form: the body is not read
        (Callback(b"", b"SAMLResponse=x&RelayState=r1", True), [("RelayState", "r1")]),
        (Callback(b"SAMLResponse=x&RelayState=r2&SigAlg=y"), [("RelayState", "r2")]),
        (Callback(b"connection=acme"), []),
    ],
)
def test_transaction_values(cb: Callback, expected: list[tuple[str, str]]) -> None:
    assert transaction_values(cb) == expected


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (saml_response("_abc123"), "_abc123"),
        (saml_response(None), None),
        (b'<!DOCTYPE x [<!ENTITY e "v">]><Response InResponseTo="&e;"/>', None),
        (b"garbage", None),
    ],
)
def test_in_response_to(xml: bytes, expected: str | None) -> None:
    assert in_response_to(xml) == expected


def test_callback_digest_is_encoding_independent() -> None:
    a = Callback(b"", b"SAMLResponse=PHNhbWw%2BeA%3D%3D", True)
    b = Callback(b"", b"SAMLResponse=PHNhbWw+eA==", True)  # '+' is a space in a form: base64 ignores it
    assert callback_digest(a) is not None
    assert callback_digest(Callback(b"code=abc")) == callback_digest(Callback(b"", b"code=abc", True))
    assert callback_digest(Callback(b"connection=x")) is None
    assert callback_digest(a) != callback_digest(Callback(b"code=abc"))
    assert callback_digest(b) == callback_digest(Callback(b"", b"SAMLResponse=PHNhbWweA%3D%3D", True))


def headers_with(set_cookie: bytes | None) -> list[tuple[bytes, bytes]]:
    """The request headers a browser sends back after receiving ``set_cookie``."""
    if set_cookie is None:
        return []
    pair = set_cookie.split(b";", 1)[0]
    return [(b"host", b"login.globex.com"), (b"cookie", b"other=1; " + pair)]


def test_binder_auth0_round_trip_and_removal() -> None:
    binder = Binder(KEYS, ttl=600)
    first = binder.bind([], Login(OIDC_STATE, ("s1",)), NOW)
    second = binder.bind(headers_with(first), Login(SAML_RELAYSTATE, ("r1", "_id1")), NOW)
    request = headers_with(second)
    assert binder.auth0_binding(request, Callback(b"code=c&state=s1"), NOW).bound == {"state"}
    assert binder.auth0_binding(request, Callback(b"", b"SAMLResponse=x&RelayState=r1", True), NOW).bound == {
        "RelayState"
    }
    # The IdP dropped RelayState: the response's InResponseTo names the request.
    body = b"SAMLResponse=" + base64.b64encode(saml_response("_id1")).replace(b"+", b"%2B")
    found = binder.auth0_binding(request, Callback(b"", body, True), NOW)
    assert found.bound == {"InResponseTo"}
    # The forwarded response removes that entry and keeps the other.
    used = binder.used_cookie(found, NOW)
    assert used is not None
    left = headers_with(used)
    assert binder.auth0_binding(left, Callback(b"code=c&state=s1"), NOW).bound == {"state"}
    assert binder.auth0_binding(left, Callback(b"", b"RelayState=r1", True), NOW).bound == frozenset()
    # Unbound, absent, expired, another key: nothing.
    assert binder.auth0_binding(request, Callback(b"code=c&state=other"), NOW) == binding.NOT_BOUND
    assert binder.auth0_binding([], Callback(b"code=c&state=s1"), NOW) == binding.NOT_BOUND
    assert binder.auth0_binding(request, Callback(b"code=c&state=s1"), NOW + 601) == binding.NOT_BOUND
    other = Binder(Keys((KEY_B,)))
    assert other.auth0_binding(request, Callback(b"code=c&state=s1"), NOW) == binding.NOT_BOUND
    # The last entry removed deletes the cookie.
    only = binder.auth0_binding(headers_with(first), Callback(b"code=c&state=s1"), NOW)
    assert binder.used_cookie(only, NOW) == binding.delete_cookie(AUTH0_COOKIE)
    assert binder.used_cookie(binding.NOT_BOUND, NOW) is None


def test_a_planted_cookie_does_not_hide_the_real_one() -> None:
    binder = Binder(KEYS)
    real = binder.bind([], Login(OIDC_STATE, ("s1",)), NOW).split(b";", 1)[0]
    request = [(b"cookie", b"sso_proxy_tx=garbage; " + real)]
    assert binder.auth0_binding(request, Callback(b"state=s1"), NOW).bound == {"state"}


def test_binder_workos_solicited() -> None:
    binder = Binder(KEYS)
    cb = Callback(b"code=c&state=s1")
    cookie = binder.workos_cookie([], cb, NOW)
    assert cookie is not None and cookie.startswith(WORKOS_COOKIE.encode() + b"=")
    back = Callback(b"code=c&state=s1&fallback=auth0")
    assert binder.solicited(headers_with(cookie), back, NOW)[0] is True
    assert binder.solicited(headers_with(cookie), back, NOW + binding.WORKOS_TTL + 1) == (False, None)
    assert binder.solicited([], back, NOW) == (False, None)
    assert binder.solicited(headers_with(cookie), Callback(b"code=c&state=s2&fallback=auth0"), NOW) == (False, None)
    # IdP-initiated SAML without RelayState: the response itself names the callback.
    post = Callback(b"connection=acme", b"SAMLResponse=PHNhbWw%2B", True)
    cookie = binder.workos_cookie([], post, NOW)
    assert binder.solicited(headers_with(cookie), Callback(b"connection=acme&fallback=auth0", post.body, True), NOW)[0]
    # Nothing to name: no cookie.
    assert binder.workos_cookie([], Callback(b"connection=acme"), NOW) is None
    # An Auth0 binding is not a WorkOS one.
    auth0 = binder.bind([], Login(OIDC_STATE, ("s1",)), NOW)
    assert binder.solicited(headers_with(auth0), back, NOW) == (False, None)


def test_own_hosts() -> None:
    binder = Binder(KEYS, public_hosts=frozenset({"login.globex.com"}))
    assert binder.own_hosts([(b"host", b"Login.Example.com:8443")]) == {"login.globex.com", "login.example.com:8443"}
    assert binder.own_hosts([]) == {"login.globex.com"}
