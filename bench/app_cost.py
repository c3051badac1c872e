"""The app's own cost per request, without the network or uvicorn: µs per ASGI call on the redirect path.

Calls ``proxy.app.PublicApp`` and the floor app (``bench/floor_app.py``) directly with a prepared
scope and an in-memory receive/send, in one event loop, for each redirect workload. What the
service adds over the floor here is what its Python costs per request; the rest of a request's
CPU (HTTP parsing, the socket write, the event loop) is uvicorn's and the same for both.

    python bench/app_cost.py [--number N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from floor_app import floor_app  # noqa: E402
from samlgen import saml_form_body  # noqa: E402

ROUTES = """version: 1
defaults: {unknown: workos, mode: normal}
connections:
  acme-okta:
    protocol: saml
    state: workos
    audiences: [urn:auth0:globex-prod:acme-okta]
    issuers: [http://www.okta.com/exk8f3k2AbCdEfGh0x7]
"""


def scope_for(method: str, path: str, query: bytes, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"login.globex.com"), (b"user-agent", b"Mozilla/5.0 (bench)"), (b"accept", b"*/*")]
    if body:
        headers += [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def per_call_us(app: Any, scope: dict[str, Any], body: bytes, number: int) -> float:
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: dict[str, Any]) -> None:
        return None

    for _ in range(200):
        await app(scope, receive, send)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            await app(scope, receive, send)
        best = min(best, (time.perf_counter() - started) / number * 1e6)
    return best


def public_app(env: dict[str, str], name: str) -> Any:
    """The service's ``PublicApp`` for these settings, its route map loaded, logging at warning (or at
    ``SSO_PROXY_LOG_LEVEL`` from ``env``: info, production's default, writes each callback's JSON line)."""
    from proxy.app import PublicApp
    from proxy.config import load_settings
    from proxy.metrics import Metrics
    from proxy.reload import RouteStore
    from proxy.upstream import Upstream

    settings = load_settings({"SSO_PROXY_LOG_LEVEL": "warning", **env}, {})
    logger = logging.getLogger(name)
    logger.setLevel(settings.log_level.upper())
    if logger.isEnabledFor(logging.INFO):  # production's level: its JSON lines, written to /dev/null
        from proxy.logs import LOGGER_NAME, setup_logging

        setup_logging(settings.log_level)  # the service's own handler and settings, on stderr
        logger = logging.getLogger(LOGGER_NAME)
        logger.handlers[0].setStream(open(os.devnull, "w"))
    metrics = Metrics()
    store = RouteStore(settings.routes, settings.workos_domain, metrics, logger)
    store.load_initial()
    return PublicApp(settings, store, metrics, Upstream(settings, metrics), logger)


def build_service() -> Any:
    fd, routes = tempfile.mkstemp(prefix="sso-bench-app-", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        fh.write(ROUTES)
    env = {
        "WORKOS_CUSTOM_DOMAIN": "auth.example.test",
        "WORKOS_CLIENT_ID": "client_bench",
        "AUTH0_FALLBACK_ORIGIN": "http://127.0.0.1:9",
        "SSO_PROXY_ROUTES": routes,
    }
    service = public_app(env, "bench.app_cost")
    os.unlink(routes)  # loaded; nothing watches it here
    return service


async def main_async(number: int) -> None:
    saml = saml_form_body("acme-okta")
    cases = [
        ("saml_query", scope_for("POST", "/login/callback", b"connection=acme-okta", saml), saml),
        ("saml_xml", scope_for("POST", "/login/callback", b"", saml), saml),
        ("oidc_get", scope_for("GET", "/login/callback", b"code=Q2vbHs7xYm1uTnKe0PqZ&state=g6Fo2SBLb3N", b""), b""),
    ]
    service = build_service()
    print(f"{'workload':<12} {'floor µs':>9} {'service µs':>11} {'added µs':>9}")
    for name, scope, body in cases:
        floor = await per_call_us(floor_app, scope, body, number)
        svc = await per_call_us(service, scope, body, number)
        print(f"{name:<12} {floor:>9.1f} {svc:>11.1f} {svc - floor:>9.1f}")
    gc.collect()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=5000)
    args = ap.parse_args(argv)
    try:
        import uvloop

        uvloop.run(main_async(args.number))
    except ImportError:
        asyncio.run(main_async(args.number))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
