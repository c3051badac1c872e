"""Only the public host is spoken for (issue 20, item 7), through the real server.

With ``SSO_PROXY_PUBLIC_HOST`` set, a request for another host is answered ``421 Misdirected
Request`` (RFC 9110 section 15.5.20: "the server is not able to produce a response" for that
authority), counted as ``sso_proxy_rejected_requests_total{reason="misdirected"}``, and nothing is
forwarded: Auth0 never sees ``X-Forwarded-Host`` naming a host that is not the custom domain.
``RawUpstream`` shows what Auth0 would receive.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ProxyProcess, start_against
from tests.hostile_kit import RawUpstream, exchange, get, header_of, post, status_of

PUBLIC = "login.example.com,auth.example.com:8443"


@pytest.fixture(scope="module")
def proxy(upstream: RawUpstream, routes: Path) -> Iterator[ProxyProcess]:
    proc = start_against(upstream, routes, SSO_PROXY_PUBLIC_HOST=PUBLIC, SSO_PROXY_TRUSTED_PROXIES="127.0.0.1/32")
    yield proc
    proc.stop()


def misdirected(proc: ProxyProcess) -> float:
    return proc.scrape().get(("sso_proxy_rejected_requests_total", (("reason", "misdirected"),)), 0.0)


@pytest.mark.parametrize(
    "request_bytes",
    [
        get(b"/authorize", host=b"evil.example"),
        get(b"/authorize", host=b"login.example.com.evil.example"),
        get(b"/authorize", host=b"example.com"),
        get(b"/login/callback?connection=globex-adfs&code=c&state=s", host=b"evil.example"),
        get(b"/login/callback?connection=acme-okta&code=c&state=s", host=b"evil.example"),
        post(b"/login/callback?connection=globex-adfs", b"SAMLResponse=x").replace(
            b"host: login.example.com", b"host: evil.example"
        ),
        # A trusted proxy's X-Forwarded-Host is what Auth0 would see: it must be public too.
        get(b"/authorize", b"x-forwarded-host: evil.example"),
        b"GET /authorize HTTP/1.0\r\n\r\n",  # no Host at all
    ],
    ids=["other", "suffix", "parent", "callback-legacy", "callback-workos", "callback-post", "xfh", "no-host"],
)
def test_another_host_is_421_counted_and_not_forwarded(
    proxy: ProxyProcess, upstream: RawUpstream, request_bytes: bytes
) -> None:
    upstream.requests.clear()
    before = misdirected(proxy)
    answer = exchange(proxy.port, request_bytes)
    assert status_of(answer) == 421
    assert b"<h1>Misdirected request</h1>" in answer
    assert header_of(answer, b"cache-control") == b"no-store"
    assert header_of(answer, b"location") is None  # not even a redirect to WorkOS
    assert misdirected(proxy) == before + 1
    time.sleep(0.2)
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("host", "forwarded_host"),
    [
        (b"login.example.com", b"login.example.com"),
        (b"LOGIN.Example.COM:8080", b"LOGIN.Example.COM:8080"),  # compared without case and port
        (b"auth.example.com", b"auth.example.com"),  # configured with a port, asked without
        (b"auth.example.com:443", b"auth.example.com:443"),
    ],
)
def test_a_public_host_is_forwarded_as_the_forwarded_host(
    proxy: ProxyProcess, upstream: RawUpstream, host: bytes, forwarded_host: bytes
) -> None:
    upstream.requests.clear()
    assert status_of(exchange(proxy.port, get(b"/authorize", host=host))) == 200
    sent = upstream.wait_requests(1)[0]
    assert header_of(sent, b"x-forwarded-host") == forwarded_host


def test_without_the_setting_any_host_is_served(upstream: RawUpstream, routes: Path) -> None:
    """Documented in SECURITY.md: then the ingress in front, routing by host, is what holds."""
    proc = start_against(upstream, routes)
    try:
        upstream.requests.clear()
        assert status_of(exchange(proc.port, get(b"/authorize", host=b"evil.example"))) == 200
        assert header_of(upstream.wait_requests(1)[0], b"x-forwarded-host") == b"evil.example"
    finally:
        proc.stop()
