"""The uvicorn options every listener of this service runs with, in one place.

A module of its own, importing only uvicorn, so the benchmark's reference apps (bench/) can run
under exactly the same options without loading the service.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import uvicorn


class ListenerServer(uvicorn.Server):
    """A uvicorn server whose signals are handled by :func:`serve`, not by uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def uvicorn_config(
    app: Any, host: str, port: int, graceful: float | None, tls_cert: str = "", tls_key: str = ""
) -> uvicorn.Config:
    """``tls_cert``/``tls_key`` (PEM files) serve the listener over TLS (uvicorn's ssl options)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        proxy_headers=False,  # X-Forwarded-For trust is upstream.py's, by configured addresses
        server_header=False,  # Auth0's own headers pass through unchanged
        date_header=False,
        timeout_graceful_shutdown=graceful,  # type: ignore[arg-type]  # uvicorn uses it as a float
        ssl_certfile=tls_cert or None,
        ssl_keyfile=tls_key or None,
    )
