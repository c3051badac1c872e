"""Runs the public and operations listeners in one process, with signals, reload and drain.

Shutdown on SIGTERM/SIGINT: ``/readyz`` turns 503 at once, the public listener keeps serving for
``drain_seconds`` (so the load balancer stops sending), then it stops accepting and in-flight
requests get up to ``shutdown_timeout`` to finish before the process exits. A second signal exits
at once. SIGHUP reloads the route map (off the event loop; SIGHUPs arriving while one waits are
folded into it). Signals that arrived during start-up (:mod:`proxy.edge.startup`) are acted on here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket

from proxy.admin import AdminPolicy
from proxy.app import Lifecycle, PublicApp, create_ops_app, error_page
from proxy.config import Settings
from proxy.edge.limits import Guard, Limits, ensure_descriptors, guarded_protocol
from proxy.edge.listener import ListenerServer, bind, uvicorn_config
from proxy.edge.startup import StartupSignals
from proxy.edge.tls import server_context, tls_gate
from proxy.errors import StartupError
from proxy.logs import log_event
from proxy.metrics import Metrics
from proxy.reload import RouteStore
from proxy.upstream import Upstream

OPS_CONNECTIONS = 64  # probes and scrapes; the operations listener is never public


def _bind(host: str, port: int) -> socket.socket:
    try:
        return bind(host, port)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _check_descriptors(settings: Settings, logger: logging.Logger) -> None:
    """Client connections, both Auth0 pools and the operations listener must fit the descriptor limit."""
    needed = settings.max_connections + 2 * settings.upstream_connections + OPS_CONNECTIONS + 64
    soft, _ = ensure_descriptors(needed)
    if soft < needed:
        log_event(
            logger,
            logging.WARNING,
            "file descriptor limit below what the connection limits need; lower SSO_PROXY_MAX_CONNECTIONS",
            limit=soft,
            needed=needed,
        )
    if settings.read_timeout and settings.read_timeout >= settings.shutdown_timeout:
        log_event(
            logger,
            logging.WARNING,
            "SSO_PROXY_READ_TIMEOUT is not below SSO_PROXY_SHUTDOWN_TIMEOUT: a request waiting on Auth0 "
            "at shutdown may be cut",
            read_timeout=settings.read_timeout,
            shutdown_timeout=settings.shutdown_timeout,
        )


async def serve(
    settings: Settings,
    store: RouteStore,
    metrics: Metrics,
    logger: logging.Logger,
    early: StartupSignals | None = None,
) -> None:
    """Serve until a termination signal, then drain and exit. StartupError when it cannot start."""
    early = early or StartupSignals()
    if early.terminate:
        log_event(logger, logging.INFO, "stopped before serving", signal=early.terminate[0])
        return
    lifecycle = Lifecycle()
    public_socket = _bind(settings.host, settings.port)
    try:
        ops_socket = _bind(settings.admin_host, settings.admin_port)
    except StartupError:
        public_socket.close()
        raise
    _check_descriptors(settings, logger)
    upstream = Upstream(settings, metrics)
    try:
        await upstream.start()
    except StartupError:
        public_socket.close()
        ops_socket.close()
        raise
    limits = Limits(
        max_head_bytes=settings.max_head_bytes,
        head_timeout=settings.head_timeout,
        body_timeout=settings.body_timeout,
        body_deadline=settings.body_deadline,
        keepalive_timeout=settings.keepalive_timeout,
        max_connections=settings.max_connections,
    )

    def count(reason: str) -> None:
        metrics.rejected.labels(reason).inc()

    def draining() -> bool:
        return lifecycle.draining

    http: type[asyncio.Protocol] = guarded_protocol(Guard(limits, error_page, count, draining, logger))
    if settings.tls_cert:
        context = server_context(settings.tls_cert, settings.tls_key)
        http = tls_gate(http, context, settings.head_timeout, settings.max_connections, count)
    public = ListenerServer(
        uvicorn_config(
            PublicApp(settings, store, metrics, upstream, logger),
            settings.host,
            settings.port,
            settings.shutdown_timeout,
            http=http,
            keepalive=settings.keepalive_timeout,
        )
    )
    ops_limits = Limits(
        max_head_bytes=settings.max_head_bytes,
        head_timeout=settings.head_timeout,
        body_timeout=settings.body_timeout,
        body_deadline=settings.body_deadline,
        keepalive_timeout=settings.keepalive_timeout,
        max_connections=OPS_CONNECTIONS,
    )
    ops = ListenerServer(
        uvicorn_config(
            create_ops_app(
                store,
                metrics,
                lifecycle,
                AdminPolicy(settings.admin_token, settings.admin_hosts, settings.admin_host),
            ),
            settings.admin_host,
            settings.admin_port,
            1.0,
            http=guarded_protocol(Guard(ops_limits, error_page, lambda _reason: None, lambda: False, logger)),
            keepalive=settings.keepalive_timeout,
        )
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    now = asyncio.Event()  # a second signal: cut the drain period short too

    def on_terminate(sig: signal.Signals) -> None:
        if stop.is_set():
            log_event(logger, logging.WARNING, "second signal: exiting now", signal=sig.name)
            public.force_exit = ops.force_exit = True
            public.should_exit = ops.should_exit = True
            now.set()
            return
        lifecycle.draining = True
        metrics.draining.set(1)
        log_event(
            logger,
            logging.INFO,
            "draining",
            signal=sig.name,
            drain_seconds=settings.drain_seconds,
            shutdown_timeout=settings.shutdown_timeout,
        )
        stop.set()

    reloads: set[asyncio.Task[object]] = set()

    def on_hangup() -> None:
        task = asyncio.create_task(store.reload("sighup"))  # "busy" when one is already waiting
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_terminate, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    if early.hangup:  # during start-up: the file may have changed after it was read
        log_event(logger, logging.INFO, "SIGHUP during start-up; reloading", count=early.hangup)
        on_hangup()
    for name in early.terminate:  # pragma: no cover - a signal between the check above and here
        on_terminate(signal.Signals[name])
    # What start-up built (modules, the app, the first route map) lives as long as the process: out
    # of the collector's sight, so a full collection scans only what was made since, not 20,000
    # connections' objects on every one (they held the GIL tens of ms during a reload).
    # Frozen objects are still freed by reference counting (a replaced map's objects are acyclic).
    gc.collect()
    gc.freeze()
    tasks = [
        asyncio.create_task(public.serve(sockets=[public_socket])),
        asyncio.create_task(ops.serve(sockets=[ops_socket])),
    ]
    watcher = asyncio.create_task(store.watch(settings.reload_interval)) if settings.reload_interval > 0 else None
    waiter = asyncio.create_task(stop.wait())
    while not (public.started and ops.started) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    if public.started and ops.started:
        log_event(
            logger,
            logging.INFO,
            "listening",
            public=f"{'https' if settings.tls_cert else 'http'}://{settings.host}:{settings.port}",
            admin=f"{settings.admin_host}:{settings.admin_port}",
        )
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:  # a listener failed to start (port in use...)
        public.should_exit = ops.should_exit = True
    else:
        # Still serving, /readyz 503: the load balancer stops sending. Ends early on a second signal.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(now.wait(), settings.drain_seconds)
        public.should_exit = True
        await tasks[0]
        ops.should_exit = True
    if watcher is not None:
        watcher.cancel()
    for task in list(reloads):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    await upstream.close()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    if not public.started or not ops.started or failed:
        raise SystemExit(1)
    log_event(logger, logging.INFO, "stopped")
