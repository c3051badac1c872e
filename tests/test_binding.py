"""Transaction binding on the request path, as tables: which callbacks the cookie binds (state,
RelayState, InResponseTo), single use, solicited fallbacks, the hosts that count as this service."""

from __future__ import annotations

import base64

import pytest

from proxy.routing import binding
from proxy.routing.binding import AUTH0_COOKIE, WORKOS_COOKIE, Binder, fallback_verdict, host_name
from proxy.routing.callback import Callback, callback_digest, in_response_to, transaction_values
from proxy.routing.cookieheader import delete_cookie
from proxy.routing.logins import OIDC_STATE, SAML_RELAYSTATE, Login
from proxy.routing.txcookie import MAX_IN_FLIGHT, Keys, list_cookie, listed_logins, with_login

KEY_A = b"a" * 32
KEY_B = b"b" * 32
KEYS = Keys((KEY_A,))
NOW = 1_700_000_000.0


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
    assert transaction_values(cb) == tuple(expected)


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


def headers_with(*set_cookies: bytes | None) -> list[tuple[bytes, bytes]]:
    """The request headers a browser sends to /login/callback after receiving ``set_cookies``:
    each cookie by its name, a later one of the same name replacing it, a deletion removing it."""
    jar: dict[bytes, bytes] = {}
    for set_cookie in set_cookies:
        if set_cookie is None:
            continue
        name, _, value = set_cookie.split(b";", 1)[0].partition(b"=")
        if b"Max-Age=0" in set_cookie:
            jar.pop(name, None)
        else:
            jar[name] = value
    pairs = b"; ".join(b"%s=%s" % item for item in jar.items())
    return [(b"host", b"login.globex.com"), (b"cookie", b"other=1; " + pairs)]


def bind(binder: Binder, login: Login, now: float = NOW) -> bytes:
    """The login cookie's Set-Cookie of a bind from a browser with no list of logins in flight."""
    cookie, listed = binder.bind([], login, now)
    assert listed.startswith(b"__Host-sso_proxy_logins=") and b"Path=/;" in listed
    return cookie


def test_binder_auth0_round_trip_and_removal() -> None:
    binder = Binder(KEYS, ttl=600)
    first, listed = binder.bind([], Login(OIDC_STATE, ("s1",)), NOW)
    second, listed = binder.bind(headers_with(listed), Login(SAML_RELAYSTATE, ("r1", "_id1")), NOW)
    assert first.startswith(AUTH0_COOKIE.encode()) and second.startswith(AUTH0_COOKIE.encode())
    assert first.split(b"=", 1)[0] != second.split(b"=", 1)[0]  # a cookie per login: neither replaces the other
    request = headers_with(first, second, listed)  # the list rides on every path, the callback too
    unlisted = headers_with(first, second)
    assert binder.auth0_binding(request, Callback(b"code=c&state=s1"), NOW).bound == {"state"}
    assert binder.auth0_binding(request, Callback(b"", b"SAMLResponse=x&RelayState=r1", True), NOW).bound == {
        "RelayState"
    }
    # The IdP dropped RelayState: the response's InResponseTo names the request.
    body = b"SAMLResponse=" + base64.b64encode(saml_response("_id1")).replace(b"+", b"%2B")
    found = binder.auth0_binding(request, Callback(b"", body, True), NOW)
    assert found.bound == {"InResponseTo"}
    # Only the login cookies the list names are looked in for an InResponseTo.
    assert binder.auth0_binding(unlisted, Callback(b"", body, True), NOW) == binding.NOT_BOUND
    # The forwarded response deletes that login's cookie and leaves the other.
    used = binder.used_cookie(found)
    assert used == delete_cookie(second.split(b"=", 1)[0])
    left = headers_with(first, second, used)
    assert binder.auth0_binding(left, Callback(b"code=c&state=s1"), NOW).bound == {"state"}
    assert binder.auth0_binding(left, Callback(b"", b"RelayState=r1", True), NOW).bound == frozenset()
    # Unbound, absent, expired, another key: nothing.
    assert binder.auth0_binding(request, Callback(b"code=c&state=other"), NOW) == binding.NOT_BOUND
    assert binder.auth0_binding([], Callback(b"code=c&state=s1"), NOW) == binding.NOT_BOUND
    assert binder.auth0_binding(request, Callback(b"code=c&state=s1"), NOW + 601) == binding.NOT_BOUND
    other = Binder(Keys((KEY_B,)))
    assert other.auth0_binding(request, Callback(b"code=c&state=s1"), NOW) == binding.NOT_BOUND
    assert binder.used_cookie(binding.NOT_BOUND) is None
    # A retried redirect of the same login sets the same cookie again, not a second one.
    assert bind(binder, Login(OIDC_STATE, ("s1",)), NOW + 5).split(b"=", 1)[0] == first.split(b"=", 1)[0]


def test_rotation_an_older_key_still_binds() -> None:
    old = Binder(Keys((KEY_A,)))
    rotated = Binder(Keys((KEY_B, KEY_A)))  # the new key signs, the old one still verifies
    request = headers_with(bind(old, Login(OIDC_STATE, ("s1",))), bind(rotated, Login(OIDC_STATE, ("s2",))))
    assert rotated.auth0_binding(request, Callback(b"state=s1"), NOW).bound == {"state"}
    assert rotated.auth0_binding(request, Callback(b"state=s2"), NOW).bound == {"state"}
    assert Binder(Keys((KEY_B,))).auth0_binding(request, Callback(b"state=s1"), NOW) == binding.NOT_BOUND


def test_a_planted_or_garbage_cookie_does_not_hide_the_real_one() -> None:
    binder = Binder(KEYS)
    real = bind(binder, Login(OIDC_STATE, ("s1",))).split(b";", 1)[0]
    for planted in (b"sso_proxy_tx_AAAAAAAA=garbage", b"sso_proxy_tx_AAAAAAAA=" + b"*" * 28, b"sso_proxy_tx=x"):
        request = [(b"cookie", planted + b"; " + real)]
        found = binder.auth0_binding(request, Callback(b"state=s1"), NOW)
        assert found.bound == {"state"} and found.cookie == real.split(b"=", 1)[0]


ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _issued() -> dict[str, tuple[Binder, bytes, bytes, Callback]]:
    """Each cookie this service issues, as (binder, the pair as set, the other cookies the request
    carries, the callback it must bind) for the byte-flip table below."""
    binder = Binder(KEYS)
    oidc, first_list = binder.bind([], Login(OIDC_STATE, ("s1",)), NOW)
    saml, listed = binder.bind(headers_with(first_list), Login(SAML_RELAYSTATE, ("r1", "_id1")), NOW)
    workos = binder.workos_cookie([], Callback(b"code=c&state=w1"), NOW)
    assert workos is not None
    body = b"SAMLResponse=" + base64.b64encode(saml_response("_id1")).replace(b"+", b"%2B")
    pair = {name: cookie.split(b";", 1)[0] for name, cookie in (("oidc", oidc), ("saml", saml), ("list", listed))}
    return {
        "login cookie, state": (binder, pair["oidc"], b"", Callback(b"code=c&state=s1")),
        "login cookie, RelayState": (binder, pair["saml"], b"", Callback(b"", b"SAMLResponse=x&RelayState=r1", True)),
        "login cookie, InResponseTo": (binder, pair["saml"], pair["list"], Callback(b"", body, True)),
        "list cookie": (binder, pair["list"], pair["saml"], Callback(b"", body, True)),
        "WorkOS records": (binder, workos.split(b";", 1)[0], b"", Callback(b"code=c&state=w1&fallback=auth0")),
    }


def _binds(binder: Binder, cookie: bytes, cb: Callback) -> bool:
    request = [(b"host", b"login.globex.com"), (b"cookie", b"other=1; " + cookie)]
    if cb.query.endswith(b"fallback=auth0"):
        return binder.solicited(request, cb, NOW)[0]
    return bool(binder.auth0_binding(request, cb, NOW).bound)


def _changed_characters(pair: bytes) -> list[bytes]:
    """The pair with each character of its name and value changed to another base64url character."""
    out = []
    for at, char in enumerate(pair):
        if char == ord("="):
            continue
        other = ALPHABET[(ALPHABET.index(char) + 1) % len(ALPHABET)] if char in ALPHABET else ord("A")
        out.append(pair[:at] + bytes([other]) + pair[at + 1 :])
    return out


def _changed_bytes(pair: bytes) -> list[bytes]:
    """The pair with each byte its base64url value decodes to changed (one bit), re-encoded."""
    name, _, value = pair.partition(b"=")
    if b"." in value:  # the list: ids and a tag, as text
        return []
    raw = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    out = []
    for at in range(len(raw)):
        changed = raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]
        out.append(name + b"=" + base64.urlsafe_b64encode(changed).rstrip(b"="))
    return out


@pytest.mark.parametrize("kind", list(_issued()))
def test_every_byte_of_every_issued_cookie_is_covered(kind: str) -> None:
    """Issue 20, item 8: a MAC over every byte of every cookie this service issues (format, expiry,
    MAC slots, ids, tag): changing any one character of its name or value, or any one byte its
    value decodes to (the expiry stretched, the format byte), is refused."""
    binder, pair, others, cb = _issued()[kind]

    def cookie(changed: bytes) -> bytes:
        return changed + b"; " + others if others else changed

    assert _binds(binder, cookie(pair), cb)  # the genuine one binds
    variants = _changed_characters(pair) + _changed_bytes(pair)
    assert len(variants) >= len(pair) - 1
    refused = [variant for variant in variants if not _binds(binder, cookie(variant), cb)]
    assert len(refused) == len(variants), [v for v in variants if v not in refused]


def test_a_stretched_expiry_is_refused() -> None:
    binder = Binder(KEYS)
    name, _, genuine = binder.bind([], Login(OIDC_STATE, ("s1",)), NOW)[0].split(b";", 1)[0].partition(b"=")
    raw = bytearray(base64.urlsafe_b64decode(genuine))
    raw[1:5] = b"\xff\xff\xff\xff"  # the expiry stretched; the MAC slots still match
    stretched = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=")
    assert binder.auth0_binding([(b"cookie", name + b"=" + stretched)], Callback(b"state=s1"), NOW).bound == set()
    assert binder.auth0_binding([(b"cookie", name + b"=" + genuine)], Callback(b"state=s1"), NOW).bound == {"state"}


def _legacy_pair(state: str, expires: int) -> bytes:
    """A format 3 login cookie (no tag) as the previous release issued it."""
    digest = KEYS.digest(0, state.encode(), b"sso-proxy auth0 transaction v3\x00")
    record = b"\x03" + expires.to_bytes(4, "big") + digest[:8] + digest[:8]
    name = AUTH0_COOKIE.encode() + base64.urlsafe_b64encode(digest[8:16]).rstrip(b"=")
    return name + b"=" + base64.urlsafe_b64encode(record)


def test_the_previous_format_is_read_for_one_login_lifetime_after_a_deploy() -> None:
    """Logins in flight across a deploy keep their binding: format 3 is read by name until
    ``legacy_until`` (the service's start plus the TTL), never after."""
    deployed = Binder(KEYS, ttl=600, legacy_until=NOW + 600)
    request = [(b"cookie", _legacy_pair("s1", int(NOW) + 300))]
    assert deployed.auth0_binding(request, Callback(b"state=s1"), NOW).bound == {"state"}
    assert deployed.auth0_binding(request, Callback(b"state=s2"), NOW) == binding.NOT_BOUND
    assert deployed.auth0_binding(request, Callback(b"state=s1"), NOW + 600) == binding.NOT_BOUND
    assert Binder(KEYS).auth0_binding(request, Callback(b"state=s1"), NOW) == binding.NOT_BOUND
    expired = [(b"cookie", _legacy_pair("s1", int(NOW) - 1))]
    assert deployed.auth0_binding(expired, Callback(b"state=s1"), NOW) == binding.NOT_BOUND


def test_cookies_are_split_on_semicolons_only() -> None:
    """RFC 6265 section 5.4: a space inside another cookie's value is no boundary. A list smuggled
    in a sibling's cookie value (``sib=1 __Host-...=<ids>``) is not read: the real one is."""
    binder = Binder(KEYS)
    _, real = binder.bind([], Login(OIDC_STATE, ("s1",)), NOW)
    real_pair = real.split(b";", 1)[0]
    real_ids = real_pair.split(b"=", 1)[1].rpartition(b".")[0]
    smuggled = b"__Host-sso_proxy_logins=" + b".".join([b"Z" * 11] * 8)
    header = b"sib=1 " + smuggled + b"; " + real_pair
    assert listed_logins([(b"cookie", header)], "__Host-sso_proxy_logins", KEYS, binding.AUTH0_PURPOSE) == real_ids
    cookies = binder.bind([(b"cookie", header)], Login(OIDC_STATE, ("s2",)), NOW)
    assert len(cookies) == 2 and b"ZZZZ" not in b"".join(cookies)  # nothing of the smuggled list deleted or kept


def test_an_unsigned_workos_copy_is_never_a_solicited_fallback() -> None:
    """Solicited fallbacks drive an alert: a copy counts only with its tag."""
    binder = Binder(KEYS)
    cookie = binder.workos_cookie([], Callback(b"code=c&state=s1"), NOW)
    assert cookie is not None
    value = cookie.split(b";", 1)[0].split(b"=", 1)[1]
    tampered = value[:-1] + (b"A" if not value.endswith(b"A") else b"B")  # the tag's last character
    back = Callback(b"code=c&state=s1&fallback=auth0")
    assert binder.solicited([(b"cookie", b"sso_proxy_wx=" + tampered)], back, NOW) == (False, None)
    assert binder.solicited([(b"cookie", b"sso_proxy_wx=" + value)], back, NOW)[0] is True


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
    auth0 = bind(binder, Login(OIDC_STATE, ("s1",)))
    assert binder.solicited(headers_with(auth0), back, NOW) == (False, None)


def test_keys_are_never_printed() -> None:
    assert "aaaa" not in repr(Binder(Keys((KEY_A,))))


@pytest.mark.parametrize(
    ("public", "host", "own"),
    [
        # Without SSO_PROXY_PUBLIC_HOST the request's Host is the service's own (behind an ingress
        # that routes by host, it is).
        ((), b"Login.Example.com:8443", {"login.example.com:8443"}),
        # With it, only a Host that names a public host joins (any case, any port) ...
        (("login.globex.com",), b"Login.Globex.com:8443", {"login.globex.com", "login.globex.com:8443"}),
        (("login.globex.com:8443",), b"login.globex.com", {"login.globex.com:8443", "login.globex.com"}),
        # ... and a stranger's Host never becomes an own host (issue 20, item 7).
        (("login.globex.com",), b"Login.Example.com:8443", {"login.globex.com"}),
        (("login.globex.com",), b"login.globex.com.evil.example", {"login.globex.com"}),
        (("login.globex.com",), None, {"login.globex.com"}),
        (("login.globex.com",), b"", {"login.globex.com"}),
    ],
)
def test_own_hosts(public: tuple[str, ...], host: bytes | None, own: set[str]) -> None:
    binder = Binder(KEYS, public_hosts=frozenset(public))
    assert binder.own_hosts([] if host is None else [(b"host", host)]) == own


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"login.example.com", b"login.example.com"),
        (b"Login.Example.COM", b"login.example.com"),
        (b"login.example.com:8443", b"login.example.com"),
        (b" login.example.com:443 ", b"login.example.com"),
        (b"[2001:DB8::1]:8443", b"[2001:db8::1]"),
        (b"[2001:db8::1]", b"[2001:db8::1]"),
        (b"127.0.0.1:8080", b"127.0.0.1"),
        (b"", b""),
        (b"[broken", b"[broken"),
    ],
)
def test_host_name(raw: bytes, name: bytes) -> None:
    assert host_name(raw) == name


def test_own_hosts_are_remembered_per_host_and_bounded() -> None:
    binder = Binder(KEYS)
    first = binder.own_hosts([(b"host", b"a.example")])
    assert binder.own_hosts([(b"host", b"a.example")]) is first  # one set per Host, not per response
    for n in range(1000):  # a client can send any Host: the memory stays bounded
        assert binder.own_hosts([(b"host", b"h%d.example" % n)]) == {f"h{n}.example"}
    assert len(binder._own) <= 64


LIST = b"__Host-sso_proxy_logins"


def test_the_logins_in_flight_are_bounded_oldest_dropped() -> None:
    """A login starting cannot see the login cookies (they ride only on /login/callback): a list
    of their ids on every path bounds them. The ninth login deletes the first one's cookie."""
    binder = Binder(KEYS)
    jar: dict[bytes, bytes] = {}  # every cookie of the domain, as a browser keeps them

    def start(state: str) -> list[bytes]:
        listed = b"a=1"
        if LIST in jar:
            listed = LIST + b"=" + jar[LIST]
        set_cookies = binder.bind([(b"cookie", listed)], Login(OIDC_STATE, (state,)), NOW)
        for cookie in set_cookies:
            name, _, value = cookie.split(b";", 1)[0].partition(b"=")
            if b"Max-Age=0" in cookie:
                jar.pop(name, None)
            else:
                jar[name] = value
        return set_cookies

    for n in range(MAX_IN_FLIGHT):
        assert len(start(f"s{n}")) == 2
    assert len([name for name in jar if name.startswith(b"sso_proxy_tx_")]) == MAX_IN_FLIGHT
    ninth = start("s-ninth")
    assert len(ninth) == 3 and b"Max-Age=0" in ninth[2]
    logins = [name for name in jar if name.startswith(b"sso_proxy_tx_")]
    assert len(logins) == MAX_IN_FLIGHT and len(jar[LIST].split(b".")) == MAX_IN_FLIGHT + 1  # and the tag
    callback = [(b"cookie", b"; ".join(b"%s=%s" % (k, v) for k, v in jar.items() if k.startswith(b"sso_proxy_tx_")))]
    assert binder.auth0_binding(callback, Callback(b"state=s0"), NOW) == binding.NOT_BOUND  # the oldest went
    assert binder.auth0_binding(callback, Callback(b"state=s1"), NOW).bound == {"state"}
    assert binder.auth0_binding(callback, Callback(b"state=s-ninth"), NOW).bound == {"state"}
    # A retried redirect of the same login is listed once.
    start("s-ninth")
    assert len(jar[LIST].split(b".")) == len(set(jar[LIST].split(b".")))
    # An InResponseTo finds its login through the list, whatever else the header holds.
    planted = [b"sso_proxy_tx_%011d=%s" % (n, b"A" * 44) for n in range(64)]
    start("r-saml")
    binder_saml = binder.bind([(b"cookie", LIST + b"=" + jar[LIST])], Login(SAML_RELAYSTATE, ("r2", "_id2")), NOW)
    for cookie in binder_saml:
        name, _, value = cookie.split(b";", 1)[0].partition(b"=")
        jar[name] = value
    body = b"SAMLResponse=" + base64.b64encode(saml_response("_id2")).replace(b"+", b"%2B")
    crowd = [(b"cookie", b"; ".join([*planted, *(b"%s=%s" % item for item in jar.items())]))]
    assert binder.auth0_binding(crowd, Callback(b"", body, True), NOW).bound == {"InResponseTo"}


def _signed_list(ids: bytes) -> bytes:
    """The list cookie's value this service writes for ``ids``."""
    cookie = list_cookie(b"__Host-sso_proxy_logins=", ids, 600, KEYS, binding.AUTH0_PURPOSE)
    return cookie.split(b";", 1)[0].split(b"=", 1)[1]


AB = b"AAAAAAAAAAA.BBBBBBBBBBB"
FULL = b".".join([b"C" * 11] * 8)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"__Host-sso_proxy_logins=" + _signed_list(AB), AB),
        (b"a=1; __Host-sso_proxy_logins=" + _signed_list(b"A" * 11), b"A" * 11),
        (b"a=1;__Host-sso_proxy_logins=" + _signed_list(b"A" * 11), b"A" * 11),  # HTTP/2 crumbs joined
        (b"__Host-sso_proxy_logins=" + AB, b""),  # no tag: not a list this service wrote
        (b"__Host-sso_proxy_logins=" + AB + b"." + b"A" * 16, b""),  # a wrong tag
        (b"x=__Host-sso_proxy_logins=" + _signed_list(AB), b""),  # inside another cookie's value
        (b"x=1 __Host-sso_proxy_logins=" + _signed_list(AB), b""),  # after a space in another cookie's value
        (b"__Host-sso_proxy_logins=", b""),
        (b"__Host-sso_proxy_logins=" + _signed_list(AB)[:5] + b";" + _signed_list(AB)[5:], b""),
        (b"__Host-sso_proxy_logins=A%0D%0AB", b""),  # a character no id has: nothing, so nothing is deleted
        (b"__Host-sso_proxy_logins=" + b"A" * 5000, b""),  # too long
        (b"__Host-sso_proxy_logins=" + _signed_list(FULL), FULL),  # a full list
        (b"__Host-sso_proxy_logins=" + _signed_list(FULL + b"." + b"C" * 11), b""),  # longer than any written
        (b"__Host-sso_proxy_logins=" + AB + b"; __Host-sso_proxy_logins=" + _signed_list(AB), AB),  # the valid copy
    ],
)
def test_the_list_of_logins_in_flight_is_read_with_bounds(header: bytes, expected: bytes) -> None:
    headers = [(b"host", b"h"), (b"cookie", header)]
    assert listed_logins(headers, "__Host-sso_proxy_logins", KEYS, binding.AUTH0_PURPOSE) == expected


A, B, C, N = b"A" * 11, b"B" * 11, b"C" * 11, b"N" * 11


@pytest.mark.parametrize(
    ("listed", "login_id", "expected"),
    [
        (b"", N, (N, [])),  # the first login in flight
        (A + b"." + B, N, (A + b"." + B + b"." + N, [])),  # room left: appended
        (A + b"." + N + b"." + B, N, (A + b"." + B + b"." + N, [])),  # a retried redirect: moved, listed once
        (b".".join([C] * 7), N, (b".".join([C] * 7 + [N]), [])),  # the eighth fills the list
        (b".".join([A] + [C] * 7), N, (b".".join([C] * 7 + [N]), [A])),  # the ninth drops the oldest
        (b".".join([A] + [C] * 6 + [N]), N, (b".".join([A] + [C] * 6 + [N]), [])),  # full, retried: nothing dropped
        (b"." + b".".join([C] * 7), N, (b".".join([C] * 7 + [N]), [])),  # an empty id falls off: nothing to delete
        (A + N + b"." + B, N, (A + N + b"." + B + b"." + N, [])),  # the id inside a longer one is not it
    ],
)
def test_a_login_joins_the_list(listed: bytes, login_id: bytes, expected: tuple[bytes, list[bytes]]) -> None:
    assert with_login(listed, login_id) == expected


@pytest.mark.parametrize(
    ("status", "location", "verdict"),
    [
        (302, b"https://app.example.com/cb?code=c&state=s", "accepted"),
        (302, b"/authorize/resume?state=s", "accepted"),
        (301, b"https://app.example.com/", "accepted"),
        (307, b"https://app.example.com/cb?state=s&error_uri=x", "accepted"),  # not the parameter `error`
        (302, b"https://app.example.com/cb?error=access_denied", "refused"),
        (302, b"https://app.example.com/cb?state=s&error=", "refused"),
        (302, b"https://app.example.com/cb?state=s&%65rror=x", "refused"),  # percent-encoded name
        (302, b"https://app.example.com/cb?state=s#error=access_denied&state=s", "refused"),  # fragment mode
        (302, b"https://app.example.com/cb?x=1#state=s", "accepted"),
        (302, None, "refused"),
        (304, None, "refused"),
        (200, None, "refused"),
        (200, b"https://app.example.com/cb?code=c", "refused"),
        (400, None, "refused"),
        (403, None, "refused"),
        (503, None, "refused"),
    ],
)
def test_fallback_verdict(status: int, location: bytes | None, verdict: str) -> None:
    headers = [(b"content-type", b"text/html")] + ([(b"location", location)] if location is not None else [])
    assert fallback_verdict(status, headers) == verdict
