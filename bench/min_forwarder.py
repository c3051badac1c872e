"""The reference forwarder: the least a Python reverse proxy does, with a choice of HTTP client.

A bare ASGI app that reads the request body, sends the request to the upstream with the same
method, path, query and headers (hop-by-hop ones dropped, Host replaced), never follows redirects,
never decompresses, and streams the response back in 64 KiB chunks. It runs under uvicorn with the
service's options (``floor_app.run_like_service``), so the service's forward path can be measured
against it, and the clients against each other (issue 2: choose the forwarding client with numbers).

    python bench/min_forwarder.py --client aiohttp --upstream http://127.0.0.1:18090 --port 18082
    python bench/min_forwarder.py --client httpx   --upstream http://127.0.0.1:18090 --port 18083
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from floor_app import Receive, Send, run_like_service

HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    )
)
CHUNK = 64 * 1024
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


async def read_body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def out_headers(scope: dict[str, Any], host: str) -> list[tuple[str, str]]:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in HOP_BY_HOP]
    headers.append(("Host", host))
    return headers


def aiohttp_app(upstream: str) -> tuple[App, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    import aiohttp
    from yarl import URL

    host = upstream.split("://", 1)[1]
    state: dict[str, aiohttp.ClientSession] = {}

    async def startup() -> None:
        # The service's client settings (proxy/upstream.py), minus its cookie and retry rules.
        state["s"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=15),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def shutdown() -> None:
        await state["s"].close()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        url = upstream + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        async with state["s"].request(
            scope["method"],
            URL(url, encoded=True),
            headers=out_headers(scope, host),
            data=body or None,
            allow_redirects=False,
        ) as resp:
            headers = [(k, v) for k, v in resp.raw_headers if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            async for chunk in resp.content.iter_chunked(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app, startup, shutdown


def httpx_app(upstream: str) -> tuple[App, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    import httpx

    host = upstream.split("://", 1)[1]
    state: dict[str, httpx.AsyncClient] = {}

    async def startup() -> None:
        # httpx's default transport (httpcore), pool sized like the aiohttp one.
        state["c"] = httpx.AsyncClient(
            base_url=upstream,
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
            follow_redirects=False,
            timeout=30,
        )

    async def shutdown() -> None:
        await state["c"].aclose()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        client = state["c"]
        url = httpx.URL(upstream + scope["raw_path"].decode("latin-1"), query=scope["query_string"] or None)
        request = client.build_request(scope["method"], url, headers=out_headers(scope, host), content=body)
        resp = await client.send(request, stream=True)
        try:
            headers = [(k, v) for k, v in resp.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": resp.status_code, "headers": headers})
            async for chunk in resp.aiter_raw(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await resp.aclose()

    return app, startup, shutdown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    ap.add_argument("--upstream", required=True, help="http://host:port, no path")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18082)
    args = ap.parse_args(argv)
    make = aiohttp_app if args.client == "aiohttp" else httpx_app
    app, startup, shutdown = make(args.upstream.rstrip("/"))
    run_like_service(app, args.host, args.port, startup, shutdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
