"""What an upstream response starts, as tables: OIDC/OAuth2 redirects (social included), SAML
Redirect and POST binding, the AuthnRequest's root, auto-post pages in every encoding a browser
accepts, hostile input."""

from __future__ import annotations

import base64
import gzip
import time
import zlib
from typing import Callable
from urllib.parse import urlencode

import brotli
import pytest
import zstandard

from proxy.routing import logins
from proxy.routing.logins import (
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
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"br")], True),
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b" ZSTD")], True),
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"compress")], False),  # no browser asks
        (200, [(b"content-type", b"text/html"), (b"content-encoding", b"gzip, br")], False),  # stacked codings
        (200, [(b"content-type", b"text/html"), (b"content-length", b"99999999")], False),
        (200, [(b"content-type", b"text/html"), (b"content-length", b"x")], False),
        (200, [(b"content-type", b"application/json")], False),
        (200, [], False),
        (302, [(b"content-type", b"text/html")], False),
    ],
)
def test_may_be_post_page(status: int, headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert may_be_post_page(status, headers) is expected


def _zstd_frames(data: bytes) -> bytes:
    """``data`` as a stream of zstd frames, one per 100 bytes (a streaming encoder's output)."""
    compressor = zstandard.ZstdCompressor()
    return b"".join(compressor.compress(data[at : at + 100]) for at in range(0, len(data), 100))


def _zstd_frame_with_window(window_log: int, data: bytes = b"<html></html>") -> bytes:
    """One zstd frame holding ``data`` raw, whose header asks for a 2**window_log window (RFC 8878
    section 3.1.1: magic number, descriptor, window descriptor, one last raw block)."""
    block = (1 | len(data) << 3).to_bytes(3, "little")
    return b"\x28\xb5\x2f\xfd\x00" + bytes([(window_log - 10) << 3]) + block + data


ENCODERS = {
    b"": lambda data: data,
    b"identity": lambda data: data,
    b"gzip": gzip.compress,
    b"x-gzip": gzip.compress,
    b"deflate": zlib.compress,
    b"br": brotli.compress,
    b"zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


@pytest.mark.parametrize("encoding", ENCODERS)
def test_decode_page(encoding: bytes) -> None:
    """Every encoding a browser accepts is read; a body that decodes past a page is not."""
    headers = [(b"content-type", b"text/html"), (b"content-encoding", encoding)]
    page = post_page("x")
    encode = ENCODERS[encoding]
    assert decode_page(encode(page), headers) == page
    assert may_be_post_page(200, headers)
    largest = page + b" " * (MAX_PAGE_BYTES - len(page))
    assert decode_page(encode(largest), headers) == largest
    if encoding not in (b"", b"identity"):
        assert decode_page(encode(largest + b" "), headers) is None
        assert decode_page(b"not " + encoding, headers) is None


@pytest.mark.parametrize(
    ("body", "encoding", "expected"),
    [
        (_zstd_frames(post_page("x")), b"zstd", post_page("x")),  # several frames: all read
        (_zstd_frame_with_window(23), b"zstd", b"<html></html>"),  # 8 MB: the most RFC 9659 allows
        (_zstd_frame_with_window(24), b"zstd", None),  # 16 MB window: refused before any allocation
    ],
)
def test_decode_page_edges(body: bytes, encoding: bytes, expected: bytes | None) -> None:
    assert decode_page(body, [(b"content-encoding", encoding)]) == expected


def test_the_zstd_decoder_is_reused_after_a_refusal() -> None:
    """One decoder per thread serves every page: a refused or broken body leaves it ready."""
    headers = [(b"content-encoding", b"zstd")]
    page = post_page("x")
    for bad in (_zstd_frame_with_window(24), b"\x28\xb5\x2f\xfd broken", ENCODERS[b"zstd"](page)[:-3]):
        decode_page(bad, headers)
        assert decode_page(ENCODERS[b"zstd"](page), headers) == page


FAST_ENCODERS = {
    b"gzip": lambda data: gzip.compress(data, 1),
    b"deflate": lambda data: zlib.compress(data, 1),
    b"br": lambda data: brotli.compress(data, quality=1),
    b"zstd": lambda data: zstandard.ZstdCompressor(level=1).compress(data),
}


@pytest.mark.parametrize("encoding", FAST_ENCODERS)
def test_decompression_bombs_cost_a_page(encoding: bytes) -> None:
    """A body of a few KB that expands to 256 MB is read no further than about a page past the
    limit: it costs at most 4 x what one that expands to 16 MB costs (a ratio in one run; reading
    either whole would make it 16 x). What a decoder allocates is bounded by its window (brotli
    16 MB at most, zstd 8 MB here), not by the body."""
    headers = [(b"content-encoding", encoding)]
    smaller, bomb = (FAST_ENCODERS[encoding](b" " * (size << 20)) for size in (16, 256))

    def cost(body: bytes) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            assert decode_page(body, headers) is None
            best = min(best, time.perf_counter() - started)
        return best

    assert cost(bomb) <= 4 * max(cost(smaller), 1e-4)


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
def test_hostile_pages_are_read_in_linear_time(unit: bytes) -> None:
    """The worst shapes of a page: 4 x the page costs at most 8 x as much (a quadratic scan would
    cost 16 x); a ratio in one run, not a time."""

    def cost(size: int) -> float:
        page = (b"SAMLRequest" + unit * (size // len(unit)))[:MAX_PAGE_BYTES]
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            inspect_page(page, OWN)
            best = min(best, time.perf_counter() - started)
        return best

    assert cost(MAX_PAGE_BYTES) <= 8 * max(cost(MAX_PAGE_BYTES // 4), 1e-4)


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


def _best(call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("lgwin", [18, 22, 24])
def test_a_small_brotli_body_with_a_large_window_costs_no_more_than_a_page(lgwin: int) -> None:
    """Issue 20, item 11: a body of a few dozen bytes whose window is 16 MiB made the decoder fill
    16 MiB before returning anything (24-50 ms), whatever the output limit. It now costs at most
    4 x decoding a benign page of the cap's size (a ratio in one run)."""
    headers = [(b"content-encoding", b"br")]
    bomb = brotli.compress(b"A" * (64 << 20), quality=1, lgwin=lgwin)
    page = post_page("x")
    benign = brotli.compress(page + b"<!--" + bytes(range(32, 127)) * ((MAX_PAGE_BYTES - len(page)) // 100) + b"-->")
    assert decode_page(bomb, headers) is None
    assert decode_page(benign, headers) is not None
    assert _best(lambda: decode_page(bomb, headers)) <= 4 * max(_best(lambda: decode_page(benign, headers)), 1e-5)


@pytest.mark.parametrize(
    ("body", "read"),
    [
        (brotli.compress(b"<html>" + b"p" * 3000, quality=11, lgwin=22), True),  # one-shot: one last meta-block
        (brotli.compress(b"<html>" + b"p" * 3000, quality=5, lgwin=16), True),  # a 64 KiB window
        (brotli.compress(b"<html>" + b"p" * (40 << 10), quality=11, lgwin=22), False),  # past the cap
        (brotli.compress(b"", quality=11), True),
    ],
)
def test_which_brotli_bodies_are_read(body: bytes, read: bool) -> None:
    assert (decode_page(body, [(b"content-encoding", b"br")]) is not None) is read


@pytest.mark.parametrize(
    "hostile",
    [
        b"<input " + b"a=1 " * 8000,  # one element, 8,000 attributes
        b"<input a=1 b=2>" * 2200,  # 2,200 elements
        b"<input name=SAMLRequest value=x " + b"value=y " * 4000 + b">",
    ],
)
def test_a_page_of_attributes_costs_about_a_benign_page(hostile: bytes) -> None:
    """Issue 20, item 11: 8,000 attributes in a 32 KB page cost 41 ms (a regex match, a decode and
    an unescape each). Inputs and attributes read are bounded and only name/value/action decoded:
    at most 4 x a benign auto-post page of the same size (a ratio in one run)."""
    page = b"SAMLRequest " + hostile[: MAX_PAGE_BYTES - 20]
    # A benign page of the same size: its SAMLRequest value (a signed request with its certificate)
    # is most of it, as on a real auto-post page.
    benign = post_page("x" * (len(page) - len(post_page(""))))
    assert abs(len(benign) - len(page)) < 16
    assert inspect_page(page, OWN) is None
    assert inspect_page(benign, OWN) is not None
    assert _best(lambda: inspect_page(page, OWN)) <= 4 * max(_best(lambda: inspect_page(benign, OWN)), 1e-5)
