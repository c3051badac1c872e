"""A large tenant through the real server: memory, reloads and scrapes at N connections (issue 21).

Generates a route map of N connections (default 20,000; each with two audiences, an issuer and an
organization), starts ``python -m proxy serve`` on loopback with the shipped manifest's reload
settings, and records:

- RSS of every process of the server (the server and any child it starts) once ready, after the
  scrapes below (the figure before any reload), after each of three ``sso-proxy routes set`` edits
  (each a reload), and the peak (sampled every 20 ms, and the kernel's VmHWM);
- the longest wait of a callback during each reload (from the end of ``routes set`` to one second
  after the new map is in force; separately, while ``routes set`` itself runs: another process on
  the same cores) and during scrapes of ``/metrics`` and ``GET /routes``, measured by a probe
  sending a callback (a 307 to WorkOS) every 10 ms, against its worst while idle in the same run;
- the series count and size of ``/metrics`` with 40 connections seen;
- start-up (process start to ``/readyz`` 200) and edit-to-applied (``routes set`` returning to the
  new map in force) times.

Usage::

    python bench/large_tenant.py                 # 20,000 connections
    python bench/large_tenant.py -n 5000 --json out.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile_kit import Probe  # noqa: E402

MIB = 1024 * 1024
LIMIT_MIB = 256  # deploy/kubernetes/base/deployment.yaml
SEEN = 40


def routes_yaml(n: int) -> str:
    """N connections, each with two audiences, an issuer and an organization (2 in 3 on workos)."""
    out = ["version: 1", "defaults:", "  unknown: workos", "  mode: normal", "connections:"]
    for i in range(n):
        name = f"conn-{i:06d}"
        out += [
            f"  {name}:",
            "    protocol: saml",
            f"    state: {'workos' if i % 3 else 'legacy'}",
            f"    organization: org_{i:06d}",
            f"    audiences: ['urn:auth0:globex-prod:{name}', 'https://sp.example.com/{name}']",
            f"    issuers: ['http://www.okta.com/exk{i:06d}']",
        ]
    return "\n".join(out) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (every process of the pod)."""
    out = [pid]
    i = 0
    while i < len(out):
        try:
            with open(f"/proc/{out[i]}/task/{out[i]}/children") as fh:
                out += [int(p) for p in fh.read().split()]
        except OSError:
            pass
        i += 1
    return out


def status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> float:
    """RSS of the server and its children, MiB."""
    return sum(status_kib(p, "VmRSS") for p in tree_pids(pid)) / 1024


@dataclass
class Sampler:
    """The tree's RSS every 20 ms; the peak since the last reset."""

    pid: int
    peak: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(0.02)


def get(port: int, path: str, timeout: float = 60) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Loads:
    """Counts the server's ``route map loaded`` log lines (no scrape: it would disturb the probe)."""

    count: int = 0
    lines: list[str] = field(default_factory=list)

    def read(self, stream: IO[str]) -> None:
        for line in stream:
            if '"msg":"route map loaded"' in line:
                self.count += 1
            elif '"level":"error"' in line or "Traceback" in line:
                self.lines.append(line.rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20000, help="connections (default 20000)")
    parser.add_argument("--scrapes", type=int, default=5, help="scrapes of /metrics and /routes (default 5)")
    parser.add_argument("--edits", type=int, default=3, help="`routes set` edits, each a reload (default 3)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    figures: dict[str, float | int | str] = {"connections": args.n}
    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "routes.yaml"
        routes.write_text(routes_yaml(args.n))
        figures["map_mib"] = round(routes.stat().st_size / MIB, 1)
        port, admin_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_", "WORKOS_"))}
        env.update(
            {
                "WORKOS_CUSTOM_DOMAIN": "auth.example.com",
                "WORKOS_CLIENT_ID": "client_bench",
                "AUTH0_FALLBACK_ORIGIN": "http://127.0.0.1:9",  # never reached: only workos connections are sent
                "PYTHONUNBUFFERED": "1",
            }
        )
        started = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy",
                "serve",
                "--routes",
                str(routes),
                "--port",
                str(port),
                "--admin-port",
                str(admin_port),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        loads = Loads()
        assert proc.stderr is not None
        threading.Thread(target=loads.read, args=(proc.stderr,), daemon=True).start()
        sampler = Sampler(proc.pid)
        threading.Thread(target=sampler.run, daemon=True).start()
        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit("the server exited during start-up")
                try:
                    if get(admin_port, "/readyz", 1)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            figures["startup_s"] = round(time.perf_counter() - started, 2)
            time.sleep(1.0)
            figures["rss_ready_mib"] = round(tree_rss(proc.pid), 1)
            figures["processes_ready"] = len(tree_pids(proc.pid))
            # 40 connections seen (all on workos: answered with a 307, nothing forwarded).
            seen = [f"conn-{i:06d}" for i in range(1, 3 * SEEN, 3)][:SEEN]
            for name in seen:
                assert get(port, f"/login/callback?connection={name}")[0] == 307
            probe = Probe(port, f"/login/callback?connection={seen[0]}", 307)
            threading.Thread(target=probe.run, daemon=True).start()
            time.sleep(3.0)
            figures["idle_worst_ms"] = round(probe.take() * 1000, 1)
            # Scrapes.
            worst_metrics = worst_routes = 0.0
            for _ in range(args.scrapes):
                probe.take()
                t = time.perf_counter()
                status, body = get(admin_port, "/metrics")
                figures["metrics_s"] = round(time.perf_counter() - t, 3)
                time.sleep(0.1)
                worst_metrics = max(worst_metrics, probe.take())
                assert status == 200
                figures["series"] = sum(1 for line in body.decode().splitlines() if line and line[0] != "#")
                figures["metrics_kb"] = round(len(body) / 1000, 1)
                t = time.perf_counter()
                status, body = get(admin_port, "/routes")
                figures["routes_s"] = round(time.perf_counter() - t, 3)
                figures["routes_kb"] = round(len(body) / 1000, 1)
                time.sleep(0.1)
                worst_routes = max(worst_routes, probe.take())
                assert status == 200
            figures["scrape_metrics_worst_ms"] = round(worst_metrics * 1000, 1)
            figures["scrape_routes_worst_ms"] = round(worst_routes * 1000, 1)
            time.sleep(1.0)
            figures["rss_after_scrapes_mib"] = round(tree_rss(proc.pid), 1)
            # Edits, each a reload; the probe's worst wait while `routes set` runs (another process on
            # the same cores) and from its end to the new map in force (the reload itself).
            sampler.peak = 0.0
            worst_reload = worst_set = 0.0
            for i in range(args.edits):
                state = "legacy" if i % 2 else "workos"
                target = "conn-000030"  # legacy in the generated map
                before = loads.count
                probe.take()
                t = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "proxy", "routes", "set", "--routes", str(routes), target, state],
                    cwd=ROOT,
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                edited = time.perf_counter()
                worst_set = max(worst_set, probe.take())
                while loads.count == before:
                    if time.perf_counter() - t > 120:
                        raise SystemExit("edit not applied in 120 s: " + "\n".join(loads.lines[-5:]))
                    time.sleep(0.02)
                figures[f"edit{i + 1}_set_s"] = round(edited - t, 2)
                figures[f"edit{i + 1}_applied_s"] = round(time.perf_counter() - t, 2)
                time.sleep(1.0)
                worst = probe.take()
                figures[f"edit{i + 1}_reload_worst_ms"] = round(worst * 1000, 1)
                worst_reload = max(worst_reload, worst)
                figures[f"rss_after_reload{i + 1}_mib"] = round(tree_rss(proc.pid), 1)
            figures["routes_set_worst_ms"] = round(worst_set * 1000, 1)
            figures["reload_worst_ms"] = round(worst_reload * 1000, 1)
            figures["rss_peak_mib"] = round(max(sampler.peak, figures["rss_ready_mib"]), 1)  # type: ignore[type-var]
            figures["vmhwm_server_mib"] = round(status_kib(proc.pid, "VmHWM") / 1024, 1)
            figures["probes"] = probe.probes
            figures["probe_failures"] = probe.failures
            probe.stop.set()
        finally:
            sampler.stop.set()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    ready, peak = float(figures["rss_ready_mib"]), float(figures["rss_peak_mib"])
    before_edits = float(figures["rss_after_scrapes_mib"])
    reloaded = max(float(figures[f"rss_after_reload{i + 1}_mib"]) for i in range(args.edits))
    targets = [
        ("RSS once ready <= 60% of 256 MiB", ready <= 0.6 * LIMIT_MIB, f"{ready:.0f} MiB ({ready / LIMIT_MIB:.0%})"),
        ("peak through three reloads <= 75%", peak <= 0.75 * LIMIT_MIB, f"{peak:.0f} MiB ({peak / LIMIT_MIB:.0%})"),
        (
            "callback wait on a reload <= 100 ms",
            float(figures["reload_worst_ms"]) <= 100,
            f"{figures['reload_worst_ms']} ms",
        ),
        (
            "callback wait on a scrape <= 50 ms",
            max(float(figures["scrape_metrics_worst_ms"]), float(figures["scrape_routes_worst_ms"])) <= 50,
            f"/metrics {figures['scrape_metrics_worst_ms']} ms, /routes {figures['scrape_routes_worst_ms']} ms",
        ),
        ("series with 40 seen: a few thousand at most", int(figures["series"]) <= 3000, str(figures["series"])),
        (
            "a reload frees the map it replaces: RSS after each within 2 MiB of before the first",
            reloaded - before_edits <= 2,
            f"before {before_edits:.1f} MiB, after reloads at most {reloaded:.1f} MiB",
        ),
    ]
    print(f"| measure ({args.n} connections, map {figures['map_mib']} MB) | value |")
    print("|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value} |")
    print()
    print("| target | met | seen |")
    print("|---|---|---|")
    for name, met, seen_value in targets:
        print(f"| {name} | {'yes' if met else 'NO'} | {seen_value} |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(met for _, met, _ in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())
