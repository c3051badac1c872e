"""Raw bytes on loopback for the hostile-traffic suite (tests/test_hostile.py, bench/hostile.py).

``RawUpstream`` is Auth0 as bytes on the wire: an asyncio server that records every request it
receives byte for byte and answers, hangs, breaks off mid-body or closes reused keep-alive
connections, as told. ``exchange`` and ``Raw`` are clients that send exactly the bytes given.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field

OK_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n"


@dataclass
class RawUpstream:
    """``mode``: answer | close_reused (answers a connection's first request only; reads the next one
    and closes without answering) | hang (never answers) | break (sends headers and part of the body,
    then closes) | drip (sends the head and the first half of ``response``'s body, the rest once
    ``released`` is set)."""

    mode: str = "answer"
    response: bytes = OK_RESPONSE
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RawUpstream:
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            async with self._server:
                try:
                    await self._server.serve_forever()
                except asyncio.CancelledError:
                    pass

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("raw upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            for task in asyncio.all_tasks(self._loop):
                self._loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(5)

    def wait_requests(self, count: int, within: float = 5) -> list[bytes]:
        deadline = time.monotonic() + within
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # stopped: ends quietly (Python 3.11's stream callback logs a cancelled handler task)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            self.requests.append(head + body)
            served += 1
            if self.mode == "hang" or b"/hang" in head.split(b"\r\n", 1)[0]:
                if not await reader.read(1):
                    self.closed_by_client += 1
                return
            if self.mode == "close_reused" and served > 1:
                return  # the request arrived; the connection closes without an answer
            if self.mode == "break":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 10)
                await writer.drain()
                return
            if self.mode == "drip":
                split = self.response.index(b"\r\n\r\n") + 4
                split += (len(self.response) - split) // 2
                writer.write(self.response[:split])
                await writer.drain()
                while not self.released.is_set():
                    await asyncio.sleep(0.01)
                writer.write(self.response[split:])
                await writer.drain()
                if b"content-length:" in self.response[:split].lower() or b"chunked" in self.response[:split]:
                    continue
                return  # a body delimited by the close
            writer.write(self.response)
            await writer.drain()


def exchange(port: int, data: bytes, timeout: float = 10, pause: float = 0) -> bytes:
    """Send ``data`` and read until the server closes (or ``timeout``); the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if pause:
            time.sleep(pause)
        return read_all(sock, timeout)


def read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """One response with a Content-Length, read without waiting for the connection to close."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    length = int(header_of(data, b"content-length") or 0)
    head_end = data.index(b"\r\n\r\n") + 4
    while len(data) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def status_of(answer: bytes) -> int:
    """The status code of a raw answer; 0 when there is none (closed without an answer)."""
    if not answer.startswith(b"HTTP/1.1 "):
        return 0
    return int(answer[9:12])


def header_of(answer: bytes, name: bytes) -> bytes | None:
    head = answer.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def get(path: bytes, *headers: bytes, host: bytes = b"login.example.com", close: bool = True) -> bytes:
    lines = [b"GET " + path + b" HTTP/1.1", b"host: " + host, *headers]
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def post(path: bytes, body: bytes, *headers: bytes, close: bool = True) -> bytes:
    lines = [
        b"POST " + path + b" HTTP/1.1",
        b"host: login.example.com",
        b"content-type: application/x-www-form-urlencoded",
        b"content-length: " + str(len(body)).encode(),
        *headers,
    ]
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@dataclass
class Probe:
    """GET ``path`` every 10 ms and time each answer: ``worst`` over the whole run, ``window`` since
    the last :meth:`take`. An answer other than ``status`` (or none) is a failure. The benchmarks'
    and the tests' probe of event-loop stalls (``/healthz`` on the operations listener, or a
    callback on the public one)."""

    port: int
    path: str = "/healthz"
    status: int = 200
    worst: float = 0.0
    window: float = 0.0
    probes: int = 0
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                ok = response.status == self.status
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            took = time.perf_counter() - started
            self.worst = max(self.worst, took)
            self.window = max(self.window, took)
            self.probes += 1
            self.failures += not ok
            time.sleep(0.01)
        conn.close()

    def take(self) -> float:
        """The slowest answer since the last call, and a new window."""
        worst, self.window = self.window, 0.0
        return worst
