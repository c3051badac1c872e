"""Runs the public and operations listeners in one process, with signals, reload and drain.

Shutdown on SIGTERM/SIGINT: ``/readyz`` turns 503 at once, the public listener keeps serving for
``drain_seconds`` (so the load balancer stops sending), then it stops accepting and in-flight
requests get up to ``shutdown_timeout`` to finish before the process exits. A second signal exits
at once. SIGHUP reloads the route map (off the event loop; SIGHUPs arriving while one waits are
folded into it). Signals that arrived during start-up (:mod:`proxy.startup`) are acted on here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from proxy.admin import AdminPolicy
from proxy.app import Lifecycle, PublicApp, create_ops_app
from proxy.config import Settings
from proxy.listener import ListenerServer, uvicorn_config
from proxy.logs import log_event
from proxy.metrics import Metrics
from proxy.reload import RouteStore
from proxy.startup import StartupSignals
from proxy.upstream import Upstream


async def serve(
    settings: Settings,
    store: RouteStore,
    metrics: Metrics,
    logger: logging.Logger,
    early: StartupSignals | None = None,
) -> None:
    """Serve until a termination signal, then drain and exit."""
    early = early or StartupSignals()
    if early.terminate:
        log_event(logger, logging.INFO, "stopped before serving", signal=early.terminate[0])
        return
    lifecycle = Lifecycle()
    upstream = Upstream(settings, metrics)
    await upstream.start()
    public = ListenerServer(
        uvicorn_config(
            PublicApp(settings, store, metrics, upstream, logger),
            settings.host,
            settings.port,
            settings.shutdown_timeout,
        )
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
    tasks = [asyncio.create_task(public.serve()), asyncio.create_task(ops.serve())]
    watcher = asyncio.create_task(store.watch(settings.reload_interval)) if settings.reload_interval > 0 else None
    waiter = asyncio.create_task(stop.wait())
    while not (public.started and ops.started) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    if public.started and ops.started:
        log_event(
            logger,
            logging.INFO,
            "listening",
            public=f"{settings.host}:{settings.port}",
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
