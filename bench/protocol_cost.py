"""What the guarded protocol (proxy/edge/limits.py) adds per request over uvicorn's httptools protocol.

Feeds the same keep-alive request (the OIDC GET callback, or a 10 KB SAML POST) through each
protocol class with an in-memory transport and an app that answers 307, in one event loop, and
prints µs of CPU per request. No network, no wrk: what it shows is the protocol's own Python.

    python bench/protocol_cost.py [--number N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from proxy.app import error_page
from proxy.edge.limits import Guard, Limits, guarded_protocol

GET = (
    b"GET /login/callback?code=Q2vbHs7xYm1uTnKe0PqZ&state=g6Fo2SBLb3NqX0FhYkNkRWZH HTTP/1.1\r\n"
    b"host: login.example.com\r\nuser-agent: Mozilla/5.0 (bench)\r\naccept: */*\r\n\r\n"
)
BODY = b"SAMLResponse=" + b"A" * 10_000
POST = (
    b"POST /login/callback?connection=acme-okta HTTP/1.1\r\nhost: login.example.com\r\n"
    b"content-type: application/x-www-form-urlencoded\r\ncontent-length: %d\r\n\r\n" % len(BODY)
) + BODY


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 307, "headers": [(b"location", b"https://w/x")]})
    await send({"type": "http.response.body", "body": b""})


async def timed(protocol: Any, request: bytes, number: int) -> float:
    """µs of CPU per request fed to ``protocol`` (after a warm-up), each answered in the loop's next turn."""
    for _ in range(200):  # warm-up
        protocol.data_received(request)
        await asyncio.sleep(0)
    gc.collect()
    started = time.process_time()
    for _ in range(number):
        protocol.data_received(request)
        await asyncio.sleep(0)  # the request task runs and answers
    return (time.process_time() - started) / number * 1e6


async def per_request(protocol_class: Any, request: bytes, number: int) -> float:
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None, proxy_headers=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Transport())
    return await timed(protocol, request, number)


async def main(number: int) -> None:
    guard = Guard(Limits(), error_page, lambda _r: None, lambda: False, logging.getLogger("bench"))
    guarded = guarded_protocol(guard)
    for name, request in (("OIDC GET", GET), ("SAML POST 10 KB", POST)):
        base = mine = float("inf")
        for _ in range(5):  # alternating, the best of each: the machine's noise only ever adds
            base = min(base, await per_request(HttpToolsProtocol, request, number))
            mine = min(mine, await per_request(guarded, request, number))
        print(f"{name:16} httptools {base:6.1f} µs  guarded {mine:6.1f} µs  (+{mine - base:.1f} µs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().number))
