"""Forwarding to Auth0: header rules, timeouts, streaming, error translation.

The only module that knows the HTTP client. aiohttp was chosen with numbers (bench/RESULTS.md):
forwarding through httpx's default transport ran several times slower on these machines.

Rules (RFC 9110 section 7.6.1 for hop-by-hop headers; Auth0 "Configure Custom Domains with
Self-Managed Certificates" for cname-api-key and, in its section "Original client ip address", the
end user's IP):
- method, path, query and body go unchanged; end-to-end headers (Cookie, User-Agent, Origin,
  Referer, ...) too, in order and with repetition; hop-by-hop headers are dropped;
- Host is the origin's host; ``cname-api-key`` is ours alone;
- the end user's IP, computed here, goes in exactly one ``X-Forwarded-For`` holding exactly one
  address ("Just one ip address is expected"; Auth0 uses it for anomaly detection, rate limiting and
  MFA, and without it treats the proxy's address as the client's), and in ``AUTH0_CLIENT_IP_HEADER``
  too when that names one of the other headers the custom domain's ``custom_client_ip_header`` may
  read. The address is the peer's; behind ``SSO_PROXY_TRUSTED_PROXIES``, the right-most entry of
  their X-Forwarded-For that is not a trusted proxy. Client-supplied copies of every header Auth0 may
  read an IP from are removed, whichever one the custom domain is set to read;
- redirects are handed to the browser, never followed; every Set-Cookie passes back unmodified;
  compressed bodies are streamed through without being decompressed;
- a request whose bytes may have reached Auth0 is never retried (SAML assertions and OIDC codes are
  single-use), so the connection pool used for callbacks has aiohttp's stale-connection retry off
  (start-up fails if that guard cannot be applied; tests/test_hostile.py proves it on a real socket;
  the public-API alternative, ``force_close``, costs about 4x per callback: bench/force_close.py);
- header hygiene: names that differ from a controlled one only by ``_`` for ``-`` are
  dropped too (some servers treat them alike); ``Forwarded`` and ``X-Real-IP`` are always dropped (the
  end user's IP reaches Auth0 only in the headers computed here, so there is one answer, not two
  that may disagree); values go out byte for byte: aiohttp
  writes header strings as UTF-8, so values are decoded as UTF-8 and a value that is not UTF-8 is
  refused (400) rather than changed; ``Connection`` tokens of responses are matched case-insensitively;
- a request whose client disconnected is cancelled wherever it is (waiting for a pool connection,
  connecting, waiting for the answer); the wait for a pool connection is bounded (504).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any, Awaitable, Callable, Iterable, Protocol

import aiohttp
from yarl import URL

from proxy.config import Network, Settings
from proxy.edge.limits import control_of
from proxy.errors import (
    RequestUnforwardable,
    StartupError,
    UpstreamAborted,
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
    UpstreamTimeout,
)
from proxy.metrics import Metrics, status_class

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    )
)
# Request headers this proxy sets itself; a client-supplied copy never reaches Auth0.
_REPLACED = frozenset(
    (
        b"host",
        b"content-length",
        b"expect",
        b"cname-api-key",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-real-ip",
        # Every header Auth0's custom_client_ip_header can name (proxy.config.CLIENT_IP_HEADERS): the
        # custom domain may read one whatever AUTH0_CLIENT_IP_HEADER says, so a client's copy never passes.
        b"true-client-ip",
        b"cf-connecting-ip",
        b"x-azure-clientip",
    )
)
# Headers aiohttp would invent when the browser did not send them; the request must arrive unchanged.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
CHUNK = 64 * 1024


class ResponseHook(Protocol):
    """Looks at a forwarded response's head, and when it asks, at a bounded body, to add headers.

    The body is never changed. Without a hook, or when ``head`` asks for no buffering, the response
    streams exactly as before.
    """

    def head(self, status: int, headers: Headers) -> tuple[Headers, int]:
        """Headers to append, and how many body bytes to buffer for :meth:`body` (0: none)."""
        ...

    def body(self, status: int, headers: Headers, body: bytes) -> Headers:
        """Headers to append, given the whole body (called only when it fitted in the buffer)."""
        ...


class AppendHeaders:
    """A hook that appends fixed headers (a Set-Cookie) to the response, whatever it is."""

    __slots__ = ("extra",)

    def __init__(self, extra: Headers) -> None:
        self.extra = extra

    def head(self, status: int, headers: Headers) -> tuple[Headers, int]:
        return self.extra, 0

    def body(self, status: int, headers: Headers, body: bytes) -> Headers:  # pragma: no cover - never buffers
        return []


async def _read_up_to(content: aiohttp.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Up to a little over ``cap`` bytes of a body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(CHUNK)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            return b"".join(chunks), False


class BadTarget(ValueError):
    """A request target that is not origin-form (``/path?query``): never forwarded."""


def is_origin_form(raw_path: bytes | None) -> bool:
    """RFC 9112 section 3.2.1: the only target form a reverse proxy serves. The HTTP parser reduces
    absolute-form (``http://host/path``) to its path, so what is left here that does not start with
    "/" is asterisk-form (``*``, ``*@host/x``), authority-form, or something else: all refused."""
    return raw_path is not None and raw_path[:1] == b"/"


def upstream_url(origin: URL, raw_path: bytes, query: bytes) -> URL:
    """Auth0's URL for a request: scheme, host and port from configuration, path and query as they came.

    The origin string concatenated with *any* request target would let the target
    pick the host (``https://auth0.host`` + ``*@attacker.example/x`` parses with the attacker's
    host). Only a target that starts with "/" is accepted, so the configured authority is closed
    before the client's bytes begin; the parsed result is then checked to address exactly the
    configured origin before any byte is sent. (Joining the checked parts as text and parsing once
    costs a quarter of ``URL.build``'s validation on this path.)
    """
    if not is_origin_form(raw_path):
        raise BadTarget("request target is not origin-form")
    text = str(origin) + raw_path.decode("latin-1")
    url = URL(text + "?" + query.decode("latin-1") if query else text, encoded=True)
    if url.raw_host != origin.raw_host or url.port != origin.port or url.scheme != origin.scheme or url.raw_user:
        raise BadTarget("request target does not address the configured origin")
    return url


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Auth0's response headers to pass on, names lowered: without hop-by-hop headers and those its
    Connection header names. Each name is lowered once."""
    lowered = [(name.lower(), value) for name, value in raw]
    hop = HOP_BY_HOP
    for name, value in lowered:
        if name == b"connection":
            hop = hop | _connection_tokens([(name, value)])
    return [(name, value) for name, value in lowered if name not in hop]


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return frozenset(tokens)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def hop_address(entry: str) -> IPAddress | None:
    """One X-Forwarded-For entry as an address, or None when it is not one. Some balancers add the
    client's port (Azure Application Gateway: ``203.0.113.7:54321``, ``[2001:db8::7]:443``)."""
    text = entry.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: list[str], trusted: tuple[Network, ...]) -> str:
    """The end user's IP, one address: the peer, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For entry that is not itself a trusted proxy. An entry that is not an
    address ends the walk at the last trusted hop (as nginx's realip module does): what lies left of
    it was never vouched for. Empty when there is no peer address (not TCP)."""
    if not is_trusted(peer, trusted):
        return peer
    last = peer
    for hop in reversed(forwarded_for):
        ip = hop_address(hop)
        if ip is None:
            break
        last = str(ip)
        if not any(ip in net for net in trusted):
            return last
    return last


_ALWAYS_DROPPED = HOP_BY_HOP | _REPLACED


def request_headers(scope: dict[str, Any], settings: Settings) -> list[tuple[str, str]]:
    """The headers to send to Auth0 for an incoming request (see the module rules). One pass."""
    kept: Headers = []
    forwarded_for: list[str] = []
    forwarded_proto = forwarded_host = host = None
    named_hops: frozenset[bytes] = frozenset()
    for name, value in scope["headers"]:
        if b"_" in name and name.replace(b"_", b"-") in _ALWAYS_DROPPED:
            continue  # a look-alike of a controlled header (cname_api_key, x_forwarded_for, true_client_ip)
        if name not in _ALWAYS_DROPPED:
            kept.append((name, value))
        elif name == b"host":
            host = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded_for.extend(v.strip() for v in value.decode("latin-1").split(",") if v.strip())
        elif name == b"x-forwarded-proto":
            forwarded_proto = value.decode("latin-1")
        elif name == b"x-forwarded-host":
            forwarded_host = value.decode("latin-1")
        elif name == b"connection":
            named_hops |= _connection_tokens([(name, value)])
    try:
        # aiohttp writes header strings as UTF-8: decoding as UTF-8 sends the very bytes received.
        out = [(k.decode(), v.decode()) for k, v in kept if k not in named_hops]
    except UnicodeDecodeError as exc:
        raise RequestUnforwardable("a request header value is not UTF-8; not forwarded") from exc
    client = scope.get("client")
    peer = client[0] if client else ""
    trusted = is_trusted(peer, settings.trusted_proxies)
    chain = forwarded_for if trusted else []
    out.append(("Host", settings.auth0_host))
    if settings.cname_api_key:
        out.append(("cname-api-key", settings.cname_api_key))
    user_ip = client_address(peer, chain, settings.trusted_proxies)
    if user_ip:
        # One header, one address: never the chain (its left entries are whatever the client wrote).
        out.append(("X-Forwarded-For", user_ip))
        if settings.client_ip_header:
            out.append((settings.client_ip_header, user_ip))
    out.append(("X-Forwarded-Proto", (forwarded_proto if trusted and forwarded_proto else scope["scheme"])))
    if (trusted and forwarded_host) or host:
        out.append(("X-Forwarded-Host", forwarded_host if trusted and forwarded_host else host or ""))
    return out


def _translate(exc: BaseException) -> UpstreamError:
    """aiohttp's exceptions -> this package's; the message is for logs, never for the browser."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout("Auth0 did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"cannot connect to Auth0: {exc.os_error.__class__.__name__}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionResetError)) or (
        isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError)
    ):
        return UpstreamReset(f"connection to Auth0 reset: {exc.__class__.__name__}")
    return UpstreamError(f"bad response from Auth0: {exc.__class__.__name__}")


class Upstream:
    """A pooled aiohttp client for Auth0, created in the server's start-up and closed at shutdown."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._origin = URL(settings.auth0_origin)
        # Requests to Auth0 in flight: a plain count on the loop, read by the gauge at scrape time
        # (the gauge's own inc/dec take a lock twice per forward).
        self.in_flight = 0
        metrics.upstream_in_flight.set_function(lambda: self.in_flight)

    async def start(self) -> None:
        if not retry_guard_available(aiohttp.ClientSession):
            raise StartupError(
                f"aiohttp {aiohttp.__version__} has no ClientSession._retry_connection: callbacks could be "
                "sent to Auth0 twice; not starting (pin aiohttp or update proxy/upstream.py)"
            )
        s = self.settings
        timeout = aiohttp.ClientTimeout(
            total=None,
            # connect: waiting for a pool connection plus connecting; sock_connect: connecting alone
            connect=(s.pool_timeout + s.connect_timeout) or None,
            sock_connect=s.connect_timeout or None,
            sock_read=s.read_timeout or None,
        )
        for single_use in (False, True):
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.upstream_connections, keepalive_timeout=15, ttl_dns_cache=60),
                timeout=timeout,
                cookie_jar=aiohttp.DummyCookieJar(),  # never share one user's cookies with another
                auto_decompress=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            )
            if single_use:
                # aiohttp retries idempotent requests (a GET callback with an OIDC code) once on a reused
                # connection that closed; a callback's code or assertion is single-use: never retried.
                session._retry_connection = False
            self._sessions[single_use] = session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def forward(
        self,
        scope: dict[str, Any],
        body: bytes,
        query: bytes,
        send: Send,
        *,
        single_use: bool,
        hook: ResponseHook | None = None,
    ) -> int:
        """Send the request to Auth0 and stream the answer to ``send``; returns the status sent.

        ``hook`` may append headers after seeing the response head (and a bounded body it asked for).
        Raises UpstreamError when no response could be started (the caller answers 502/504).
        Errors after the response started abort the connection (the status cannot change then).
        """
        m = self.metrics
        target = upstream_url(self._origin, scope.get("raw_path") or b"", query)  # BadTarget: caller's 400
        session = self._sessions[single_use]
        control = control_of(scope)
        if control is not None and not control.arm():  # the client already left: nothing is sent
            m.upstream_errors.labels("client_gone").inc()
            return 499
        headers = request_headers(scope, self.settings)
        started = time.perf_counter()
        self.in_flight += 1
        status = 0
        try:
            try:
                response = await session.request(
                    scope["method"],
                    target,
                    headers=headers,
                    data=body if body or scope["method"] not in ("GET", "HEAD") else None,
                    allow_redirects=False,
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = _translate(exc)
                m.upstream_errors.labels(error.kind).inc()
                raise error from exc
            m.upstream_seconds.observe(time.perf_counter() - started)
            m.upstream_requests.labels(status_class(response.status)).inc()
            async with response:
                passed = response_headers(response.raw_headers)
                prefix, complete = b"", False
                if hook is not None:
                    extra, cap = hook.head(response.status, passed)
                    if cap > 0:
                        try:
                            prefix, complete = await _read_up_to(response.content, cap)
                        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                            error = _translate(exc)  # nothing sent yet: the browser gets a 502/504 page
                            m.upstream_errors.labels(error.kind).inc()
                            raise error from exc
                        if complete:
                            extra = [*extra, *hook.body(response.status, passed, prefix)]
                    if extra:
                        passed = [*passed, *extra]
                await send({"type": "http.response.start", "status": response.status, "headers": passed})
                status = response.status
                if complete:  # the whole (small) body was read for the hook: send it as the last write
                    if control is not None:
                        control.disarm()
                    await send({"type": "http.response.body", "body": prefix})
                    return status
                if prefix:
                    await send({"type": "http.response.body", "body": prefix, "more_body": True})
                content = response.content
                content.set_read_chunk_size(CHUNK)  # the buffer's limits as iter_chunked(CHUNK) sets them
                last = b""
                try:
                    while not content.at_eof():
                        chunk = await content.read(CHUNK)
                        if content.at_eof() or not chunk:
                            last = chunk  # the whole rest is here: it goes out as the last write
                            break
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    error = _translate(exc)
                    m.upstream_errors.labels("reset").inc()
                    raise UpstreamAborted(f"Auth0's answer broke off: {error}", status) from exc
                if control is not None:
                    control.disarm()  # the last write completes the response; a disconnect now changes nothing
                await send({"type": "http.response.body", "body": last})
            return status
        except asyncio.CancelledError:
            if control is None or not control.gone:
                raise  # the shutdown timeout: the protocol answers
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            m.upstream_errors.labels("client_gone").inc()
            return 499  # nginx's "client closed request"; the connection to Auth0 is closed, never reused
        finally:
            if control is not None:
                control.disarm()
            self.in_flight -= 1


def retry_guard_available(session_class: type) -> bool:
    """Whether aiohttp still has the switch that turns its automatic retry on reused connections off."""
    return "_retry_connection" in getattr(session_class, "ATTRS", ())
