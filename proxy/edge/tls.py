"""TLS on a listener, with the handshake bounded and counted from accept.

When the event loop is given the TLS context (``create_server(ssl=...)``, as uvicorn sets it up),
a client that sends three bytes of a ClientHello holds its socket for the loop's default handshake
timeout (60 s), and the HTTP protocol, which counts connections against the cap, sees the
connection only once the handshake is over: 200 such clients held 217 descriptors with the cap at 20.

Here the listener accepts plain TCP. :class:`TlsGate`, the protocol uvicorn creates for each
connection, counts it against the cap at once (past it, the connection is closed before any
handshake) and then does, synchronously, what the loop itself does for a TLS server: it puts the
loop's own ``SSLProtocol`` between the transport and a new HTTP protocol (:mod:`proxy.edge.limits`),
with the head timeout as the handshake timeout. The handshake counts as a connection until it ends;
the HTTP protocol counts it after. (``loop.start_tls`` cannot be used for this: uvloop starts
reading as soon as ``connection_made`` returns, so a ClientHello could reach the wrong protocol
before the coroutine runs.)
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from asyncio import sslproto
from typing import Any, Callable

from uvicorn.config import Config
from uvicorn.server import ServerState


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context as uvicorn makes one (TLS 1.2 and later, the default ciphers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's own TLS protocol: uvloop's for a uvloop loop (it refuses asyncio's), else asyncio's."""
    if sys.platform != "win32":
        import uvloop
        import uvloop.loop

        if isinstance(loop, uvloop.Loop):
            return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]  # not in its stubs
    return sslproto.SSLProtocol


class TlsGate(asyncio.Protocol):
    """Accepts one connection and starts its TLS; set up per listener by :func:`tls_gate`."""

    context: ssl.SSLContext
    http: Callable[..., asyncio.Protocol]  # the HTTP protocol class, called as uvicorn calls it
    handshake_timeout: float
    max_connections: int
    count: Callable[[str], None]
    handshakes: set[asyncio.Future[Any]]  # of this listener, in progress

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        handshakes = self.handshakes
        if len(self.server_state.connections) + len(handshakes) >= self.max_connections:
            self.count("connection_limit")
            transport.abort()  # no TLS yet, so no page: closed before any handshake
            return
        loop = self.loop
        http = self.http(config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=loop)
        done: asyncio.Future[Any] = loop.create_future()
        handshakes.add(done)
        done.add_done_callback(self._handshake_over)
        secure = _ssl_protocol_class(loop)(
            loop, http, self.context, done, server_side=True, ssl_handshake_timeout=self.handshake_timeout
        )
        transport.set_protocol(secure)
        secure.connection_made(transport)  # the loop starts reading into it when this returns

    def _handshake_over(self, done: asyncio.Future[Any]) -> None:
        self.handshakes.discard(done)
        if not done.cancelled() and done.exception() is not None:  # timed out, refused, or the client left
            self.count("tls_handshake")


def tls_gate(
    http: Callable[..., asyncio.Protocol],
    context: ssl.SSLContext,
    handshake_timeout: float,
    max_connections: int,
    count: Callable[[str], None],
) -> type[TlsGate]:
    """A protocol class for uvicorn's ``http`` option that does TLS, then hands over to ``http``."""
    return type(
        "TlsGate",
        (TlsGate,),
        {
            "http": staticmethod(http),
            "context": context,
            "handshake_timeout": handshake_timeout or 60.0,
            "max_connections": max_connections,
            "count": staticmethod(count),
            "handshakes": set(),
        },
    )
