"""Forwarding rules as pure functions: request headers, the end user's address, error translation."""

from __future__ import annotations

import ipaddress
from typing import Any

import aiohttp
import pytest
from yarl import URL

from proxy.config import Settings
from proxy.errors import RequestUnforwardable, UpstreamConnectError, UpstreamError, UpstreamReset, UpstreamTimeout
from proxy.upstream import (
    BadTarget,
    _connection_tokens,
    _translate,
    client_address,
    is_origin_form,
    request_headers,
    response_headers,
    retry_guard_available,
    upstream_url,
)

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "workos_domain": "auth.example.com",
        "workos_client_id": "client",
        "auth0_origin": "https://tenant.us.auth0.com",
    }
    return Settings(**{**base, **kw})


def scope(headers: list[tuple[str, str]], peer: str = "203.0.113.9", scheme: str = "http") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "scheme": scheme,
        "path": "/login/callback",
        "client": (peer, 40000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def names(headers: list[tuple[str, str]]) -> list[str]:
    return [k.lower() for k, _ in headers]


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        ("203.0.113.9", [], (), "203.0.113.9"),
        ("203.0.113.9", ["1.2.3.4"], (), "203.0.113.9"),  # untrusted peer: X-Forwarded-For ignored
        ("203.0.113.9", ["1.2.3.4"], TRUSTED, "203.0.113.9"),
        ("10.0.0.5", ["1.2.3.4"], TRUSTED, "1.2.3.4"),
        ("10.0.0.5", ["6.6.6.6", "1.2.3.4", "10.1.1.1"], TRUSTED, "1.2.3.4"),  # right-most untrusted hop
        ("10.0.0.5", ["10.9.9.9", "10.1.1.1"], TRUSTED, "10.9.9.9"),
        ("10.0.0.5", [], TRUSTED, "10.0.0.5"),  # a trusted peer that sends none: the peer itself
        ("10.0.0.5", ["not-an-ip"], TRUSTED, "10.0.0.5"),  # never a value that is not one address
        ("10.0.0.5", ["1.2.3.4", "garbage", "10.1.1.1"], TRUSTED, "10.1.1.1"),  # the walk stops there
        ("10.0.0.5", ["1.2.3.4, 5.6.7.8"], TRUSTED, "10.0.0.5"),  # (entries are split before this)
        ("10.0.0.5", ["198.51.100.7:54321"], TRUSTED, "198.51.100.7"),  # Azure Application Gateway adds ports
        ("10.0.0.5", ["[2001:db8::7]:443"], TRUSTED, "2001:db8::7"),
        ("10.0.0.5", ["2001:DB8:0::7"], TRUSTED, "2001:db8::7"),
        ("::1", ["1.2.3.4"], (ipaddress.ip_network("::1/128"),), "1.2.3.4"),
        ("", ["1.2.3.4"], TRUSTED, ""),
    ],
)
def test_client_address(peer: str, forwarded_for: list[str], trusted: tuple[Any, ...], expected: str) -> None:
    assert client_address(peer, forwarded_for, trusted) == expected


def test_end_to_end_headers_pass_in_order_with_repetition() -> None:
    incoming = [
        ("Host", "login.example.com"),
        ("User-Agent", "Mozilla/5.0"),
        ("Cookie", "a=1"),
        ("Cookie", "b=2"),
        ("Origin", "https://idp.example.com"),
        ("Referer", "https://idp.example.com/app"),
        ("Accept-Language", "de"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", "10"),
    ]
    out = request_headers(scope(incoming), settings())
    passed = [(k, v) for k, v in out if k.lower() in ("user-agent", "cookie", "origin", "referer", "accept-language")]
    assert passed == [(k.lower(), v) for k, v in incoming[1:7]]
    assert values(out, "content-type") == ["application/x-www-form-urlencoded"]
    assert values(out, "content-length") == []  # the client library sets it from the body
    assert values(out, "host") == ["tenant.us.auth0.com"]
    assert values(out, "x-forwarded-host") == ["login.example.com"]
    assert values(out, "x-forwarded-proto") == ["http"]


def test_hop_by_hop_and_connection_tokens_are_dropped() -> None:
    incoming = [
        ("Connection", "keep-alive, X-Private-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("X-Private-Hop", "1"),
        ("Expect", "100-continue"),
        ("X-Kept", "yes"),
    ]
    out = request_headers(scope(incoming), settings())
    lowered = names(out)
    for name, _ in incoming[:-1]:
        assert name.lower() not in lowered
    assert values(out, "x-kept") == ["yes"]


def test_cname_api_key_added_and_client_copy_removed() -> None:
    out = request_headers(scope([("cname-api-key", "forged")]), settings(cname_api_key="real-key"))
    assert values(out, "cname-api-key") == ["real-key"]
    out = request_headers(scope([("cname-api-key", "forged")]), settings())
    assert values(out, "cname-api-key") == []


def test_untrusted_peer_spoofed_headers_are_replaced() -> None:
    incoming = [
        ("True-Client-IP", "6.6.6.6"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("Host", "login.example.com"),
    ]
    out = request_headers(scope(incoming, peer="203.0.113.9"), settings(trusted_proxies=TRUSTED))
    assert values(out, "true-client-ip") == []
    assert values(out, "x-forwarded-for") == ["203.0.113.9"]
    assert values(out, "x-forwarded-proto") == ["http"]
    assert values(out, "x-forwarded-host") == ["login.example.com"]


def test_trusted_peer_forwarded_headers_are_believed() -> None:
    incoming = [
        ("True-Client-IP", "6.6.6.6"),
        ("X-Forwarded-For", "198.51.100.7, 10.2.2.2"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "login.example.com"),
        ("Host", "internal:8080"),
    ]
    out = request_headers(scope(incoming, peer="10.0.0.5"), settings(trusted_proxies=TRUSTED))
    assert values(out, "true-client-ip") == []  # a client-supplied copy never passes
    assert values(out, "x-forwarded-for") == ["198.51.100.7"]  # one address, never the chain
    assert values(out, "x-forwarded-proto") == ["https"]
    assert values(out, "x-forwarded-host") == ["login.example.com"]


# Auth0, "Configure Custom Domains with Self-Managed Certificates", "Original client ip address":
# X-Forwarded-For with the end user's IP, "Just one ip address is expected".
@pytest.mark.parametrize(
    ("peer", "incoming", "kw", "forwarded_for", "extra"),
    [
        ("203.0.113.9", [], {}, ["203.0.113.9"], {}),
        ("203.0.113.9", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4")], {}, ["203.0.113.9"], {}),
        ("203.0.113.9", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7")], {}, ["203.0.113.9"], {}),
        (
            "10.0.0.5",
            [("X-Forwarded-For", "6.6.6.6, 198.51.100.7")],
            {"trusted_proxies": TRUSTED},
            ["198.51.100.7"],
            {},
        ),
        (
            "10.0.0.5",
            [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7, 10.1.1.1")],
            {"trusted_proxies": TRUSTED},
            ["198.51.100.7"],
            {},
        ),
        ("10.0.0.5", [], {"trusted_proxies": TRUSTED}, ["10.0.0.5"], {}),
        (
            "203.0.113.9",
            [("CF-Connecting-IP", "6.6.6.6"), ("True-Client-IP", "7.7.7.7"), ("X-Azure-ClientIP", "8.8.8.8")],
            {"client_ip_header": "cf-connecting-ip"},
            ["203.0.113.9"],
            {"cf-connecting-ip": ["203.0.113.9"], "true-client-ip": [], "x-azure-clientip": []},
        ),
        (
            "10.0.0.5",
            [("X-Forwarded-For", "198.51.100.7")],
            {"client_ip_header": "true-client-ip", "trusted_proxies": TRUSTED},
            ["198.51.100.7"],
            {"true-client-ip": ["198.51.100.7"]},
        ),
        (
            "203.0.113.9",
            [("X-Azure-ClientIP", "6.6.6.6")],
            {"client_ip_header": "x-azure-clientip"},
            ["203.0.113.9"],
            {"x-azure-clientip": ["203.0.113.9"]},
        ),
        # Unset (X-Forwarded-For only): a client's True-Client-IP still never reaches Auth0, which may read it.
        ("203.0.113.9", [("True-Client-IP", "6.6.6.6")], {}, ["203.0.113.9"], {"true-client-ip": []}),
    ],
)
def test_one_x_forwarded_for_with_one_address(
    peer: str,
    incoming: list[tuple[str, str]],
    kw: dict[str, Any],
    forwarded_for: list[str],
    extra: dict[str, list[str]],
) -> None:
    out = request_headers(scope(incoming, peer=peer), settings(**kw))
    assert values(out, "x-forwarded-for") == forwarded_for
    for name, expected in extra.items():
        assert values(out, name) == expected
    assert "6.6.6.6" not in [v for _, v in out]


def test_no_peer_address_no_client_ip_headers() -> None:
    out = request_headers({**scope([("X-Forwarded-For", "6.6.6.6")]), "client": None}, settings())
    assert values(out, "x-forwarded-for") == []


def test_https_scheme_and_no_host() -> None:
    out = request_headers(scope([], scheme="https"), settings())
    assert values(out, "x-forwarded-proto") == ["https"]
    assert values(out, "x-forwarded-host") == []


@pytest.mark.parametrize(
    ("exc", "kind", "cls", "status"),
    [
        (TimeoutError(), "timeout", UpstreamTimeout, 504),
        (aiohttp.ServerTimeoutError("read"), "timeout", UpstreamTimeout, 504),
        (aiohttp.ServerDisconnectedError(), "reset", UpstreamReset, 502),
        (ConnectionResetError(), "reset", UpstreamReset, 502),
        (aiohttp.ClientOSError(104, "reset"), "reset", UpstreamReset, 502),
        (aiohttp.ClientPayloadError("bad"), "protocol", UpstreamError, 502),
        (aiohttp.ClientResponseError(None, (), status=400), "protocol", UpstreamError, 502),  # type: ignore[arg-type]
    ],
)
def test_translate(exc: BaseException, kind: str, cls: type[UpstreamError], status: int) -> None:
    error = _translate(exc)
    assert type(error) is cls
    assert (error.kind, error.status) == (kind, status)


def test_translate_connect_error() -> None:
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("127.0.0.1", 1, False, True, None, None, None)
    error = _translate(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused")))
    assert type(error) is UpstreamConnectError
    assert (error.kind, error.status) == ("connect", 502)
    assert "ConnectionRefusedError" in str(error)


@pytest.mark.parametrize(
    "name",
    [
        "cname_api_key",
        "CNAME_API_KEY",
        "true_client_ip",
        "x_forwarded_for",
        "x_forwarded_host",
        "x-forwarded_proto",
        "forwarded",
        "x-real-ip",
        "x_real_ip",
        "transfer_encoding",
        "content_length",
    ],
)
def test_lookalikes_of_controlled_headers_are_dropped(name: str) -> None:
    """Issue 11, finding 6: ``_`` for ``-`` (and any case) never smuggles a controlled header through."""
    out = request_headers(scope([(name, "6.6.6.6"), ("x_custom_name", "kept")]), settings(cname_api_key="k"))
    assert "6.6.6.6" not in [v for _, v in out]
    assert values(out, "x_custom_name") == ["kept"]  # underscores alone are not a reason to drop


@pytest.mark.parametrize("name", ["cf_connecting_ip", "X_Azure_ClientIP", "true_client_ip"])
def test_lookalikes_of_client_ip_headers_are_dropped(name: str) -> None:
    out = request_headers(scope([(name, "6.6.6.6")]), settings(client_ip_header="cf-connecting-ip"))
    assert values(out, "cf-connecting-ip") == ["203.0.113.9"]
    assert "6.6.6.6" not in [v for _, v in out]


def test_utf8_header_values_are_kept_exactly_and_others_refused() -> None:
    """Issue 11, finding 7: aiohttp writes str headers as UTF-8, so UTF-8 in is the same bytes out."""
    value = "café ☕".encode()
    raw = scope([])
    raw["headers"] = [(b"x-name", value)]
    out = request_headers(raw, settings())
    assert values(out, "x-name")[0].encode() == value
    raw["headers"] = [(b"x-name", b"caf\xe9")]
    with pytest.raises(RequestUnforwardable):
        request_headers(raw, settings())


@pytest.mark.parametrize(
    ("headers", "hidden"),
    [
        ([(b"Connection", b"Keep-Alive, X-Secret"), (b"X-Secret", b"1")], True),
        ([(b"CONNECTION", b"x-secret"), (b"x-secret", b"1")], True),
        ([(b"connection", b"close"), (b"X-Secret", b"1")], False),
    ],
)
def test_response_connection_tokens_any_case(headers: list[tuple[bytes, bytes]], hidden: bool) -> None:
    assert (b"x-secret" in _connection_tokens(headers)) is hidden


@pytest.mark.parametrize(
    ("raw", "passed"),
    [
        (
            [(b"Content-Type", b"text/html"), (b"Set-Cookie", b"a=1")],
            [(b"content-type", b"text/html"), (b"set-cookie", b"a=1")],
        ),
        ([(b"Connection", b"Keep-Alive, X-Secret"), (b"X-Secret", b"1"), (b"Keep-Alive", b"timeout=5")], []),
        ([(b"Transfer-Encoding", b"chunked"), (b"Location", b"/x")], [(b"location", b"/x")]),
        (
            [(b"x-secret", b"1"), (b"CONNECTION", b"x-secret"), (b"Vary", b"Cookie")],
            [(b"vary", b"Cookie")],
        ),  # named after
        ([(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2")], [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]),
    ],
)
def test_response_headers_drop_hop_by_hop_and_named_ones(
    raw: list[tuple[bytes, bytes]], passed: list[tuple[bytes, bytes]]
) -> None:
    assert response_headers(raw) == passed


def test_retry_guard_is_detected() -> None:
    """Issue 11, finding 17a: start-up refuses an aiohttp without the retry switch."""

    class Renamed:
        ATTRS = frozenset(("_connector", "_retry_persistent"))

    assert retry_guard_available(aiohttp.ClientSession)
    assert not retry_guard_available(Renamed)
    assert not retry_guard_available(object)


ORIGINS = ["https://tenant.us.auth0.com", "http://127.0.0.1:8081", "https://[::1]:8443"]


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize(
    ("raw_path", "query", "expected_path"),
    [
        (b"/login/callback", b"code=abc&state=xyz", "/login/callback"),
        (b"//attacker.example/x", b"", "//attacker.example/x"),  # a path, not an authority
        (b"/a@attacker.example/x", b"", "/a@attacker.example/x"),
        (b"/\\attacker.example/x", b"", "/\\attacker.example/x"),
        (b"/p%20x/%2e%2e", b"a=%zz&b", "/p%20x/%2e%2e"),  # bytes as they came, never re-encoded
    ],
)
def test_upstream_url_keeps_the_configured_origin(
    origin: str, raw_path: bytes, query: bytes, expected_path: str
) -> None:
    configured = URL(origin)
    url = upstream_url(configured, raw_path, query)
    assert (url.scheme, url.raw_host, url.port) == (configured.scheme, configured.raw_host, configured.port)
    assert url.raw_user is None
    assert url.raw_path == expected_path
    assert url.raw_query_string == query.decode()


@pytest.mark.parametrize(
    "raw_path",
    [b"*", b"*@attacker.example/x", b"*@127.0.0.1:9090/routes", b"attacker.example:443", b"", None, b"@evil/x", b"?x"],
)
def test_only_origin_form_targets_are_forwarded(raw_path: bytes | None) -> None:
    assert not is_origin_form(raw_path)
    with pytest.raises(BadTarget):
        upstream_url(URL("https://tenant.us.auth0.com"), raw_path or b"", b"")
