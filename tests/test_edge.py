"""The public edge against hostile clients, with raw sockets through the real server on loopback.

What a client can hold of a replica (connections, memory, time) must be bounded whatever bytes it
sends: a connection that idles on bytes that begin no request, trailers after a chunked body, a
body that trickles. Each case runs on both listeners where both are exposed to it. Timeouts are
short here (1-2 s); every assertion on time is "closed well within the deadline plus slack".
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ProxyProcess, rejected, start_against
from tests.hostile_kit import RawUpstream, get, header_of, read_all, read_response, status_of

LEGACY_SAML = b"/login/callback?connection=globex-adfs"
LIMITS = {
    "SSO_PROXY_HEAD_TIMEOUT": "1",
    "SSO_PROXY_BODY_TIMEOUT": "1",
    "SSO_PROXY_BODY_DEADLINE": "2",
    "SSO_PROXY_KEEPALIVE_TIMEOUT": "1",
    "SSO_PROXY_RELOAD_INTERVAL": "0",
}


@pytest.fixture(scope="module")
def proxy(upstream: RawUpstream, routes: Path) -> Iterator[ProxyProcess]:
    proc = start_against(upstream, routes, **LIMITS)
    yield proc
    proc.stop()


def trickle_until_closed(sock: socket.socket, data: bytes, every: float, within: float) -> tuple[float, bytes]:
    """Send ``data`` every ``every`` seconds until the server closes; (seconds taken, what it answered)."""
    started = time.monotonic()
    sock.settimeout(every)
    answer = b""
    while time.monotonic() - started < within:
        try:
            sock.sendall(data)
        except OSError:
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        answer += chunk
    return time.monotonic() - started, answer


def listener_port(proxy: ProxyProcess, which: str) -> int:
    return proxy.port if which == "public" else proxy.admin_port


def request_for(which: str, close: bool = False) -> bytes:
    if which == "public":
        return get(b"/authorize", close=close)
    return get(b"/healthz", host=b"127.0.0.1", close=close)


# --- idle connections ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["public", "operations"])
def test_crlf_after_a_response_does_not_hold_the_connection(proxy: ProxyProcess, which: str) -> None:
    """A client that reads its answer and then sends only CRLF (which begins no request) is closed
    within the head timeout of its first such byte, however often it sends more."""
    with socket.create_connection(("127.0.0.1", listener_port(proxy, which)), timeout=5) as sock:
        sock.sendall(request_for(which))
        assert status_of(read_response(sock)) == 200
        taken, answer = trickle_until_closed(sock, b"\r\n", every=0.2, within=8)
    assert taken < 4, f"held {taken:.1f} s with a 1 s head timeout"
    assert status_of(answer) in (0, 408)


@pytest.mark.parametrize("which", ["public", "operations"])
def test_crlf_before_the_first_request_does_not_hold_the_connection(proxy: ProxyProcess, which: str) -> None:
    """The head clock starts at the connection; bytes that begin no request never restart it."""
    with socket.create_connection(("127.0.0.1", listener_port(proxy, which)), timeout=5) as sock:
        taken, answer = trickle_until_closed(sock, b"\r\n", every=0.2, within=8)
    assert taken < 4
    assert status_of(answer) == 408


def test_crlf_then_a_slow_head_is_due_from_the_first_byte(proxy: ProxyProcess, record: RawUpstream) -> None:
    """CRLFs for most of the head timeout, then a head begun slowly: the head is due from the first
    idle byte, not from the head's own first byte."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(get(b"/authorize", close=False))
        assert status_of(read_response(sock)) == 200
        sock.sendall(b"\r\n")
        time.sleep(0.8)
        started = time.monotonic()
        sock.sendall(b"GET /authorize HTTP/1.1\r\nx-slow: ")
        _, answer = trickle_until_closed(sock, b"a", every=0.1, within=8)
    # Due 0.2 s after the head began; a fresh timeout would have given it 1 s.
    assert time.monotonic() - started < 0.7, "the head got a fresh timeout when it began"
    assert status_of(answer) in (0, 408)
    assert len(record.requests) == 1


def test_a_request_after_crlf_is_still_served(proxy: ProxyProcess, record: RawUpstream) -> None:
    """RFC 9112 section 2.2: a server SHOULD ignore at least one empty line before a request line."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(get(b"/authorize", close=False))
        assert status_of(read_response(sock)) == 200
        sock.sendall(b"\r\n" + get(b"/authorize"))
        assert status_of(read_response(sock)) == 200
    assert len(record.wait_requests(2)) == 2


# --- trailers --------------------------------------------------------------------------------------


def chunked_post(path: bytes, body: bytes, trailer: bytes) -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nhost: login.example.com\r\n"
        b"content-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n"
        b"connection: close\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n" + trailer + b"\r\n"
    )


def test_trailers_are_dropped_never_merged_or_forwarded(proxy: ProxyProcess, record: RawUpstream) -> None:
    """A trailer ``Host: evil.example`` after a valid head never becomes a header of the request."""
    request = chunked_post(
        LEGACY_SAML, b"SAMLResponse=abc&RelayState=r", b"Host: evil.example\r\nX-Trailer: smuggled\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(request)
        answer = read_all(sock, 5)
    assert status_of(answer) == 200
    sent = record.wait_requests(1)[0].lower()
    assert b"evil.example" not in sent and b"smuggled" not in sent
    assert sent.endswith(b"\r\n\r\nsamlresponse=abc&relaystate=r")


def test_endless_trailers_are_cut_at_the_head_limit(proxy: ProxyProcess, record: RawUpstream) -> None:
    """8 MB of trailer fields: 431 once they pass the head limit (32 KiB), and nothing is forwarded."""
    before = rejected(proxy, "trailers_too_large")
    head = chunked_post(LEGACY_SAML, b"SAMLResponse=abc", b"")[:-2]  # ends after the last chunk's line
    sent = 0
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for _ in range(8192):
                sock.sendall(b"x-t: " + b"b" * 1017 + b"\r\n")
                sent += 1024
        except OSError:
            pass  # the proxy closed the connection: what this test wants
        answer = read_all(sock, 5)
    assert sent < 8 << 20, "the proxy kept reading trailers"
    assert status_of(answer) in (0, 431)
    assert rejected(proxy, "trailers_too_large") == before + 1
    time.sleep(0.2)
    assert record.requests == []


def test_one_endless_trailer_field_is_cut_too(proxy: ProxyProcess, record: RawUpstream) -> None:
    """One trailer value that never ends is bounded the same way (the parser buffers a field whole)."""
    head = chunked_post(LEGACY_SAML, b"SAMLResponse=abc", b"")[:-2] + b"x-t: "
    sent = 0
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for _ in range(8192):
                sock.sendall(b"b" * 1024)
                sent += 1024
        except OSError:
            pass
        read_all(sock, 5)
    assert sent < 8 << 20
    time.sleep(0.2)
    assert record.requests == []


# --- bodies ----------------------------------------------------------------------------------------


def test_a_trickling_body_is_cut_at_the_deadline(proxy: ProxyProcess, record: RawUpstream) -> None:
    """One byte every 0.3 s never trips the 1 s progress timeout, but the whole body is due within
    2 s of its head (SSO_PROXY_BODY_DEADLINE): 408, and the truncated callback never reaches Auth0."""
    before = rejected(proxy, "body_timeout")
    head = (
        b"POST " + LEGACY_SAML + b" HTTP/1.1\r\nhost: login.example.com\r\n"
        b"content-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nSAMLResponse="
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(head)
        taken, answer = trickle_until_closed(sock, b"A", every=0.3, within=10)
    assert taken < 4, f"a trickling body held the request {taken:.1f} s"
    assert status_of(answer) == 408
    assert header_of(answer, b"connection") == b"close"
    assert rejected(proxy, "body_timeout") == before + 1
    time.sleep(0.2)
    assert record.requests == []


def test_a_chunked_body_that_trickles_is_cut_at_the_deadline(proxy: ProxyProcess, record: RawUpstream) -> None:
    head = (
        b"POST " + LEGACY_SAML + b" HTTP/1.1\r\nhost: login.example.com\r\n"
        b"content-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(head)
        taken, answer = trickle_until_closed(sock, b"1\r\nA\r\n", every=0.3, within=10)
    assert taken < 4
    assert status_of(answer) == 408
    time.sleep(0.2)
    assert record.requests == []


def test_a_body_within_its_deadline_is_forwarded_whole(proxy: ProxyProcess, record: RawUpstream) -> None:
    """Slow but in time (1.2 s in pieces, under the 2 s deadline): delivered, byte for byte."""
    body = b"SAMLResponse=" + b"B" * 40
    request = (
        b"POST " + LEGACY_SAML + b" HTTP/1.1\r\nhost: login.example.com\r\n"
        b"content-type: application/x-www-form-urlencoded\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % len(body)
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(request)
        for i in range(0, len(body), 14):
            time.sleep(0.3)
            sock.sendall(body[i : i + 14])
        answer = read_all(sock, 5)
    assert status_of(answer) == 200
    assert record.wait_requests(1)[0].endswith(b"\r\n\r\n" + body)


# --- percent-encoding at the body limit ------------------------------------------------------------

MIB = 1 << 20
PLAIN = b"SAMLResponse=" + b"A" * (MIB - 13 - 100)
# Families that fell back to a Python loop per "%" (or decoded whole before their caps), each just
# under the 1 MiB body limit, with a binding cookie present so the state is read for the check.
PERCENT_FAMILIES = {
    "id_token %%%": b"id_token=" + b"%" * (MIB - 109),
    "state %%%": b"state=" + b"%" * (MIB - 106),
    "RelayState %4%4": b"RelayState=" + b"%4" * ((MIB - 111) // 2),
    "code raw byte then %41": b"code=\xff" + b"%41" * ((MIB - 106) // 3),
    "SAMLResponse %41": b"SAMLResponse=" + b"%41" * ((MIB - 113) // 3),
}
COOKIE = b"cookie: sso_proxy_tx_0123456789abcdef=AAAA; __Host-sso_proxy_logins=0123456789abcdef"


def timed_post(port: int, body: bytes) -> float:
    request = (
        b"POST /login/callback HTTP/1.1\r\nhost: login.example.com\r\n"
        b"content-type: application/x-www-form-urlencoded\r\ncontent-length: %d\r\n"
        % len(body)
        + COOKIE
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        answer = read_response(sock, 30)
        taken = time.perf_counter() - started
    assert status_of(answer) in (200, 307), answer[:200]
    return taken


def test_hostile_percent_encoding_costs_what_a_plain_body_does(proxy: ProxyProcess) -> None:
    """Each family at the body limit costs at most 3x a plain body of the same size: best of 5,
    interleaved, in one run (the loop stalled 0.6-1.6 s per such request before)."""
    best = dict.fromkeys(["plain", *PERCENT_FAMILIES], float("inf"))
    for _ in range(5):
        best["plain"] = min(best["plain"], timed_post(proxy.port, PLAIN))
        for name, body in PERCENT_FAMILIES.items():
            assert len(body) <= MIB
            best[name] = min(best[name], timed_post(proxy.port, body))
    ratios = {name: best[name] / best["plain"] for name in PERCENT_FAMILIES}
    assert max(ratios.values()) <= 3, {k: f"{v:.1f}x" for k, v in ratios.items()}


# --- TLS handshakes --------------------------------------------------------------------------------

TLS_CAP = 20


@pytest.fixture(scope="module")
def tls_proxy(upstream: RawUpstream, routes: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    from tests.e2e.pki import make_key_pair

    pair = make_key_pair(tmp_path_factory.mktemp("edge-tls"), "login", "login.example.com")
    tls = {"SSO_PROXY_TLS_CERT": str(pair.cert_file), "SSO_PROXY_TLS_KEY": str(pair.key_file)}
    proc = start_against(upstream, routes, **LIMITS, SSO_PROXY_MAX_CONNECTIONS=str(TLS_CAP), **tls)
    yield proc
    proc.stop()


def tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with tls_client().wrap_socket(raw) as sock:
            sock.sendall(data)
            return read_all(sock, 5)


def open_descriptors(proc: ProxyProcess) -> int:
    assert proc.proc is not None
    return len(os.listdir(f"/proc/{proc.proc.pid}/fd"))


def test_requests_are_served_over_tls(tls_proxy: ProxyProcess, record: RawUpstream) -> None:
    """Through the gate: keep-alive, and a request sent in the same flight as the handshake's end."""
    answer = tls_exchange(tls_proxy.port, get(b"/authorize", close=False) + get(b"/authorize?second=1"))
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    assert len(record.wait_requests(2)) == 2


def test_stalled_handshakes_are_bounded_and_counted_from_accept(tls_proxy: ProxyProcess) -> None:
    """3 bytes of a ClientHello from 3x the cap: those past the cap are closed at once, the rest
    within the head timeout (1 s here), and the descriptors held never pass the cap."""
    before = open_descriptors(tls_proxy)
    handshakes = rejected(tls_proxy, "tls_handshake")
    socks = []
    try:
        for _ in range(3 * TLS_CAP):
            sock = socket.create_connection(("127.0.0.1", tls_proxy.port), timeout=5)
            sock.sendall(b"\x16\x03\x01")
            socks.append(sock)
        time.sleep(0.3)
        assert open_descriptors(tls_proxy) <= before + TLS_CAP
        # While they hold the cap, a new client is refused at accept (never queued behind them).
        with pytest.raises((ssl.SSLError, OSError)):
            tls_exchange(tls_proxy.port, get(b"/authorize"))
        started = time.monotonic()
        for sock in socks:
            sock.settimeout(max(0.1, 4 - (time.monotonic() - started)))
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        assert time.monotonic() - started < 4
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.3)
    assert rejected(tls_proxy, "tls_handshake") >= handshakes + TLS_CAP - 1
    assert status_of(tls_exchange(tls_proxy.port, get(b"/authorize"))) == 200
