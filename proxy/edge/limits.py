"""What one client may cost the service: request limits, timeouts and the connection cap, in one place.

uvicorn's httptools protocol has no bound on the request head, no head or body timeout and no
connection cap that refuses before a head arrives. This module adds
them in a subclass of that protocol, so every check happens before the app runs, and keeps the
app's request path free of them:

- **head**: request line + headers at most ``max_head_bytes`` (431 past it; default 32 KiB, nginx's
  ``large_client_header_buffers 4 8k``, which is what sits in front of most deployments, so nothing
  nginx accepts is refused here); a complete head within ``head_timeout`` of the connection, or of
  the first byte after the previous response, whatever that byte is (408: a bare CRLF, which the
  parser skips without beginning a message, starts the clock like any other byte and never stops
  it); exactly one valid ``Host`` in HTTP/1.1 (RFC 9112 section 3.2: else 400);
- **body**: progress at least every ``body_timeout`` and the whole body within ``body_deadline`` of
  its head (408 either way; the app sees a disconnect and forwards nothing); bytes buffered across
  all requests at most ``body_budget_bytes`` (:class:`BodyBudget`, 503 with ``Retry-After`` past it),
  each body at most ``max_body_bytes`` (413);
- **trailers**: the fields after a chunked body's last chunk (RFC 9112 section 7.1.2) are dropped,
  never merged into the request's headers (so never forwarded), and at most ``max_head_bytes`` of
  them are read (431 past it);
- **idle**: keep-alive connections closed after ``keepalive_timeout``; at most ``max_connections``
  per listener (a new one past it gets a 503 and is closed at once, so descriptors never run out);
- **lifecycle**: while draining, every response carries ``Connection: close``; a request still
  running when the shutdown timeout cancels it gets the service's own 503 page and a log line,
  not uvicorn's bare 500; a client that disconnects cancels its request (:class:`RequestControl`).

Memory bound per connection: a head, or a trailer section, buffers at most ``max_head_bytes`` plus
one socket read.
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
import re
import resource
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from proxy.logs import log_event

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Page = Callable[[int], tuple[Headers, bytes]]

EXTENSION = "sso_proxy"  # scope["extensions"][EXTENSION] is the request's RequestControl
# RFC 3986 section 3.2.2 host (reg-name, IPv4, IP-literal) with an optional port; no user-info, no path.
_HOST = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.vV]+\])(?::[0-9]{0,5})?")
_REQUEST_LINE_OVERHEAD = len(b"GET  HTTP/1.1\r\n")


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one listener (seconds; 0 turns a timeout off)."""

    max_head_bytes: int = 32768
    head_timeout: float = 10.0
    body_timeout: float = 10.0  # between two reads of a body
    body_deadline: float = 30.0  # for the whole body, from the end of its head
    keepalive_timeout: float = 5.0
    max_connections: int = 1000


def head_problem(
    url: bytes, headers: Headers, http_version: str, max_head_bytes: int, received: int = -1
) -> int | None:
    """The status refusing a complete request head, or None when it may be served. Linear, pure.

    ``received``: bytes read since the head began, an upper bound of its size (it may include body
    bytes read with it); at or under the limit the exact size need not be computed.
    """
    if received < 0 or received > max_head_bytes:
        size = len(url) + _REQUEST_LINE_OVERHEAD + 4 * len(headers) + sum(len(n) + len(v) for n, v in headers)
        if size > max_head_bytes:
            return 431
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) != 1:
        return 400 if hosts or http_version == "1.1" else None
    host = hosts[0]
    if len(host) > 262 or not _HOST.fullmatch(host):
        return 400
    return None


class BodyBudget:
    """Request body bytes buffered across all requests of the process; loop-only, no lock."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class BodyTooLarge(Exception):
    """The body is larger than ``max_body_bytes`` (413)."""


class OverBudget(Exception):
    """Buffering this body would pass the process's body budget (503 with Retry-After)."""


class ClientGone(Exception):
    """The client disconnected before its body was complete: nothing may be forwarded."""


async def read_body(receive: Receive, declared: int, max_bytes: int, budget: BodyBudget) -> bytes:
    """The whole request body, its size taken from ``budget`` (the caller gives ``len(body)`` back).

    ``declared`` is the Content-Length (-1 when absent), checked against ``max_bytes`` before any
    byte is read. The budget is taken as bytes arrive, not by the declared length, so clients that
    declare large bodies and send nothing hold no budget (they are cut by the body timeout). On any
    exception nothing stays taken.
    """
    if declared > max_bytes:
        raise BodyTooLarge
    taken = 0
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # A truncated body must not reach Auth0 as if it were the whole request.
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge
                if not budget.take(len(chunk)):
                    raise OverBudget
                taken = size
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except BaseException:
        budget.give(taken)
        raise
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RequestControl:
    """Per request, between the protocol and the app: cancellation when the client goes, and abort.

    ``arm()`` makes the current task cancellable by the client's disconnect (upstream.py arms the
    exchange with Auth0, so a request whose client left never waits for, nor takes, a connection to
    Auth0); ``abort()`` ends a response that cannot be completed by closing the connection, without
    uvicorn's traceback.
    """

    __slots__ = ("_id", "cycle", "gone", "headers", "task")

    def __init__(self, headers: Headers) -> None:
        self.headers = headers  # not the scope: the scope holds this object, and a cycle would wait for the GC
        self.cycle: RequestResponseCycle | None = None
        self.task: asyncio.Task[Any] | None = None
        self.gone = False
        self._id: str | None = None

    @property
    def request_id(self) -> str:
        """The client's ``X-Request-Id`` (up to 128 bytes), else a new one; the same for the whole request."""
        if self._id is None:
            self._id = _client_request_id(self.headers) or new_request_id()
        return self._id

    def arm(self) -> bool:
        """Cancel the current task when the client disconnects; False if it already has."""
        if self.gone:
            return False
        self.task = asyncio.current_task()
        return True

    def disarm(self) -> None:
        self.task = None

    def client_gone(self) -> None:
        self.gone = True
        task, self.task = self.task, None
        if task is not None:
            task.cancel("client disconnected")

    def abort(self) -> None:
        """Close the connection mid-response: the client sees a truncated answer, never a complete one."""
        cycle = self.cycle
        if cycle is not None:
            cycle.keep_alive = False
            cycle.disconnected = True
            cycle.transport.close()


def control_of(scope: Scope) -> RequestControl | None:
    extensions = scope.get("extensions")
    return extensions.get(EXTENSION) if extensions else None


def new_request_id() -> str:
    """32 random hex digits, like a UUID4's hex but without building one (uuid.UUID's Python
    constructor cost 3 µs of every logged request)."""
    return os.urandom(16).hex()


def _client_request_id(headers: Headers) -> str | None:
    for name, value in headers:
        if name == b"x-request-id" and 0 < len(value) <= 128:
            return str(value.decode("latin-1"))
    return None


def request_id(scope: Scope) -> str:
    """The request's id for logs: one per request when served by :class:`GuardedProtocol`."""
    control = control_of(scope)
    if control is not None:
        return control.request_id
    return _client_request_id(scope["headers"]) or new_request_id()


@dataclass(frozen=True, slots=True)
class Guard:
    """What a guarded listener needs from the service."""

    limits: Limits
    page: Page  # the service's error page for a status
    count: Callable[[str], None]  # counts a refusal by reason
    draining: Callable[[], bool]
    logger: logging.Logger


def _raw_response(status: int, page: Page) -> bytes:
    """A whole response written straight to the transport (before or instead of the app)."""
    headers, body = page(status)
    phrase = http.HTTPStatus(status).phrase.encode()
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
    lines += [name + b": " + value + b"\r\n" for name, value in headers if name != b"connection"]
    lines.append(b"connection: close\r\n\r\n")
    return b"".join(lines) + body


_REASONS = {400: "bad_head", 408: "head_timeout", 431: "head_too_large"}


class _TrailerSink(list[tuple[bytes, bytes]]):
    """``self.headers`` once a head is complete: uvicorn's ``on_header`` appends the trailer fields
    of a chunked body there, and they are dropped (RFC 9112 section 7.1.2 lets a recipient discard
    them). Holds nothing, so one instance serves every connection; swapping the list costs the
    request path nothing, where a check in ``on_header`` would cost a call per header."""

    __slots__ = ()

    def append(self, item: tuple[bytes, bytes]) -> None:
        pass


_DROP_TRAILERS = _TrailerSink()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with this module's limits; ``guard`` is set by :func:`guarded_protocol`."""

    guard: Guard

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True  # waiting for, or reading, a request head (its bytes are counted)
        self._begun = False  # a head has begun and is not complete
        self._in_body = False  # a head is complete, its body is not
        self._head_bytes = 0
        self._trailer_bytes = -1  # counting from the last chunk's size line (-1: not in trailers)
        self._body_deadline = 0.0  # loop time the body must be complete by (0: not yet armed)
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._reject_status = 0
        self._running: RequestControl | None = None

    # connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.guard.limits.max_connections:
            # Refused at once: one descriptor for a moment, never one per waiting client.
            self._refused = True
            self.transport = transport
            self.guard.count("connection_limit")
            transport.write(_raw_response(503, self.guard.page))
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.guard.limits.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        running, self._running = self._running, None
        if running is not None and running.cycle is not None and not running.cycle.response_complete:
            running.client_gone()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        elif self._trailer_bytes >= 0:
            self._trailer_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # this service serves no upgrades; the request was answered as plain HTTP
        except httptools.HttpParserError:
            self._reject(self._reject_status or 400)
            return
        # Timers only for requests that span socket reads: a request that arrives whole costs none.
        if self._begun:
            if self._head_bytes > self.guard.limits.max_head_bytes:
                self._reject(431)  # an unfinished head past the limit: buffered no further
            elif self._timer is None:
                self._arm(self.guard.limits.head_timeout, self._head_timed_out)  # from its first read
        elif self._in_body:
            if self._trailer_bytes > self.guard.limits.max_head_bytes:
                self._cut(431, "trailers_too_large")
            else:
                self._arm_body()
        elif self._timer is None and (self.cycle is None or self.cycle.response_complete):
            # Bytes that begin no request (a bare CRLF, which the parser skips) cancelled the
            # keep-alive wait above: the head clock starts with them, so the connection is still
            # closed if no request follows.
            self._arm(self.guard.limits.head_timeout, self._head_timed_out)

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._begun = True
        # A head timer already running (from the connection's start or from bytes before this
        # message) keeps its deadline: a head is due within head_timeout of those, not of this.
        scope = cast(Scope, self.scope)
        scope["extensions"] = {EXTENSION: RequestControl(self.headers)}

    def on_headers_complete(self) -> None:
        received, self._head_bytes = self._head_bytes, 0
        self._in_head = self._begun = False
        self._cancel_timer()
        problem = head_problem(
            self.url, self.headers, self.parser.get_http_version(), self.guard.limits.max_head_bytes, received
        )
        if problem is not None:
            self._reject_status = problem
            raise _Refused  # stops the parser; data_received answers
        super().on_headers_complete()
        self.headers = _DROP_TRAILERS  # the scope keeps the head's list; see _TrailerSink
        if self.guard.draining():
            self.cycle.keep_alive = False  # uvicorn then sends Connection: close and closes after the response
        self._in_body = True

    def on_chunk_header(self) -> None:
        # Called for every chunk's size line; only the last chunk (size 0) has no body after it.
        # Until body bytes arrive, what follows is counted as trailer (see data_received).
        self._trailer_bytes = 0

    def on_body(self, body: bytes) -> None:
        self._trailer_bytes = -1
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_timer()
        super().on_message_complete()
        self._in_body = False
        self._in_head = True
        self._head_bytes = 0
        self._trailer_bytes = -1
        self._body_deadline = 0.0

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        control = control_of(cycle.scope)  # type: ignore[arg-type]
        if control is None:  # uvicorn's own 503 app; not used by this service
            super()._start_asgi_task(cycle, app)
            return
        control.cycle = cycle
        self._running = control
        super()._start_asgi_task(cycle, self._guarded(app, control))  # type: ignore[arg-type]

    def _guarded(self, app: App, control: RequestControl) -> App:
        guard = self.guard

        async def run(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await app(scope, receive, send)
            except asyncio.CancelledError:
                # uvicorn cancels the requests still running at the end of the shutdown timeout.
                cycle = control.cycle
                assert cycle is not None
                started = cycle.response_started
                if cycle.disconnected:
                    return
                if started:
                    control.abort()
                else:
                    cycle.keep_alive = False
                    headers, body = guard.page(503)
                    await send({"type": "http.response.start", "status": 503, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                log_event(
                    guard.logger,
                    logging.WARNING,
                    "request cut at shutdown",
                    request_id=control.request_id,
                    method=scope["method"],
                    path=scope["path"],
                    response_started=started,
                )
            finally:
                control.cycle = None  # the cycle holds the scope, which holds this control: no reference cycle

        return run

    # refusals and timers

    def _reject(self, status: int) -> None:
        self._cancel_timer()
        self.guard.count(_REASONS.get(status, str(status)))
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_raw_response(status, self.guard.page))
        self.transport.close()

    def _arm(self, seconds: float, handler: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds > 0:
            self._timer = self.loop.call_later(seconds, handler)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self._reject(408)

    def _arm_body(self) -> None:
        """The body's wait after a read: ``body_timeout`` of no progress, never past its deadline."""
        limits = self.guard.limits
        wait = limits.body_timeout
        if limits.body_deadline > 0:
            now = self.loop.time()
            if not self._body_deadline:
                self._body_deadline = now + limits.body_deadline
            left = self._body_deadline - now
            wait = min(wait, left) if wait > 0 else left
            if wait <= 0:
                self._body_timed_out()
                return
        self._arm(wait, self._body_timed_out)

    def _body_timed_out(self) -> None:
        self._timer = None
        self._cut(408, "body_timeout")

    def _cut(self, status: int, reason: str) -> None:
        """End a request whose body cannot be completed: the status when no response has started,
        and the app's ``receive()`` returns ``http.disconnect``, so nothing is forwarded."""
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        self._cancel_timer()
        self.guard.count(reason)
        if not cycle.response_started:
            self.transport.write(_raw_response(status, self.guard.page))
        cycle.disconnected = True  # nothing else is written
        cycle.message_event.set()
        self.transport.close()


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a refused head."""


def guarded_protocol(guard: Guard) -> type[GuardedProtocol]:
    """A protocol class for uvicorn's ``http`` option, bound to ``guard``."""
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})


def ensure_descriptors(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``needed`` (up to the hard limit); returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # pragma: no cover - platform refused; the caller warns
            pass
    return soft, hard
