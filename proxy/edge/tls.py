"""TLS on a listener, with the handshake bounded and counted from accept.

When the event loop does TLS itself (``create_server(ssl=...)``, as uvicorn sets it up), a client
that sends three bytes of a ClientHello holds its socket for the loop's default handshake timeout
(60 s), and the HTTP protocol, which counts connections against the cap, exists only after the
handshake: 200 such clients held 217 descriptors with the cap at 20.

Here the listener accepts plain TCP, and :class:`TlsGate`, the protocol uvicorn creates for each
connection, counts the connection against the cap at once (a connection past it is closed before
any handshake), pauses reading, and runs the handshake with ``loop.start_tls`` within the head
timeout. Then it hands the TLS transport to the HTTP protocol (:mod:`proxy.edge.limits`), with any
bytes that arrived with the handshake's last flight, and leaves the count to it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Callable

from uvicorn.config import Config
from uvicorn.server import ServerState


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context as uvicorn makes one (TLS 1.2 and later, the default ciphers)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class TlsGate(asyncio.Protocol):
    """One accepted connection until its TLS handshake completes; set up by :func:`tls_gate`."""

    context: ssl.SSLContext
    http: Callable[..., asyncio.Protocol]  # the HTTP protocol class, called as uvicorn calls it
    handshake_timeout: float
    max_connections: int
    count: Callable[[str], None]

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
        self.raw: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.received: list[bytes] = []  # application data that came with the handshake's end
        self.eof = False
        self.lost: Exception | None = None
        self.gone = False

    # the plain TCP connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        connections = self.server_state.connections
        if len(connections) >= self.max_connections:
            self.count("connection_limit")
            transport.abort()  # no TLS yet, so no page: closed before any handshake
            return
        # Counted from accept; uvicorn's shutdown closes it like any connection (shutdown below).
        connections.add(self)  # type: ignore[arg-type]
        self.raw = transport
        transport.pause_reading()  # nothing is read until start_tls owns the transport
        self.task = self.loop.create_task(self._handshake())

    async def _handshake(self) -> None:
        raw = self.raw
        assert raw is not None
        try:
            secure = await self.loop.start_tls(
                raw, self, self.context, server_side=True, ssl_handshake_timeout=self.handshake_timeout
            )
        except (OSError, RuntimeError):  # ssl.SSLError, TimeoutError and resets are OSErrors
            self.server_state.connections.discard(self)
            self.count("tls_handshake")
            raw.abort()
            return
        finally:
            self.task = None
        self.server_state.connections.discard(self)
        if secure is None or self.gone or secure.is_closing():
            return
        http = self.http(config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop)
        secure.set_protocol(http)
        http.connection_made(secure)
        for data in self.received:
            if secure.is_closing():
                break
            http.data_received(data)
        self.received.clear()
        if self.lost is not None or self.eof:
            http.connection_lost(self.lost)

    def shutdown(self) -> None:
        """uvicorn's shutdown: a connection still shaking hands has nothing in flight."""
        self.gone = True
        if self.task is not None:
            self.task.cancel()
        if self.raw is not None:
            self.raw.abort()
        self.server_state.connections.discard(self)

    # the TLS connection until the HTTP protocol takes it (start_tls's app protocol)

    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.lost = exc
        self.server_state.connections.discard(self)


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
        },
    )
