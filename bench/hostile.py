"""Hostile traffic against the real service on loopback, with figures (``make hostile``).

Starts ``python -m proxy serve`` with its default limits in front of a raw-socket Auth0
(tests/hostile_kit.py) and a second raw server playing an attacker's host, runs each attack
(bounded in count and time, loopback only), and prints a table: what was tried, what the service
answered, and what reached Auth0 or the attacker where nothing may. Meanwhile a probe asks the
operations listener's /healthz every 10 ms (the longest answer is the worst event-loop stall seen),
and the proxy's peak RSS is read from /proc (VmHWM). Total run time about a minute.

    python bench/hostile.py [--json FILE]
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tests.hostile_kit import Probe, RawUpstream, get, post, status_of  # noqa: E402

ROUTES = """version: 1
defaults: {unknown: workos, mode: normal}
connections:
  globex-adfs:
    protocol: saml
    state: legacy
    audiences: [urn:auth0:globex-prod:globex-adfs]
  umbrella-google:
    protocol: oidc
    state: legacy
    client_ids: [umbrella-google-client]
"""
LEGACY = b"/login/callback?connection=globex-adfs"
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Row:
    attack: str
    tried: int
    answers: collections.Counter[int]
    must_not_forward: bool
    forwarded: int  # requests of this attack that reached Auth0 or the attacker
    seconds: float
    stall_ms: float  # the slowest /healthz answer while this attack ran
    note: str = ""


def answers_of(socks: list[socket.socket], timeout: float) -> collections.Counter[int]:
    """Read every socket until the server closes it (or ``timeout``); count the statuses (0: none)."""
    received = {sock: b"" for sock in socks}
    open_ = set(socks)
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while open_ and time.monotonic() < deadline:
            for key, _ in selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    received[sock] += chunk
                else:
                    selector.unregister(sock)
                    open_.discard(sock)
    for sock in socks:
        sock.close()
    return collections.Counter(status_of(data) for data in received.values())


def keep_sending(
    socks: list[socket.socket], data: bytes, every: float, within: float
) -> tuple[collections.Counter[int], float]:
    """Send ``data`` to every socket every ``every`` seconds until the server closes it (or
    ``within``); the last status each got (0: none; -1: still open at the end) and the longest time
    a socket was held."""
    last = {sock: 0 for sock in socks}
    open_ = set(socks)
    started = time.monotonic()
    held = 0.0
    for sock in socks:
        sock.settimeout(0.001)
    while open_ and time.monotonic() - started < within:
        for sock in list(open_):
            try:
                sock.sendall(data)
                chunk = sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                chunk = b""
            if chunk:
                at = chunk.rfind(b"HTTP/1.1 ")
                if at >= 0:
                    last[sock] = status_of(chunk[at:])
                continue
            open_.discard(sock)
            held = max(held, time.monotonic() - started)
        time.sleep(every)
    for sock in open_:
        last[sock] = -1
        held = time.monotonic() - started
    for sock in socks:
        sock.close()
    return collections.Counter(last.values()), held


def timed_post(port: int, body: bytes, *headers: bytes, path: bytes = b"/login/callback") -> float:
    """Seconds from sending a whole POST to ``path`` to its answer's last byte."""
    request = post(path, body, *headers)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(request)
        while sock.recv(65536):
            pass
        return time.perf_counter() - started


def send_each(port: int, payloads: list[bytes], *, hold: float = 0.0) -> list[socket.socket]:
    socks = []
    for payload in payloads:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            sock.sendall(payload)
        except OSError:
            pass  # refused mid-send: the answer (if any) is still read
        socks.append(sock)
    if hold:
        time.sleep(hold)
    return socks


class Run:
    def __init__(self, auth0: RawUpstream | None = None, **settings: str) -> None:
        """The proxy with its default limits, or with ``settings`` (SSO_PROXY_*) over them."""
        self.auth0 = auth0 or RawUpstream().start()
        self.attacker = RawUpstream().start()
        self.port, self.admin = free_port(), free_port()
        self.tmp = tempfile.TemporaryDirectory()
        routes = os.path.join(self.tmp.name, "routes.yaml")
        self.routes = routes
        with open(routes, "w") as f:
            f.write(ROUTES)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_", "WORKOS_"))}
        env.update(
            WORKOS_CUSTOM_DOMAIN="workos.invalid",
            WORKOS_CLIENT_ID="client_hostile",
            AUTH0_FALLBACK_ORIGIN=self.auth0.origin,
            AUTH0_CNAME_API_KEY="hostile-cname-key",
            SSO_PROXY_RELOAD_INTERVAL="0",
            SSO_PROXY_DRAIN_SECONDS="0",
            SSO_PROXY_LOG_LEVEL="warning",
        )
        env.update(settings)
        command = [sys.executable, "-m", "proxy", "serve", "--routes", routes, "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--admin-port", str(self.admin)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        threading.Thread(target=self._read_log, daemon=True).start()
        self._wait_ready()
        self.probe = Probe(self.admin)
        threading.Thread(target=self.probe.run, daemon=True).start()
        self.rows: list[Row] = []

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=1)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("proxy did not become ready:\n" + "\n".join(self.log))

    def connections_served(self) -> int:
        """How many connections the map in force has (GET /routes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        conn.request("GET", "/routes")
        return sum(json.loads(conn.getresponse().read())["connections_per_state"].values())

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the proxy's /metrics (0 when absent)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
            if not want and line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def rss(self, key: str = "VmHWM") -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def attack(
        self, name: str, action: Callable[[], collections.Counter[int]], *, must_not_forward: bool, note: str = ""
    ) -> None:
        before = len(self.auth0.requests) + len(self.attacker.requests)
        self.probe.window = 0.0
        started = time.monotonic()
        answers = action()
        seconds = time.monotonic() - started
        time.sleep(0.2)
        forwarded = len(self.auth0.requests) + len(self.attacker.requests) - before
        tried = sum(answers.values())
        stall = self.probe.window * 1000
        self.rows.append(Row(name, tried, answers, must_not_forward, forwarded, seconds, stall, note))
        print(f"  {name}: {dict(answers)} in {seconds:.1f}s", file=sys.stderr, flush=True)

    def stop(self) -> int:
        self.probe.stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.auth0.stop()
        self.attacker.stop()
        self.tmp.cleanup()
        return code


def side_runs() -> dict[str, object]:
    """Attacks that need a proxy set up differently: TLS on, or an Auth0 that answers with a
    hostile page. Each gets its own proxy; figures, not a table row each."""
    out: dict[str, object] = {}
    errors: list[str] = []
    sys.path.insert(0, ROOT)
    from tests.e2e.pki import make_key_pair  # cryptography: in make test's environment

    # --- TLS handshakes that never finish (cap 50, head timeout 10 s) ------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        pair = make_key_pair(Path(tmp), "login", "login.example.com")
        run = Run(
            SSO_PROXY_TLS_CERT=str(pair.cert_file), SSO_PROXY_TLS_KEY=str(pair.key_file), SSO_PROXY_MAX_CONNECTIONS="50"
        )
        try:
            before = run.descriptors()
            socks = []
            for _ in range(200):
                sock = socket.create_connection(("127.0.0.1", run.port), timeout=10)
                sock.sendall(b"\x16\x03\x01")
                socks.append(sock)
            time.sleep(0.5)
            held = run.descriptors() - before
            _, longest = keep_sending(socks, b"", every=0.2, within=20)
            out["200 TLS connections sending 3 bytes of a ClientHello (cap 50)"] = (
                f"{held} descriptors held after 0.5 s; all closed within {longest:.1f} s (head timeout 10 s); "
                f"counted tls_handshake {run.metric('sso_proxy_rejected_requests_total', reason='tls_handshake'):.0f}, "
                f"connection_limit {run.metric('sso_proxy_rejected_requests_total', reason='connection_limit'):.0f}"
            )
        finally:
            run.stop()
            errors += [line for line in run.log if '"level":"error"' in line or "Traceback" in line]

    # --- forged fallbacks and planted cookies (Auth0 answers 200: it accepts nothing) ---------------
    run = Run(SSO_PROXY_LOG_LEVEL="warning")
    try:
        marked = get(b"/login/callback?connection=nope&state=A1")
        with socket.create_connection(("127.0.0.1", run.port), timeout=10) as sock:
            sock.sendall(marked)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        cookie = b"; ".join(
            line.split(b":", 1)[1].strip().split(b";", 1)[0]
            for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if line.lower().startswith(b"set-cookie:")
        )
        forged = [get(b"/login/callback?connection=nope&state=A1&fallback=auth0", b"cookie: " + cookie)] * 3
        answers_of(send_each(run.port, forged), 10)
        out["three forged fallbacks with the solicited marker (the rollout alert's input)"] = (
            f"accepted {run.metric('sso_proxy_fallbacks_total', verdict='accepted'):.0f}, "
            f"refused {run.metric('sso_proxy_fallbacks_total', verdict='refused'):.0f} (the alert reads accepted)"
        )
        planted = b"cookie: " + b"; ".join(b"sso_proxy_tx_%011d=%s" % (i, b"A" * 44) for i in range(64))
        smuggled = planted + b"; sib=1 __Host-sso_proxy_logins=AAAAAAAAAAA; __Host-sso_proxy_logins=BBBBBBBBBBB"
        callback = b"/login/callback?connection=globex-adfs"
        body = b"SAMLResponse=PHNhbWw%2B&RelayState=r"
        best = {"plain": float("inf"), "planted": float("inf")}
        for _ in range(20):
            best["plain"] = min(best["plain"], timed_post(run.port, body, b"x-pad: 1", path=callback))
            best["planted"] = min(best["planted"], timed_post(run.port, body, smuggled, path=callback))
        out["a callback with 64 planted login cookies and a smuggled list"] = (
            f"best of 20: {best['planted'] * 1000:.2f} ms against {best['plain'] * 1000:.2f} ms without "
            f"({best['planted'] / best['plain']:.2f}x)"
        )
    finally:
        run.stop()
        errors += [line for line in run.log if '"level":"error"' in line or "Traceback" in line]

    # --- hostile origin pages: what Auth0's side could send (a compromised or misconfigured origin) ---
    import brotli

    bomb = brotli.compress(b"<html>" + b"a" * (16 << 20), lgwin=24)
    attributes = b"<html><form method=post action=https://idp.example/sso><input " + b"a=1 " * 7900 + b"></form>"
    pages = {
        f"a {len(bomb)}-byte Brotli page that decodes to 16 MiB": (b"content-encoding: br\r\n", bomb),
        f"a {len(attributes) // 1024} KB auto-post page of 7,900 attributes": (b"", attributes),
    }
    for name, (encoding, page) in pages.items():
        origin = RawUpstream(
            response=b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n"
            + encoding
            + b"content-length: %d\r\n\r\n" % len(page)
            + page
        ).start()
        run = Run(origin, SSO_PROXY_LOG_LEVEL="warning")
        try:
            times = sorted(timed_get(run.port, b"/authorize?client_id=app") for _ in range(11))
            out[name] = f"best {times[0] * 1000:.1f} ms, median {times[5] * 1000:.1f} ms a request (through the proxy)"
        finally:
            run.stop()
            errors += [line for line in run.log if '"level":"error"' in line or "Traceback" in line]
    # --- a route file rewritten in place by a writer that pauses 2 s after a valid prefix ------------
    run = Run(SSO_PROXY_RELOAD_INTERVAL="2")
    try:
        whole = ROUTES + "  extra-okta:\n    protocol: saml\n    state: workos\n"
        prefix = ROUTES.split("  umbrella-google:")[0]  # a valid map of one connection
        served: set[int] = set()
        with open(run.routes, "w") as f:
            f.write(prefix)
            f.flush()
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                served.add(run.connections_served())
                time.sleep(0.05)
            f.write(whole[len(prefix) :])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 3 not in served:
            served.add(run.connections_served())
            time.sleep(0.05)
        out["a route file rewritten in place, the writer pausing 2 s after a valid 1-connection prefix"] = (
            f"connection counts served meanwhile: {sorted(served)} (2 before, 3 after; 1 would be the half file)"
        )
    finally:
        run.stop()
        errors += [line for line in run.log if '"level":"error"' in line or "Traceback" in line]
    out["errors"] = errors
    return out


def timed_get(port: int, path: bytes) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(get(path))
        while sock.recv(65536):
            pass
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    began = time.monotonic()
    run = Run()
    port = run.port
    base_rss = run.rss("VmRSS")
    attacker = f"127.0.0.1:{run.attacker.port}".encode()
    try:
        # --- the request target (issue 11, finding 1) -----------------------------------------------
        targets = [
            b"GET *@" + attacker + b"/x HTTP/1.1\r\nhost: login.example.com\r\nconnection: close\r\n\r\n",
            b"POST *@" + attacker + b"/login/callback HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n"
            b"connection: close\r\n\r\nabc",
            b"OPTIONS * HTTP/1.1\r\nhost: login.example.com\r\nconnection: close\r\n\r\n",
            b"GET http://" + attacker + b"/x HTTP/1.1\r\nhost: login.example.com\r\nconnection: close\r\n\r\n",
            b"CONNECT " + attacker + b" HTTP/1.1\r\nhost: " + attacker + b"\r\nconnection: close\r\n\r\n",
        ]
        run.attack(
            "request target: asterisk-form `*@host`, `OPTIONS *`, absolute-form, authority-form",
            lambda: answers_of(send_each(port, targets), 10),
            must_not_forward=False,
            note="the attacker's host must receive nothing (see below)",
        )
        attacker_hits = len(run.attacker.requests)

        # --- the request head (finding 3) -------------------------------------------------------------
        def endless_head() -> collections.Counter[int]:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /authorize HTTP/1.1\r\nhost: login.example.com\r\n")
            try:
                for _ in range(4096):  # 4 MiB of headers that never end
                    sock.sendall(b"x-h: " + b"b" * 1017 + b"\r\n")
            except OSError:
                pass
            return answers_of([sock], 10)

        run.attack("one 4 MiB request head", endless_head, must_not_forward=True)
        heads = [b"GET /authorize HTTP/1.1\r\nhost: login.example.com\r\n" + b"x-h: " + b"c" * 31_000 + b"\r\n"] * 500
        run.attack(
            "500 connections holding a 31 KB unfinished head",
            lambda: answers_of(send_each(port, heads), 15),
            must_not_forward=True,
            note="cut by the head timeout (10 s)",
        )

        # --- connections and bodies (finding 4) -------------------------------------------------------
        def idle_flood() -> collections.Counter[int]:
            socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(1500)]
            return answers_of(socks, 15)

        run.attack(
            "1,500 idle connections (cap 1,000)",
            idle_flood,
            must_not_forward=True,
            note="past the cap: 503 at once; the rest: 408 after the head timeout",
        )
        stalled = [post(LEGACY, b"SAMLResponse=" + b"A" * (MIB - 13), close=False)[: 64 << 10]] * 300
        run.attack(
            "300 stalled 1 MiB callback bodies (64 KiB sent)",
            lambda: answers_of(send_each(port, stalled), 15),
            must_not_forward=True,
            note="408 after the body timeout (10 s); nothing forwarded",
        )
        complete = [post(b"/hang?x=1", b"SAMLResponse=" + b"A" * (MIB - 13))] * 200

        def held_bodies() -> collections.Counter[int]:
            socks = send_each(port, complete)
            answers = answers_of(socks, 3)  # those forwarded wait on Auth0 (hanging): closed after 3 s
            return answers

        run.attack(
            "200 concurrent complete 1 MiB POSTs, Auth0 hanging",
            held_bodies,
            must_not_forward=False,
            note="body budget 32 MiB: the rest get 503 + Retry-After; 0 = still waiting on Auth0 when the client left",
        )

        # --- the public edge: idle bytes, trailers, trickling bodies ----------------------------------
        def crlf_idlers() -> collections.Counter[int]:
            socks = send_each(port, [get(b"/authorize", close=False)] * 200)
            answers, held = keep_sending(socks, b"\r\n", every=1.0, within=30)
            edge["crlf_held"] = held
            return answers

        edge: dict[str, float] = {}
        run.attack(
            "200 connections: one request, then a CRLF every second",
            crlf_idlers,
            must_not_forward=False,
            note="closed by the head timeout (10 s) from the first CRLF; -1 = still open after 30 s",
        )
        run.rows[-1].note += f"; longest held {edge['crlf_held']:.1f} s"

        def endless_trailers() -> collections.Counter[int]:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(
                b"POST " + LEGACY + b" HTTP/1.1\r\nhost: login.example.com\r\ntransfer-encoding: chunked\r\n"
                b"content-type: application/x-www-form-urlencoded\r\n\r\n3\r\nx=1\r\n0\r\n"
            )
            sent = 0
            field = b"x-t: " + b"t" * 1017 + b"\r\n"
            try:
                for _ in range(200 * 1024):  # 200 MiB of trailer fields
                    sock.sendall(field)
                    sent += len(field)
            except OSError:
                pass
            edge["trailer_sent"] = sent
            return answers_of([sock], 10)

        rss_before = run.rss("VmRSS")
        run.attack("one chunked POST followed by 200 MiB of trailer fields", endless_trailers, must_not_forward=True)
        run.rows[-1].note = (
            f"cut after {edge['trailer_sent'] / 1024:.0f} KiB sent (limit 32 KiB); RSS {rss_before:.0f} -> "
            f"{run.rss('VmRSS'):.0f} MiB"
        )
        trickle_head = (
            b"POST " + LEGACY + b" HTTP/1.1\r\nhost: login.example.com\r\n"
            b"content-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nSAMLResponse="
        )

        def trickling_bodies() -> collections.Counter[int]:
            socks = send_each(port, [trickle_head] * 50)
            answers, held = keep_sending(socks, b"A", every=1.0, within=45)
            edge["trickle_held"] = held
            return answers

        run.attack(
            "50 bodies trickling one byte a second",
            trickling_bodies,
            must_not_forward=True,
            note="the whole body is due within 30 s of its head",
        )
        run.rows[-1].note += f"; longest held {edge['trickle_held']:.1f} s"

        # --- percent-encoding at the body limit, against a plain body of the same size -----------------
        cookie = b"cookie: sso_proxy_tx_0123456789abcdef=AAAA; __Host-sso_proxy_logins=0123456789abcdef"
        families = {
            "plain": b"SAMLResponse=" + b"A" * (MIB - 113),
            "id_token=%%%...": b"id_token=" + b"%" * (MIB - 109),
            "state=%%%... (with a login cookie)": b"state=" + b"%" * (MIB - 106),
            "code=\\xff%41%41...": b"code=\xff" + b"%41" * ((MIB - 106) // 3),
            "RelayState=%4%4...": b"RelayState=" + b"%4" * ((MIB - 111) // 2),
            "SAMLResponse=%41%41...": b"SAMLResponse=" + b"%41" * ((MIB - 113) // 3),
        }
        best = dict.fromkeys(families, float("inf"))

        def percent_families() -> collections.Counter[int]:
            for _ in range(5):  # interleaved: every family meets the same noise
                for name, body in families.items():
                    best[name] = min(best[name], timed_post(port, body, cookie))
            return collections.Counter({200: 5 * len(families)})

        run.attack("percent-encoding families at the 1 MiB body limit", percent_families, must_not_forward=False)
        run.rows[-1].note = "best of 5, ratio to a plain body: " + ", ".join(
            f"{name} {best[name] / best['plain']:.2f}x" for name in families if name != "plain"
        )
        edge["percent_worst_ratio"] = max(best[name] / best["plain"] for name in families if name != "plain")

        # --- abandoned requests (finding 13) ----------------------------------------------------------
        before_closed = run.auth0.closed_by_client
        waits = [get(b"/login/callback?connection=globex-adfs&code=c&state=s&x=/hang")] * 100
        run.attack(
            "100 callbacks abandoned while Auth0 hangs",
            lambda: answers_of(send_each(port, waits, hold=0.5), 0.1),
            must_not_forward=False,
            note="each cancelled when its client left",
        )
        time.sleep(0.5)
        cancelled = run.auth0.closed_by_client - before_closed

        # --- header hygiene (findings 5-7) ------------------------------------------------------------
        spoof = [
            get(b"/authorize", b"cname_api_key: stolen", b"x_forwarded_for: 6.6.6.6", b"true_client_ip: 6.6.6.6") + b"",
            get(b"/authorize", b"forwarded: for=6.6.6.6", b"x-real-ip: 6.6.6.6", b"x_real_ip: 6.6.6.6"),
        ]
        run.attack(
            "look-alike and untrusted forwarding headers",
            lambda: answers_of(send_each(port, spoof), 10),
            must_not_forward=False,
            note="forwarded without them (checked below)",
        )
        bad = [
            b"GET /authorize HTTP/1.1\r\nhost: a.example\r\nhost: evil.example\r\nconnection: close\r\n\r\n",
            get(b"/authorize", b"x-latin1: caf\xe9"),
        ]
        run.attack(
            "duplicate Host; a non-UTF-8 header value",
            lambda: answers_of(send_each(port, bad), 10),
            must_not_forward=True,
        )

        # --- identification (finding 2, 8) ------------------------------------------------------------
        # 760 KB of XML: its base64 form fits the 1 MiB body limit (the size that froze the loop for 7 minutes)
        audience = base64.b64encode(b"<samlp:Response>" + b"<Audience " * 76_000).replace(b"+", b"%2B")
        nested = base64.urlsafe_b64encode(b"[" * 20_000 + b"]" * 20_000).rstrip(b"=")
        bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
        deflated = bomb.compress(b"<samlp:Response><Audience " + b"<Audience " * (MIB // 10)) + bomb.flush()
        redirect = base64.b64encode(deflated).replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D")
        ident = [
            post(b"/login/callback", b"SAMLResponse=" + audience),
            post(b"/login/callback", b"id_token=e30." + nested + b".sig&state=s"),
            get(b"/login/callback?SAMLResponse=" + redirect),
        ]
        run.attack(
            "`<Audience ` x 760 KB; nested id_token; 1 MB deflate bomb in a GET",
            lambda: answers_of(send_each(port, ident), 30),
            must_not_forward=False,
            note=f"deflate bomb GET is {len(redirect) // 1024} KB",
        )
        leaked = sum(
            1
            for request in run.auth0.requests
            if b"stolen" in request or b"6.6.6.6" in request or b"caf\xe9" in request or b"evil.example" in request
        )
        peak = run.rss()
    finally:
        code = run.stop()
    errors = [line for line in run.log if '"level":"error"' in line or "Traceback" in line]
    side = side_runs()
    errors += side.pop("errors")  # type: ignore[arg-type]
    total = time.monotonic() - began

    print()
    print("| attack | tried | answers | reached Auth0 or the attacker | slowest /healthz |")
    print("|---|---|---|---|---|")
    for row in run.rows:
        answers = ", ".join(f"{n}x {'none' if s == 0 else s}" for s, n in sorted(row.answers.items()))
        forwarded = f"{row.forwarded}" + (" (must be 0)" if row.must_not_forward else "")
        note = f" — {row.note}" if row.note else ""
        print(f"| {row.attack}{note} | {row.tried} | {answers} | {forwarded} | {row.stall_ms:.0f} ms |")
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| requests the attacker's host received | {attacker_hits} (must be 0) |")
    print(f"| spoofed / non-UTF-8 header bytes that reached Auth0 | {leaked} (must be 0) |")
    print(f"| abandoned callbacks whose Auth0 connection was closed when the client left | {cancelled} of 100 |")
    print(f"| proxy RSS at start / peak (VmHWM) | {base_rss:.0f} MiB / {peak:.0f} MiB (container limit 256 MiB) |")
    print(f"| worst /healthz answer during the attacks (probe every 10 ms) | {run.probe.worst * 1000:.0f} ms |")
    print(f"| hostile percent-encoding, worst family / plain body | {edge['percent_worst_ratio']:.2f}x (target 3x) |")
    print(f"| /healthz probes failed | {run.probe.failures} of {run.probe.probes} |")
    print(f"| error lines or tracebacks in the proxy's log | {len(errors)} |")
    print(f"| proxy exit code after SIGTERM | {code} |")
    print(f"| total run time | {total:.0f} s |")
    print()
    print("| edge attack (a proxy of its own for each) | figure |")
    print("|---|---|")
    for name, figure in side.items():
        print(f"| {name} | {figure} |")
    for line in errors[:5]:
        print(f"log: {line[:300]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "rows": [
                        {**row.__dict__, "answers": {str(k): v for k, v in row.answers.items()}} for row in run.rows
                    ],
                    "attacker_hits": attacker_hits,
                    "leaked": leaked,
                    "peak_rss_mib": peak,
                    "worst_healthz_ms": run.probe.worst * 1000,
                    "edge": edge,
                    "side": side,
                },
                f,
                indent=2,
            )
    bad_rows = [row for row in run.rows if row.must_not_forward and row.forwarded]
    return 1 if attacker_hits or leaked or bad_rows or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
