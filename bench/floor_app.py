"""The floor of the Python stack: a bare ASGI app that reads the request and answers a fixed 307.

It does what the service's redirect path must do at the least (read the whole body, answer 307
to the WorkOS callback with the original query, ``Cache-Control: no-store``) and nothing else, under
uvicorn with the service's own options (uvloop, httptools, one process, access log, lifespan,
Server and Date headers off; see ``proxy/server.py``).

    python bench/floor_app.py --port 18081
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Awaitable, Callable

import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

TARGET = b"https://auth.example.test/sso/client_bench/auth0/callback"


async def floor_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the body, as the service must before deciding
        message = await receive()
        more = message.get("more_body", False)
    query = scope["query_string"]
    location = TARGET + b"?" + query if query else TARGET
    await send(
        {
            "type": "http.response.start",
            "status": 307,
            "headers": [(b"location", location), (b"cache-control", b"no-store"), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    """The service's own uvicorn options (``proxy.edge.listener.uvicorn_config``), for a fair comparison."""
    from proxy.edge.listener import uvicorn_config as service_config

    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    return service_config(app, host, port, None)


def run_like_service(
    app: Any,
    host: str,
    port: int,
    startup: Callable[[], Awaitable[None]] | None = None,
    shutdown: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """One uvloop event loop, one uvicorn server, like ``sso-proxy serve``."""
    import uvloop

    async def main() -> None:
        if startup is not None:
            await startup()
        try:
            await uvicorn.Server(uvicorn_config(app, host, port)).serve()
        finally:
            if shutdown is not None:
                await shutdown()

    uvloop.run(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18081)
    args = ap.parse_args(argv)
    run_like_service(floor_app, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
