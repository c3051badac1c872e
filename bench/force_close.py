"""What a fresh connection per callback would cost: aiohttp's public ``force_close`` against keep-alive.

``force_close=True`` on the callbacks' connector would give the single-use guarantee without the
private ``_retry_connection`` switch (no reused connection, so nothing to retry). This measures its
price on loopback, plain HTTP (no TLS handshake, which real Auth0 would add per callback): 8 workers
POST a 9 KB callback to a raw-socket server (tests/hostile_kit.py) in the same process.

    python bench/force_close.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp

from tests.hostile_kit import RawUpstream

BODY = b"SAMLResponse=" + b"A" * 9000


async def rate(force_close: bool, requests: int, workers: int = 8) -> float:
    upstream = RawUpstream().start()
    connector = aiohttp.TCPConnector(force_close=force_close, limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def work(count: int) -> None:
            for _ in range(count):
                async with session.post(upstream.origin + "/login/callback", data=BODY) as response:
                    await response.read()
                upstream.requests.clear()

        await work(50)  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(work(requests // workers) for _ in range(workers)))
        seconds = time.perf_counter() - started
    upstream.stop()
    return requests / seconds


async def main(requests: int) -> None:
    for _ in range(2):
        for force_close in (False, True):
            label = "force_close=True " if force_close else "keep-alive       "
            print(f"{label} {await rate(force_close, requests):6.0f} req/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
