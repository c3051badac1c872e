"""The whole server stack per request, in one process: the service against the floor, without sockets.

Feeds the bytes wrk sends in ``make bench`` (the same request line, headers and body, from
``bench/run.py``'s workloads) through the service's own protocol (``proxy.edge.limits``'s guarded
protocol) into ``proxy.app.PublicApp`` built from ``bench/run.py``'s route map and settings, and the
same bytes through uvicorn's httptools protocol into the bare ASGI floor (``bench/floor_app.py``).
An in-memory transport takes the responses; the event loop is uvloop, as in the service. What is
left out is what both pay alike: the socket reads and writes and the loop's polling.

Prints µs of CPU per request for each (best of alternating rounds) and floor/service, the figure
``make bench`` reports by req/s. ``--profile WORKLOAD`` prints a cProfile of the service instead.

    python bench/stack_cost.py [--number N] [--rounds R] [--workloads saml_query,oidc_get]
    python bench/stack_cost.py --profile oidc_get
    python bench/stack_cost.py --env SSO_PROXY_TRANSACTION_BINDING=false   # what the binding costs
    python bench/stack_cost.py --split      # the protocol's share, the app's, the binding's
    python bench/stack_cost.py --forwards   # forwards to nginx (another process) against min_forwarder
    python bench/stack_cost.py --forwards --split --workloads pass_302   # where a bind's µs go
    PSORT=cumulative PDUMP=out.prof python bench/stack_cost.py --forwards --profile fallback
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import logging
import os
import pstats
import sys
import tempfile
import time
from typing import Any, Awaitable, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import run as bench  # noqa: E402
from app_cost import public_app  # noqa: E402
from floor_app import floor_app  # noqa: E402
from protocol_cost import Transport, timed  # noqa: E402

REDIRECTS = ("saml_query", "saml_xml", "oidc_get")
FORWARDS = ("fallback", "pass_get", "pass_post", "pass_302")


def request_bytes(w: bench.Workload, files: dict[str, str]) -> bytes:
    """What wrk writes for ``w`` (bench/wrk/request.lua): its headers, in its order."""
    body = b""
    head = [
        f"{w.method} {w.path} HTTP/1.1",
        "Host: 127.0.0.1:8080",
        "User-Agent: Mozilla/5.0 (bench) AppleWebKit/537.36",
        "Cookie: did=s%3Av0%3Abench; auth0_compat=bench",
    ]
    if w.body:
        with open(files[w.body], "rb") as fh:
            body = fh.read()
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def build_service(
    work: str, files: dict[str, str], extra: dict[str, str] | None = None, origin: str = "http://127.0.0.2:9"
) -> Any:
    env = {
        "WORKOS_CUSTOM_DOMAIN": bench.WORKOS_DOMAIN,
        "WORKOS_CLIENT_ID": bench.CLIENT_ID,
        "AUTH0_FALLBACK_ORIGIN": origin,
        "SSO_PROXY_ROUTES": files["routes"],
        "SSO_PROXY_PUBLIC_HOST": f"{bench.nginx_conf.PUBLIC_HOST},127.0.0.1",
        **(extra or {}),
    }
    return public_app(env, "bench.stack_cost")


def protocols() -> tuple[Any, Any]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from proxy.app import error_page
    from proxy.edge.limits import Guard, Limits, guarded_protocol

    guard = Guard(Limits(), error_page, lambda _r: None, lambda: False, logging.getLogger("bench"))
    return HttpToolsProtocol, guarded_protocol(guard)


def eager(guarded: Any) -> Any:
    """The guarded protocol with the app run in the protocol, not as a task: at the request's end,
    inline to its completion (a redirect never waits), as Python 3.12's ``eager_task_factory``
    would start it. What the task and the loop's turn cost per request. A measurement only: it
    assumes the whole request arrives in one read and refuses an answer that waits (a forward)."""
    from proxy.edge.limits import control_of

    class Eager(guarded):  # type: ignore[misc, valid-type]
        _deferred: Any = None

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            self._deferred = (cycle, app)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            deferred, self._deferred = self._deferred, None
            if deferred is None:
                return
            cycle, app = deferred
            control = control_of(cycle.scope)
            control.cycle = cycle
            self._running = control
            coro = cycle.run_asgi(self._guarded(app, control))
            try:
                coro.send(None)
            except StopIteration:
                return
            coro.close()
            raise AssertionError("the app waited: not a redirect")

    return Eager


def connection(protocol_class: Any, app: Any) -> Any:
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None, proxy_headers=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def signalled(protocol: Any) -> asyncio.Event:
    """An event set each time ``protocol`` completes a response (waiting on the upstream without spinning)."""
    done = asyncio.Event()
    complete = protocol.on_response_complete

    def on_response_complete() -> None:
        complete()
        done.set()

    protocol.on_response_complete = on_response_complete  # each request's cycle is given this one
    return done


async def per_forward(protocol: Any, request: bytes, number: int) -> float:
    """µs of this process's CPU per forwarded request; the upstream (nginx) is another process."""
    done = getattr(protocol, "_bench_done", None)
    if done is None:
        done = protocol._bench_done = signalled(protocol)
    for _ in range(200):
        done.clear()
        protocol.data_received(request)
        await done.wait()
    gc.collect()
    started = time.process_time()
    for _ in range(number):
        done.clear()
        protocol.data_received(request)
        await done.wait()
    return (time.process_time() - started) / number * 1e6


async def profiled(key: str, measure: Callable[[int], Awaitable[float]], number: int) -> None:
    """A cProfile of ``number`` requests (after 200 to warm up), printed by ``PSORT`` (tottime) to
    ``PLINES`` (40) lines; ``PDUMP`` names a pstats file to write too, to compare two settings."""
    await measure(200)
    prof = cProfile.Profile()
    prof.enable()
    await measure(number)
    prof.disable()
    print(f"--- {key}")
    if os.environ.get("PDUMP"):
        prof.dump_stats(os.environ["PDUMP"])
    pstats.Stats(prof).sort_stats(os.environ.get("PSORT", "tottime")).print_stats(int(os.environ.get("PLINES", "40")))


async def forwards(args: argparse.Namespace, work: str, files: dict[str, str]) -> None:
    """The forward workloads against the minimal aiohttp forwarder, both in this process."""
    from min_forwarder import aiohttp_app

    lab = bench.Lab(work, files, False, work)
    lab.start_upstream()
    origin = f"http://{bench.nginx_conf.UPSTREAM_HOST}:{lab.upstream_port}"
    try:
        extra = dict(item.split("=", 1) for item in args.env)
        service = build_service(work, files, extra, origin)
        nobind = build_service(work, files, {**extra, "SSO_PROXY_TRANSACTION_BINDING": "false"}, origin)
        await service.upstream.start()
        await nobind.upstream.start()
        forwarder, start, stop = aiohttp_app(origin)
        await start()
        plain, guarded = protocols()
        try:
            for key in (args.profile or args.workloads).split(","):
                w = next(x for x in bench.WORKLOADS if x.key == key)
                request = request_bytes(w, files)
                svc, _ = connection(guarded, service)
                off, _ = connection(guarded, nobind)
                fwd, _ = connection(plain, forwarder)
                if args.profile:
                    await profiled(key, functools.partial(per_forward, svc, request), args.number)
                    continue
                if args.split:
                    await forward_split(key, svc, off, request, args)
                    continue
                best_s = best_f = best_o = float("inf")
                for _ in range(args.rounds):
                    best_f = min(best_f, await per_forward(fwd, request, args.number))
                    best_s = min(best_s, await per_forward(svc, request, args.number))
                    best_o = min(best_o, await per_forward(off, request, args.number))
                print(
                    f"{key:<11} forwarder {best_f:6.1f} µs  service {best_s:6.1f} µs  binding off {best_o:6.1f} µs  "
                    f"forwarder/service {best_f / best_s:.2f}  off/on {best_o / best_s:.2f}"
                )
        finally:
            await stop()
            await service.upstream.close()
            await nobind.upstream.close()
    finally:
        assert lab.upstream is not None
        lab.upstream.stop()


async def forward_split(key: str, svc: Any, off: Any, request: bytes, args: argparse.Namespace) -> None:
    """Where a passthrough's binding µs go: the service as it is, with the response head's inspection
    skipped (``PassthroughHook.head`` answering "nothing to bind"), with every HMAC a constant
    (``txcookie._finish``), and with binding off. One process, the variants swapped in turn."""
    from proxy.routing import binding, txcookie

    real_head, real_finish = binding.PassthroughHook.head, txcookie._finish

    def skipped(self: Any, status: int, headers: Any) -> tuple[list[Any], int]:
        return [], 0

    def constant(inner: Any, outer: Any, data: bytes) -> bytes:
        return bytes(32)

    variants = {"service": (real_head, real_finish), "head skipped": (skipped, real_finish)}
    variants["HMAC constant"] = (real_head, constant)
    best = dict.fromkeys([*variants, "binding off"], float("inf"))
    try:
        for _ in range(args.rounds):
            for name, (head, finish) in variants.items():
                binding.PassthroughHook.head, txcookie._finish = head, finish  # type: ignore[method-assign]
                best[name] = min(best[name], await per_forward(svc, request, args.number))
            binding.PassthroughHook.head, txcookie._finish = real_head, real_finish  # type: ignore[method-assign]
            best["binding off"] = min(best["binding off"], await per_forward(off, request, args.number))
    finally:
        binding.PassthroughHook.head, txcookie._finish = real_head, real_finish  # type: ignore[method-assign]
    print(f"{key:<11} " + "  ".join(f"{name} {us:6.1f} µs" for name, us in best.items()))


async def main_async(args: argparse.Namespace) -> None:
    work = tempfile.mkdtemp(prefix="sso-stack-cost-")
    files = bench.write_inputs(work)
    if args.forwards:
        await forwards(args, work, files)
        return
    extra = dict(item.split("=", 1) for item in args.env)
    service = build_service(work, files, extra)
    nobind = build_service(work, files, {**extra, "SSO_PROXY_TRANSACTION_BINDING": "false"})
    plain, guarded = protocols()
    keys = args.profile.split(",") if args.profile else args.workloads.split(",")
    for key in keys:
        w = next(x for x in bench.WORKLOADS if x.key == key)
        request = request_bytes(w, files)
        svc, svc_out = connection(guarded, service)
        flo, flo_out = connection(plain, floor_app)
        if args.profile:
            await profiled(key, functools.partial(timed, svc, request), args.number)
            continue
        if args.split:
            await split(key, request, service, nobind, args)
            continue
        best_s = best_f = float("inf")
        for _ in range(args.rounds):  # alternating, the best of each: the machine's noise only ever adds
            best_f = min(best_f, await timed(flo, request, args.number))
            best_s = min(best_s, await timed(svc, request, args.number))
        assert svc_out.written and flo_out.written
        print(f"{key:<11} floor {best_f:6.1f} µs  service {best_s:6.1f} µs  floor/service {best_f / best_s:.2f}")


async def split(key: str, request: bytes, service: Any, nobind: Any, args: argparse.Namespace) -> None:
    """Where a request's µs go: each protocol with each app, the service started without a task
    (:func:`eager`), and the service with binding off."""
    plain, guarded = protocols()
    combos = {
        "floor": (plain, floor_app),
        "+guard": (guarded, floor_app),
        "+app": (plain, service),
        "service": (guarded, service),
        "no task": (eager(guarded), service),
        "binding off": (guarded, nobind),
    }
    made = {name: connection(protocol, app) for name, (protocol, app) in combos.items()}
    best = dict.fromkeys(combos, float("inf"))
    for _ in range(args.rounds):
        for name, (protocol, _) in made.items():
            best[name] = min(best[name], await timed(protocol, request, args.number))
    assert made["no task"][1].written == made["service"][1].written  # the same answers, byte for byte in count
    print(f"{key:<11} " + "  ".join(f"{name} {us:6.1f} µs" for name, us in best.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(REDIRECTS))
    ap.add_argument("--profile", default="")
    ap.add_argument(
        "--split",
        action="store_true",
        help="where the µs go: the floor, the guarded protocol, the app, both, binding off (with --forwards: "
        "the bind's inspection skipped, its HMACs constant, binding off)",
    )
    ap.add_argument("--forwards", action="store_true", help=f"the forward workloads ({', '.join(FORWARDS)}) instead")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE: a setting of the service (repeatable)")
    args = ap.parse_args(argv)
    if args.forwards and args.workloads == ",".join(REDIRECTS):
        args.workloads = ",".join(FORWARDS)
    import uvloop

    uvloop.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
