"""Latency at a fixed request rate (what wrk2 would measure; Debian has no wrk2).

Sends ``--rate`` requests per second for ``--seconds`` on keep-alive connections (a new one is
opened only when every open one is busy, at most ``--max-conns``), and measures each request from
its *scheduled* send time to the end of its response, so a stall is counted against every request
it delays (no coordinated omission). A small raw HTTP/1.1 client on uvloop, so the client adds
little and the same for every target. Bounded: rate x seconds requests, then it stops.

    python bench/fixed_rate.py --url 'http://127.0.0.1:18090/login/callback?connection=x' \\
        --method POST --body-file saml.txt --rate 500 --seconds 20

Prints one JSON object: sent, ok, errors, p50/p90/p99/p999/max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.parse

IDLE_SECONDS = 2.0


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.perf_counter()

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status


async def run(url: str, method: str, body: bytes, rate: float, seconds: float, max_conns: int) -> dict:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "User-Agent: bench-fixed-rate"]
    if body:
        headers += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body

    idle: list[Conn] = []
    open_conns = 0
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        nonlocal open_conns, errors
        conn = idle.pop() if idle else None
        if conn is not None and scheduled - conn.last_used > IDLE_SECONDS:
            # The server may have closed it (uvicorn's keep-alive timeout is 5 s); a browser would
            # open a new one rather than count an error.
            conn.writer.close()
            open_conns -= 1
            conn = None
        if conn is None:
            if open_conns >= max_conns:
                errors += 1  # over the bound: counted, not queued without limit
                return
            open_conns += 1
            try:
                conn = Conn(*await asyncio.open_connection(host, port))
            except OSError:
                open_conns -= 1
                errors += 1
                return
        try:
            status = await conn.roundtrip(request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            open_conns -= 1
            errors += 1
            conn.writer.close()
            return
        conn.last_used = time.perf_counter()
        latencies.append(conn.last_used - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(conn)

    # Warm the pool a little so the first requests do not all pay for a connect.
    start = time.perf_counter() + 0.2
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(scheduled)))
        if len(tasks) >= 1000:
            tasks = [t for t in tasks if not t.done()]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    for conn in idle:
        conn.writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000, 3)

    return {
        "sent": total,
        "ok": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "conns": open_conns,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": round(latencies[-1] * 1000, 3) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--method", default="GET")
    ap.add_argument("--body-file")
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-conns", type=int, default=64)
    args = ap.parse_args(argv)
    parsed = urllib.parse.urlsplit(args.url)
    if parsed.hostname not in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        ap.error("loopback only")
    body = open(args.body_file, "rb").read() if args.body_file else b""
    try:
        import uvloop

        result = uvloop.run(run(args.url, args.method, body, args.rate, args.seconds, args.max_conns))
    except ImportError:
        result = asyncio.run(run(args.url, args.method, body, args.rate, args.seconds, args.max_conns))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
