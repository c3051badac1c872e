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
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
import pstats
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import run as bench  # noqa: E402
from floor_app import floor_app  # noqa: E402
from protocol_cost import Transport  # noqa: E402

REDIRECTS = ("saml_query", "saml_xml", "oidc_get")


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


def build_service(work: str, files: dict[str, str], extra: dict[str, str] | None = None) -> Any:
    from proxy.app import PublicApp
    from proxy.config import load_settings
    from proxy.metrics import Metrics
    from proxy.reload import RouteStore
    from proxy.upstream import Upstream

    env = {
        "WORKOS_CUSTOM_DOMAIN": bench.WORKOS_DOMAIN,
        "WORKOS_CLIENT_ID": bench.CLIENT_ID,
        "AUTH0_FALLBACK_ORIGIN": "http://127.0.0.2:9",
        "SSO_PROXY_ROUTES": files["routes"],
        "SSO_PROXY_LOG_LEVEL": "warning",
        "SSO_PROXY_PUBLIC_HOST": f"{bench.nginx_conf.PUBLIC_HOST},127.0.0.1",
        **(extra or {}),
    }
    settings = load_settings(env, {})
    logger = logging.getLogger("bench.stack_cost")
    logger.setLevel(logging.WARNING)
    metrics = Metrics()
    store = RouteStore(settings.routes, settings.workos_domain, metrics, logger)
    store.load_initial()
    return PublicApp(settings, store, metrics, Upstream(settings, metrics), logger)


def protocols() -> tuple[Any, Any]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from proxy.app import error_page
    from proxy.edge.limits import Guard, Limits, guarded_protocol

    guard = Guard(Limits(), error_page, lambda _r: None, lambda: False, logging.getLogger("bench"))
    return HttpToolsProtocol, guarded_protocol(guard)


def connection(protocol_class: Any, app: Any) -> Any:
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None, proxy_headers=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def per_request(protocol: Any, request: bytes, number: int) -> float:
    for _ in range(200):
        protocol.data_received(request)
        await asyncio.sleep(0)
    gc.collect()
    started = time.process_time()
    for _ in range(number):
        protocol.data_received(request)
        await asyncio.sleep(0)  # the request's task runs and answers
    return (time.process_time() - started) / number * 1e6


async def main_async(args: argparse.Namespace) -> None:
    work = tempfile.mkdtemp(prefix="sso-stack-cost-")
    files = bench.write_inputs(work)
    service = build_service(work, files, dict(item.split("=", 1) for item in args.env))
    plain, guarded = protocols()
    keys = args.profile.split(",") if args.profile else args.workloads.split(",")
    for key in keys:
        w = next(x for x in bench.WORKLOADS if x.key == key)
        request = request_bytes(w, files)
        svc, svc_out = connection(guarded, service)
        flo, flo_out = connection(plain, floor_app)
        if args.profile:
            await per_request(svc, request, 200)
            prof = cProfile.Profile()
            prof.enable()
            await per_request(svc, request, args.number)
            prof.disable()
            print(f"--- {key}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(40)
            continue
        best_s = best_f = float("inf")
        for _ in range(args.rounds):  # alternating, the best of each: the machine's noise only ever adds
            best_f = min(best_f, await per_request(flo, request, args.number))
            best_s = min(best_s, await per_request(svc, request, args.number))
        assert svc_out.written and flo_out.written
        print(f"{key:<11} floor {best_f:6.1f} µs  service {best_s:6.1f} µs  floor/service {best_f / best_s:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(REDIRECTS))
    ap.add_argument("--profile", default="")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE: a setting of the service (repeatable)")
    args = ap.parse_args(argv)
    import uvloop

    uvloop.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
