"""What the ASGI layer costs under the floor: the floor's 307 answered by a bare httptools protocol.

``bench/floor_app.py`` is the floor of ``make bench``: a bare ASGI app under uvicorn. This feeds the
same request bytes (``bench/stack_cost.py``'s, wrk's) to it and to a protocol that parses with
httptools and writes the same 307 in ``on_message_complete``, with no ASGI scope, task or messages,
and prints µs of CPU per request for each (best of alternating rounds, in-memory transport, uvloop).
The difference is what a callback path answered in the protocol, outside ASGI, would not pay.

    python bench/raw_floor.py [--number N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import httptools  # noqa: E402
import run as bench  # noqa: E402
import uvloop  # noqa: E402
from floor_app import TARGET, floor_app  # noqa: E402
from protocol_cost import Transport, timed  # noqa: E402
from stack_cost import connection, protocols, request_bytes  # noqa: E402


class RawFloor(asyncio.Protocol):
    """The floor's answer (read the request, 307 to the target with the query, no-store), no ASGI."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        query = httptools.parse_url(self.url).query
        location = TARGET + b"?" + query if query else TARGET
        self.transport.write(
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: "
            + location
            + b"\r\ncache-control: no-store\r\ncontent-length: 0\r\n\r\n"
        )


async def main_async(args: argparse.Namespace) -> None:
    files = bench.write_inputs(tempfile.mkdtemp(prefix="sso-raw-floor-"))
    plain, _ = protocols()
    for key in ("saml_query", "oidc_get"):
        w = next(x for x in bench.WORKLOADS if x.key == key)
        request = request_bytes(w, files)
        floor, _ = connection(plain, floor_app)
        raw = RawFloor()
        raw.connection_made(Transport())
        best_f = best_r = float("inf")
        for _ in range(args.rounds):
            best_f = min(best_f, await timed(floor, request, args.number))
            best_r = min(best_r, await timed(raw, request, args.number))
        share = 1 - best_r / best_f
        print(f"{key:<11} ASGI floor {best_f:5.1f} µs  raw protocol {best_r:5.1f} µs  ASGI's share {share:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=20000, help="requests per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    args = parser.parse_args()
    uvloop.install()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
