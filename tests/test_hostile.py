"""Hostile traffic through the real server on loopback: one regression test per finding of issue 11
fixed on the request path (the finding's number in each test's docstring).

Auth0 is ``RawUpstream`` (tests/hostile_kit.py): its record of the bytes it received is what shows
that nothing was forwarded where it must not be. Bounds are generous (no wall-clock assertions
beyond "well within the configured timeout plus slack").
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ProxyProcess, free_port, proxy_env, rejected, start_against
from tests.hostile_kit import RawUpstream, exchange, get, header_of, post, read_all, read_response, status_of

LEGACY_SAML = b"/login/callback?connection=globex-adfs"
LEGACY_GET = b"/login/callback?connection=globex-adfs&code=one-time-code&state=s"
LIMITS = {
    "SSO_PROXY_HEAD_TIMEOUT": "1",
    "SSO_PROXY_BODY_TIMEOUT": "1",
    "SSO_PROXY_MAX_CONNECTIONS": "30",
    "SSO_PROXY_BODY_BUDGET_BYTES": str(2 << 20),
    "SSO_PROXY_RELOAD_INTERVAL": "0",
}


def start_limited(upstream: RawUpstream, routes: Path, **env: str) -> ProxyProcess:
    return start_against(upstream, routes, **{**LIMITS, **env})


@pytest.fixture(scope="module")
def proxy(upstream: RawUpstream, routes: Path) -> Iterator[ProxyProcess]:
    proc = start_limited(upstream, routes)
    yield proc
    proc.stop()


# --- finding 3: the request head is bounded ------------------------------------------------------


def test_head_over_the_limit_is_431(proxy: ProxyProcess, record: RawUpstream) -> None:
    """3: 40 KB of headers get a 431 page, and nothing reaches Auth0."""
    answer = exchange(proxy.port, get(b"/authorize", b"x-big: " + b"a" * 40_000))
    assert status_of(answer) == 431
    assert header_of(answer, b"cache-control") == b"no-store"
    assert record.requests == []


def test_endless_head_is_cut_at_the_limit(proxy: ProxyProcess, record: RawUpstream) -> None:
    """3: 4 MB of headers that never end: 431 after the limit, not 295 MB of RSS."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET /authorize HTTP/1.1\r\nhost: login.example.com\r\n")
        sent = 0
        try:
            for _ in range(4096):
                sock.sendall(b"x-h: " + b"b" * 1017 + b"\r\n")
                sent += 1024
        except OSError:
            pass  # the proxy closed the connection: what this test wants
        answer = read_all(sock, 5)
    assert status_of(answer) == 431
    assert sent < 4 << 20  # the proxy stopped reading long before the end
    assert record.requests == []


def test_head_just_under_the_limit_is_served(proxy: ProxyProcess, record: RawUpstream) -> None:
    answer = exchange(proxy.port, get(b"/authorize", b"x-big: " + b"a" * 30_000))
    assert status_of(answer) == 200
    assert len(record.wait_requests(1)) == 1


# --- finding 4: timeouts, connection cap, body budget --------------------------------------------


def test_connection_without_a_byte_is_closed_after_the_head_timeout(proxy: ProxyProcess) -> None:
    """4: idle connections are not held forever (head timeout 1 s here)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        answer = read_all(sock, 8)
    assert status_of(answer) == 408
    assert time.monotonic() - started < 6


def test_partial_head_gets_408(proxy: ProxyProcess, record: RawUpstream) -> None:
    """4: a head that stops half-way is answered 408 and closed."""
    answer = exchange(proxy.port, b"GET /authorize HTTP/1.1\r\nhost: login.example.com\r\nx-slow: ")
    assert status_of(answer) == 408
    assert record.requests == []


def test_stalled_body_gets_408_and_nothing_is_forwarded(proxy: ProxyProcess, record: RawUpstream) -> None:
    """4: a body that stops making progress is cut; its truncated callback never reaches Auth0."""
    head = post(LEGACY_SAML, b"SAMLResponse=" + b"A" * 5000)[:-4000]  # declares 5013 bytes, sends ~1000
    before = rejected(proxy, "body_timeout")
    answer = exchange(proxy.port, head)
    assert status_of(answer) == 408
    assert rejected(proxy, "body_timeout") == before + 1
    time.sleep(0.3)
    assert record.requests == []


def test_idle_keepalive_connection_is_closed(proxy: ProxyProcess) -> None:
    """4: after a response, an idle keep-alive connection is closed by the keep-alive timeout."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(get(b"/authorize", close=False))
        answer = read_all(sock, 9)  # keep-alive 5 s: the server closes, so the read ends
    assert status_of(answer) == 200


def test_connections_past_the_cap_get_503_at_once(proxy: ProxyProcess) -> None:
    """4: past SSO_PROXY_MAX_CONNECTIONS a new connection is answered 503 and closed, never queued."""
    held = [socket.create_connection(("127.0.0.1", proxy.port), timeout=5) for _ in range(30)]
    try:
        time.sleep(0.2)
        answer = exchange(proxy.port, get(b"/authorize"), timeout=5)
        assert status_of(answer) == 503
        assert header_of(answer, b"retry-after") == b"5"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert status_of(exchange(proxy.port, get(b"/authorize"))) == 200
    assert rejected(proxy, "connection_limit") >= 1


def test_body_budget_answers_503_with_retry_after(proxy: ProxyProcess, record: RawUpstream) -> None:
    """4: body bytes buffered at once are bounded (2 MiB here): with 1.5 MiB held by three stalled
    uploads, a complete 1 MiB callback is answered 503 (the rest of its body is read and dropped)."""
    body = b"SAMLResponse=" + b"A" * ((1 << 20) - 13)
    partial = post(LEGACY_SAML, body)[: -(1 << 19)]  # head + half the body; held open
    held = []
    try:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            sock.sendall(partial)
            held.append(sock)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(post(LEGACY_SAML, body, close=False))
            answer = read_response(sock)
        assert status_of(answer) == 503
        assert header_of(answer, b"retry-after") == b"5"
        assert rejected(proxy, "body_budget") >= 1
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert record.requests == []
    assert status_of(exchange(proxy.port, post(LEGACY_SAML, body))) == 200  # the budget was given back


# --- finding 6: Host -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /authorize HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\n\r\n",
        b"GET /authorize HTTP/1.1\r\nx-a: 1\r\n\r\n",
        b"GET /authorize HTTP/1.1\r\nhost: evil.example/path\r\n\r\n",
        b"GET /authorize HTTP/1.1\r\nhost: user@evil.example\r\n\r\n",
    ],
    ids=["duplicate-host", "no-host", "host-with-path", "host-with-userinfo"],
)
def test_bad_host_is_400_and_not_forwarded(proxy: ProxyProcess, record: RawUpstream, request_bytes: bytes) -> None:
    """6: a second Host (or none in HTTP/1.1, or one that is not a host) is a 400 page (RFC 9112 3.2)."""
    answer = exchange(proxy.port, request_bytes)
    assert status_of(answer) == 400
    assert b"<h1>Bad request</h1>" in answer
    time.sleep(0.2)
    assert record.requests == []


# --- findings 5, 6, 7: header hygiene on the wire ------------------------------------------------


def test_lookalike_and_untrusted_forwarding_headers_never_reach_auth0(proxy: ProxyProcess, record: RawUpstream) -> None:
    """6: cname_api_key, true_client_ip, x_forwarded_for, Forwarded, X-Real-IP are dropped."""
    answer = exchange(
        proxy.port,
        get(
            b"/authorize",
            b"cname_api_key: stolen",
            b"CNAME-API-KEY: stolen",
            b"true_client_ip: 6.6.6.6",
            b"x_forwarded_for: 6.6.6.6",
            b"X_Forwarded_Host: evil.example",
            b"forwarded: for=6.6.6.6;host=evil.example",
            b"x-real-ip: 6.6.6.6",
            b"x_real_ip: 6.6.6.6",
            b"x-kept: yes",
        ),
    )
    assert status_of(answer) == 200
    sent = record.wait_requests(1)[0].lower()
    assert b"stolen" not in sent and b"6.6.6.6" not in sent and b"evil.example" not in sent
    assert sent.count(b"cname-api-key:") == 1
    assert b"x-kept: yes" in sent


def test_header_bytes_reach_auth0_unchanged(proxy: ProxyProcess, record: RawUpstream) -> None:
    """7: UTF-8 header bytes go out byte for byte; bytes aiohttp cannot send unchanged are refused."""
    value = "café ☕ 𝄞".encode()
    assert status_of(exchange(proxy.port, get(b"/authorize", b"x-name: " + value))) == 200
    assert b"\r\nx-name: " + value + b"\r\n" in record.wait_requests(1)[0]
    record.requests.clear()
    answer = exchange(proxy.port, get(b"/authorize", b"x-name: caf\xe9"))
    assert status_of(answer) == 400
    time.sleep(0.2)
    assert record.requests == []


def test_connection_tokens_of_responses_are_matched_case_insensitively(routes: Path) -> None:
    """5: ``Connection: Keep-Alive, X-Secret`` from Auth0 keeps X-Secret from the browser."""
    raw = RawUpstream(
        response=b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, X-Secret\r\nX-Secret: s3cr3t\r\n"
        b"X-Other: kept\r\nContent-Length: 3\r\n\r\nok\n"
    ).start()
    proc = start_limited(raw, routes)
    try:
        answer = exchange(proc.port, get(b"/authorize"))
        assert status_of(answer) == 200
        assert header_of(answer, b"x-secret") is None
        assert header_of(answer, b"x-other") == b"kept"
    finally:
        proc.stop()
        raw.stop()


# --- finding 8: parsers never raise --------------------------------------------------------------


def test_nested_id_token_is_unparseable_not_an_error(proxy: ProxyProcess, record: RawUpstream) -> None:
    """8: a deeply nested id_token payload is 'unparseable' (RecursionError caught), never a traceback."""
    payload = base64.urlsafe_b64encode(b"[" * 20_000 + b"]" * 20_000).rstrip(b"=")
    body = b"id_token=e30." + payload + b".sig&state=s"
    answer = exchange(proxy.port, post(b"/login/callback", body))
    assert status_of(answer) in (200, 307)
    time.sleep(0.2)
    errors = [line for line in proxy.log_lines if '"level":"error"' in line or "Traceback" in line]
    assert errors == []


# --- finding 17a: at-most-once delivery of callbacks ---------------------------------------------


def test_callback_is_delivered_at_most_once_when_auth0_closes_reused_connections(routes: Path) -> None:
    """17a: Auth0 reads a callback on a reused keep-alive connection and closes it: the callback is
    not sent again (502 page); a passthrough GET in the same situation is retried and answered."""
    raw = RawUpstream(mode="close_reused").start()
    proc = start_limited(raw, routes)
    try:
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{proc.url}{LEGACY_GET.decode()}&n=1").status_code == 200
            second = client.get(f"{proc.url}{LEGACY_GET.decode()}&n=2")
            assert second.status_code == 502
            time.sleep(0.3)
            callbacks = [r for r in raw.requests if b"code=one-time-code&state=s&n=2" in r]
            assert len(callbacks) == 1  # reached Auth0 once, never re-sent

            raw.requests.clear()
            assert client.get(f"{proc.url}/authorize?n=1").status_code == 200
            assert client.get(f"{proc.url}/authorize?n=2").status_code == 200
            passthrough = [r for r in raw.requests if b"/authorize?n=2" in r]
            assert len(passthrough) == 2  # an idempotent passthrough GET may be retried
    finally:
        proc.stop()
        raw.stop()


# --- finding 13: abandoned requests and the pool wait --------------------------------------------


def test_abandoned_requests_never_reach_auth0_and_the_pool_wait_is_bounded(routes: Path) -> None:
    """13: with Auth0 hanging and one pool connection, a callback waiting for it gets 504 after the
    pool timeout, one whose client leaves is cancelled: neither reaches Auth0; the holder's upstream
    connection is closed when its client leaves."""
    raw = RawUpstream(mode="hang").start()
    proc = start_limited(
        raw, routes, SSO_PROXY_UPSTREAM_CONNECTIONS="1", SSO_PROXY_POOL_TIMEOUT="1", SSO_PROXY_READ_TIMEOUT="60"
    )
    try:
        holder = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
        holder.sendall(post(LEGACY_SAML, b"SAMLResponse=holder"))
        assert len(raw.wait_requests(1)) == 1

        waiter = exchange(proc.port, post(LEGACY_SAML, b"SAMLResponse=waiter"))
        assert status_of(waiter) == 504

        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as leaver:
            leaver.sendall(post(LEGACY_SAML, b"SAMLResponse=leaver"))
            time.sleep(0.3)
        holder.close()
        deadline = time.monotonic() + 5
        while raw.closed_by_client < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert raw.closed_by_client == 1  # the holder's exchange was cancelled, its connection closed
        time.sleep(0.5)  # had the leaver been sent when the pool freed, it would be here by now
        assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in raw.requests] == [b"SAMLResponse=holder"]
        scrape = proc.scrape()
        assert scrape[("sso_proxy_upstream_errors_total", (("kind", "client_gone"),))] == 2
        assert scrape[("sso_proxy_upstream_errors_total", (("kind", "timeout"),))] == 1
    finally:
        proc.stop()
        raw.stop()


# --- finding 15: failures after the response started ---------------------------------------------


def test_break_after_the_response_started_is_logged_and_counted_as_reset(routes: Path) -> None:
    """15: Auth0 breaks off mid-body: the client sees a truncated answer (connection closed), the log
    has a line with the request id, and callback_errors{connection, kind="reset"} counts it."""
    raw = RawUpstream(mode="break").start()
    proc = start_limited(raw, routes)
    try:
        answer = exchange(proc.port, post(LEGACY_SAML, b"SAMLResponse=x", b"x-request-id: req-15"))
        assert status_of(answer) == 200
        assert len(answer.split(b"\r\n\r\n", 1)[1]) < 100000  # truncated: never presented as complete
        time.sleep(0.3)
        lines = [json.loads(line) for line in proc.log_lines if line.startswith("{")]
        broken = [x for x in lines if x.get("msg") == "upstream error" and x.get("request_id") == "req-15"]
        assert broken and broken[0]["kind"] == "reset" and broken[0]["response_started"] is True
        assert not [line for line in proc.log_lines if "Traceback" in line or "Exception in ASGI" in line]
        key = ("sso_proxy_callback_errors_total", (("connection", "globex-adfs"), ("kind", "reset")))
        assert proc.scrape()[key] == 1
    finally:
        proc.stop()
        raw.stop()


def dechunk(data: bytes) -> bytes:
    """A chunked body's content (the test's own reading; sizes are hex and may hold a or b)."""
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2 :]


HALVES = b"a" * 5000 + b"b" * 5000
FRAMINGS = {
    "content-length": b"content-length: 10000\r\n\r\n" + HALVES,
    "chunked": b"transfer-encoding: chunked\r\n\r\n"
    + b"".join(b"1388\r\n" + half + b"\r\n" for half in (HALVES[:5000], HALVES[5000:]))
    + b"0\r\n\r\n",
    "close-delimited": b"connection: close\r\n\r\n" + HALVES,
}


@pytest.mark.parametrize("framing", list(FRAMINGS))
@pytest.mark.parametrize(
    "request_bytes",
    [get(b"/userinfo"), post(LEGACY_SAML, b"SAMLResponse=x")],
    ids=["passthrough", "callback-forward"],
)
def test_an_answer_is_passed_on_as_it_arrives(routes: Path, framing: str, request_bytes: bytes) -> None:
    """Auth0's answer streams: what has arrived reaches the browser before the rest exists, and the
    whole body arrives once Auth0 sends the rest, however Auth0 frames it."""
    raw = RawUpstream(mode="drip", response=b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" + FRAMINGS[framing])
    raw.start()
    proc = start_limited(raw, routes)
    try:
        with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
            sock.sendall(request_bytes)
            sock.settimeout(10)
            early = b""
            while early.count(b"a") < 4000:
                chunk = sock.recv(65536)
                assert chunk, "closed before the first half arrived"
                early += chunk
            assert b"b" not in early.split(b"\r\n\r\n", 1)[1]  # Auth0 has not sent the rest yet
            raw.released.set()
            answer = early + read_all(sock, 10)
        assert status_of(answer) == 200
        body = answer.partition(b"\r\n\r\n")[2]
        assert (dechunk(body) if header_of(answer, b"transfer-encoding") == b"chunked" else body) == HALVES
    finally:
        proc.stop()
        raw.stop()


# --- findings 14 and 17: drain and shutdown ------------------------------------------------------


def test_drain_closes_keepalive_and_shutdown_cut_gets_the_proxy_page(routes: Path) -> None:
    """17: responses during the drain carry Connection: close. 14: a request cut by the shutdown
    timeout gets the proxy's own 503 page with no-store and a log line, not uvicorn's bare 500."""
    raw = RawUpstream().start()
    proc = start_limited(
        raw, routes, SSO_PROXY_DRAIN_SECONDS="1.5", SSO_PROXY_SHUTDOWN_TIMEOUT="1", SSO_PROXY_READ_TIMEOUT="30"
    )
    try:
        cut = socket.create_connection(("127.0.0.1", proc.port), timeout=15)
        cut.sendall(get(b"/hang", b"x-request-id: req-14"))
        raw.wait_requests(1)
        assert proc.proc is not None
        proc.proc.send_signal(15)
        time.sleep(0.3)
        answer = exchange(proc.port, get(b"/authorize", close=False), timeout=5)
        assert status_of(answer) == 200
        assert header_of(answer, b"connection") == b"close"
        page = read_all(cut, 10)
        cut.close()
        assert status_of(page) == 503
        assert header_of(page, b"cache-control") == b"no-store"
        assert proc.proc.wait(10) == 0
        lines = [json.loads(line) for line in proc.log_lines if line.startswith("{")]
        assert [x["request_id"] for x in lines if x.get("msg") == "request cut at shutdown"] == ["req-14"]
        assert not [line for line in proc.log_lines if "Traceback" in line or "Exception in ASGI" in line]
    finally:
        proc.stop()
        raw.stop()


def test_port_in_use_is_one_line(routes: Path) -> None:
    """17: a port already in use ends the start with one line and a non-zero exit, no traceback."""
    raw = RawUpstream()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = ProxyProcess(
            env=proxy_env("http://127.0.0.1:9", "127.0.0.1:10"),
            args=["--routes", str(routes), "--port", str(port), "--admin-port", str(free_port())],
            port=port,
            admin_port=0,
        )
        proc.start(wait_ready=False)
        assert proc.proc is not None
        code = proc.proc.wait(15)
        proc.stop()
    assert raw.requests == []
    assert code == 1
    plain = [line for line in proc.log_lines if not line.startswith("{")]  # JSON lines are the service's log
    assert len(plain) == 1, proc.log_lines
    assert plain[0].startswith(f"sso-proxy: cannot listen on 127.0.0.1:{port}:")
    assert not [line for line in proc.log_lines if "Traceback" in line or "Unclosed" in line]
