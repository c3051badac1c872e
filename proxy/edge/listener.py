"""The uvicorn options every listener of this service runs with, in one place.

A module of its own, importing only uvicorn, so the benchmark's reference apps (bench/) can run
under exactly the same options without loading the service.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Iterator

import uvicorn


class ListenerServer(uvicorn.Server):
    """A uvicorn server whose signals are handled by :func:`serve`, not by uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(
    app: Any,
    host: str,
    port: int,
    graceful: float | None,
    *,
    http: Any = "httptools",
    keepalive: float = 5.0,
) -> uvicorn.Config:
    """``http`` is the protocol class (the service passes proxy.edge.limits' guarded protocol,
    behind proxy.edge.tls' gate when the listener serves TLS: the loop never does TLS itself, so a
    handshake is bounded and counted from accept)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http,
        ws="none",  # no upgrades are served
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        proxy_headers=False,  # X-Forwarded-For trust is upstream.py's, by configured addresses
        server_header=False,  # Auth0's own headers pass through unchanged
        date_header=False,
        timeout_keep_alive=keepalive,  # type: ignore[arg-type]  # uvicorn uses it as a float (call_later)
        timeout_graceful_shutdown=graceful,  # type: ignore[arg-type]  # uvicorn uses it as a float
    )


def bind(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket for uvicorn's ``serve(sockets=...)``.

    Bound here, before anything else starts, so that an address in use is one clear error (OSError)
    instead of uvicorn's exit from inside a running task.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
