"""The two ASGI apps: the public listener (callbacks and passthrough) and the operations listener.

The public app is a plain ASGI callable: the callback path is the product, and Starlette's routing
and Request/Response objects cost about half the throughput of a bare ASGI app on this path
(bench/RESULTS.md). The operations app, off the hot path, is a small Starlette app.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import io
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Iterator
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from proxy import __version__, retired
from proxy.admin import SAFE_METHODS, AdminGuard, AdminPolicy
from proxy.config import Settings
from proxy.edge.limits import BodyBudget, BodyTooLarge, ClientGone, OverBudget, control_of, read_body, request_id
from proxy.errors import UpstreamError
from proxy.heap import release_freed_memory
from proxy.logs import log_event
from proxy.metrics import UNKNOWN, Metrics, status_class
from proxy.progress import UNSEEN
from proxy.reload import Loaded, RouteStore
from proxy.routing.auth0state import any_auth0_state
from proxy.routing.binding import (
    NOT_BOUND,
    REFUSED,
    Binder,
    CallbackBinding,
    FallbackVerdict,
    PassthroughHook,
    host_name,
    public_names,
)
from proxy.routing.callback import Callback, is_fallback, strip_fallback, transaction_values
from proxy.routing.decide import AUTH0, WORKOS, Decision, Identity, decide
from proxy.routing.routemap import Connection, RouteMap
from proxy.routing.txcookie import Keys
from proxy.upstream import AppendHeaders, BadTarget, ResponseHook, Upstream, is_origin_form, is_trusted

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CALLBACK_PATHS = frozenset(("/login/callback", "/login/callback/"))
NO_STORE = (b"cache-control", b"no-store")

_PAGES = {
    400: ("Bad request", "The sign-in request could not be read."),
    404: ("Not found", "There is nothing here."),
    408: ("Request timeout", "The sign-in request took too long to arrive. Please try again."),
    413: ("Request too large", "The sign-in request is larger than this service accepts."),
    421: ("Misdirected request", "This service does not answer for that host name."),
    431: ("Request too large", "The sign-in request's headers are larger than this service accepts."),
    502: ("Sign-in temporarily unavailable", "The sign-in service could not be reached. Please try again."),
    503: ("Sign-in temporarily unavailable", "This service is busy. Please try again in a moment."),
    504: ("Sign-in temporarily unavailable", "The sign-in service took too long to answer. Please try again."),
}
RETRY_AFTER = b"5"  # seconds, on 503 pages (busy: connection limit, body budget, shutdown)

# The auto-submitting form's only script; the CSP allows exactly this script by its hash.
FORM_SCRIPT = "document.forms[0].submit();"
FORM_SCRIPT_HASH = base64.b64encode(hashlib.sha256(FORM_SCRIPT.encode()).digest()).decode()


@dataclass(slots=True)
class Lifecycle:
    """Mutable run state shared by both listeners."""

    draining: bool = False
    started_at: float = field(default_factory=time.time)


def error_page(status: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Short, plain pages without internals."""
    title, text = _PAGES.get(status, ("Error", "Something went wrong."))
    body = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{text}</p></body></html>"
    ).encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()), NO_STORE]
    if status == 503:
        headers.append((b"retry-after", RETRY_AFTER))
    return headers, body


async def send_page(send: Send, status: int) -> int:
    headers, body = error_page(status)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


def sorted_connections(route_map: RouteMap) -> Iterator[tuple[str, Connection]]:
    """The map's connections in name order, one decoded at a time."""
    for name in sorted(route_map.connections):
        yield name, route_map.connections[name]


def write_member(page: io.StringIO, key: str, members: Iterable[tuple[str, str]]) -> None:
    """``,\\n  "key": {...}`` into ``page``, one member (a name, its value's JSON) at a time, laid out
    as ``json.dumps(..., indent=2)`` lays out an object in an object."""
    page.write(f",\n  {json.dumps(key)}: {{")
    separator = "\n"
    for name, value in members:
        page.write(f"{separator}    {json.dumps(name)}: {value}")
        separator = ",\n"
    page.write("\n  }" if separator == ",\n" else "}")


def workos_target(settings: Settings, conn: Connection | None, query: bytes) -> str:
    """Where a callback goes in WorkOS: only ever a configured host, with the original query."""
    if conn is not None and conn.workos_acs_url:
        base = conn.workos_acs_url
        joiner = "&" if "?" in base else "?"
    else:
        base = f"{settings.workos_scheme}://{settings.workos_domain}/sso/{settings.workos_client_id}/auth0/callback"
        joiner = "?"
    return base + joiner + query.decode("latin-1") if query else base


# A real callback form has two or three fields (SAMLResponse, RelayState; id_token, state). Re-posting
# many more would cost a Python step per field (250,000 fields took 6 s on one event loop), so such a
# body goes by 307 instead, which keeps it byte for byte without reading it.
MAX_FORM_FIELDS = 32


def wants_form_page(redirect_mode: str, method: str, form: bool, body: bytes) -> bool:
    """The form mode's auto-submitting page, or (GET, not a form, too many fields) the 307."""
    return redirect_mode == "form" and method == "POST" and form and body.count(b"&") < MAX_FORM_FIELDS


def form_page(target: str, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """An auto-submitting form re-POSTing every field (SAMLResponse, RelayState, ...) to ``target``."""
    fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields)
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>Signing in</title></head><body>"
        f'<form method="post" action="{html.escape(target)}">{inputs}'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        f"<script>{FORM_SCRIPT}</script></body></html>"
    ).encode("latin-1")
    # No form-action: Chromium applies it to every redirect after the submission too, so WorkOS's
    # 302 to the application (or its 307 back with fallback=auth0) would be blocked. The target is
    # server-chosen from configuration, so the directive would protect nothing here.
    csp = f"default-src 'none'; script-src 'sha256-{FORM_SCRIPT_HASH}'; base-uri 'none'; frame-ancestors 'none'"
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(page)).encode()),
        NO_STORE,
        (b"content-security-policy", csp.encode()),
        (b"referrer-policy", b"no-referrer"),
    ]
    return headers, page


class PublicApp:
    """The public listener: ``/login/callback`` is decided, everything else is passed through."""

    def __init__(
        self, settings: Settings, store: RouteStore, metrics: Metrics, upstream: Upstream, logger: logging.Logger
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.upstream = upstream
        self.logger = logger
        self.binder = make_binder(settings, time.time())
        self.budget = BodyBudget(settings.body_budget_bytes)
        self.public_names = public_names(settings.public_hosts)  # empty: every Host is served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # websockets and lifespan are not served on this listener
        started = time.perf_counter()
        is_callback = scope["path"] in CALLBACK_PATHS and scope["method"] in ("GET", "POST")
        group = "callback" if is_callback else "passthrough"
        status = 500
        try:
            if not is_origin_form(scope.get("raw_path")):
                # Asterisk-form, authority-form or worse: nothing to route or forward.
                self.metrics.rejected.labels("bad_target").inc()
                status = await send_page(send, 400)
                return
            # One pass over the headers for everything this app reads of them.
            length, form = -1, False
            host = forwarded = None
            cookies: list[tuple[bytes, bytes]] = []  # the Cookie headers, all the binding reads
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value
                elif name == b"cookie":
                    cookies.append((name, value))
                elif name == b"content-length":
                    length = int(value) if value.isdigit() else -1
                elif name == b"content-type":
                    form = value[:33].lower() == b"application/x-www-form-urlencoded"
                elif name == b"x-forwarded-host":
                    forwarded = value
            if self.public_names and not self._for_public_host(scope, host, forwarded):
                # RFC 9110 section 15.5.20: this service does not answer for that authority. Nothing is
                # forwarded, redirected or bound for a host that is not the custom domain.
                self.metrics.rejected.labels("misdirected").inc()
                status = await send_page(send, 421)
                return
            if not is_callback and self.settings.auth0_off:
                self.metrics.auth0_off_requests.labels(retired.path_label(scope["path"])).inc()
                status = await retired.answer_path(send, self.settings.retired_url)
                return
            if not is_callback and not self.settings.passthrough:
                status = await send_page(send, 404)
                return
            try:
                body = await read_body(receive, length, self.settings.max_body_bytes, self.budget)
            except BodyTooLarge:
                self.metrics.rejected.labels("body_too_large").inc()
                status = await send_page(send, 413)
                return
            except OverBudget:
                self.metrics.rejected.labels("body_budget").inc()
                status = await send_page(send, 503)
                return
            except ClientGone:
                self.metrics.rejected.labels("incomplete_body").inc()
                status = 499  # nginx's "client closed request"; no response can be sent
                return
            try:
                if is_callback:
                    status = await self._callback(scope, body, form, cookies, send, started)
                else:
                    hook = None
                    if self.binder is not None:
                        hook = PassthroughHook(
                            self.binder, scope["headers"], time.time(), lambda kind: self._bound(scope, kind)
                        )
                    status = await self._forward(scope, body, scope["query_string"], send, single_use=False, hook=hook)
            finally:
                self.budget.give(len(body))
        finally:
            m = self.metrics
            m.requests.labels(group, m.method_label(scope["method"]), status_class(status)).inc()
            m.duration.labels(group).observe(time.perf_counter() - started)

    def _for_public_host(self, scope: Scope, host: bytes | None, forwarded: bytes | None) -> bool:
        """The request's Host, and a trusted proxy's X-Forwarded-Host (what Auth0 would be told),
        name a public host: one lookup of the lowered name without port per header."""
        if host is None or host_name(host) not in self.public_names:
            return False
        if forwarded is None:
            return True
        client = scope.get("client")
        trusted = client is not None and is_trusted(client[0], self.settings.trusted_proxies)
        return not trusted or host_name(forwarded) in self.public_names

    def _bound(self, scope: Scope, kind: str) -> None:
        """A passthrough response started a login this proxy bound: counted, and logged so a later
        detour (a fallback, a WorkOS round trip) can be traced to the request that started it.
        Its kind and request id only: never the state or RelayState."""
        self.metrics.bindings.labels(kind).inc()
        if self.logger.isEnabledFor(logging.INFO):  # its fields are not made for a line not written
            log_event(
                self.logger,
                logging.INFO,
                "login bound",
                request_id=request_id(scope),
                kind=kind,
                path=retired.path_label(scope["path"]),
            )

    async def _forward(
        self,
        scope: Scope,
        body: bytes,
        query: bytes,
        send: Send,
        *,
        single_use: bool,
        connection: str | None = None,
        hook: ResponseHook | None = None,
    ) -> int:
        """Forward to Auth0; a failure becomes a 502/504 page (and, for a callback, a per-connection error);
        one after the response started closes the connection (the status cannot change then)."""
        try:
            return await self.upstream.forward(scope, body, query, send, single_use=single_use, hook=hook)
        except BadTarget:  # checked on entry too; this is the last line before a byte is sent
            self.metrics.rejected.labels("bad_target").inc()
            return await send_page(send, 400)
        except UpstreamError as exc:
            if connection is not None:
                self.metrics.callback_errors.labels(connection, exc.kind).inc()
            log_event(
                self.logger,
                logging.WARNING,
                "upstream error",
                request_id=request_id(scope),
                kind=exc.kind,
                error=str(exc),
                path=scope["path"],
                method=scope["method"],
                connection=connection,
                response_started=exc.started,
            )
            if not exc.started:
                return await send_page(send, exc.status)
            control = control_of(scope)
            if control is None:
                raise  # outside the guarded protocol: uvicorn closes the connection
            control.abort()
            return exc.status

    async def _callback(
        self, scope: Scope, body: bytes, form: bool, cookies: list[tuple[bytes, bytes]], send: Send, started: float
    ) -> int:
        """Decide one callback and answer it. ``cookies`` are the request's Cookie headers (what the
        binding reads of its headers)."""
        query: bytes = scope["query_string"]
        loaded = self.store.current
        assert loaded is not None  # the server does not start without a map
        route_map = loaded.route_map
        cb = Callback(query, body, form)
        binder = self.binder
        now = time.time()
        tx: CallbackBinding = NOT_BOUND
        disagree = False  # routed by a cookie, but its state/RelayState is not of Auth0's form
        try:
            if is_fallback(query):
                # decide's first rule: a fallback goes to Auth0 whatever binds it, so neither witness
                # is read (nor the body, for one named by ?connection).
                decision = decide(cb, route_map)
            else:
                if binder is not None:
                    tx = binder.auth0_binding(cookies, cb, now)
                # The second witness: Auth0's own state form, read once, a few µs.
                values = transaction_values(cb)
                own_form = any_auth0_state(values) if values else False
                decision = decide(cb, route_map, tx.bound, own_form)
                # Counted among what the alert divides by: the callbacks the cookie routed.
                disagree = decision.reason == "auth0_transaction" and bool(values) and not own_form
        except Exception:  # a bug must not lose a login: deliver to Auth0 and say so
            self.logger.exception("decision failed; forwarding to Auth0")
            decision = Decision(AUTH0, "unparseable", Identity(None, "none"), "unknown")
        cookie: bytes | None = None  # a Set-Cookie of the binding module's for this response
        solicited = "unknown"  # of a fallback: did this proxy send that callback to WorkOS?
        verdict: FallbackVerdict | None = None  # of a forwarded fallback: did Auth0 accept it?
        if decision.reason == "auth0_transaction" and binder is not None:
            cookie = binder.used_cookie(tx)
        elif decision.reason == "fallback" and binder is not None:
            was_sent, cookie = binder.solicited(cookies, cb, now)
            solicited = "true" if was_sent else "false"
        self._count(decision, cb, binder is not None, route_map)
        if disagree:
            self.metrics.witness_disagreements.labels(decision.protocol).inc()
        if decision.action == AUTH0 and self.settings.auth0_off:
            # Only fallback=auth0 gets here (the map in force was checked): WorkOS could not complete it.
            self.metrics.auth0_off_callbacks.labels(decision.connection or UNKNOWN, decision.reason).inc()
            status = await retired.answer_callback(send)
        elif decision.action == AUTH0:
            extra = [(b"set-cookie", cookie)] if cookie else []
            hook: ResponseHook | None = AppendHeaders(extra) if extra else None
            forward_query = query
            if decision.reason == "fallback":
                forward_query = strip_fallback(query)
                hook = verdict = FallbackVerdict(extra)
            status = await self._forward(
                scope,
                body,
                forward_query,
                send,
                single_use=True,
                connection=decision.connection or UNKNOWN,
                hook=hook,
            )
        else:
            conn = route_map.connection(decision.connection) if decision.connection else None
            if binder is not None:
                cookie = binder.workos_cookie(cookies, cb, now)
            status = await self._to_workos(scope, conn, query, body, form, send, cookie)
        fallback: dict[str, str] = {}
        if decision.reason == "fallback":
            # Counted by Auth0's verdict: solicited alone can be forged (anyone gets
            # the marker cookie by sending a callback here), Auth0 accepting the callback cannot. Not
            # forwarded (Auth0 switched off) or no answer: refused.
            fallback = {"solicited": solicited, "verdict": verdict.verdict if verdict is not None else REFUSED}
            self.metrics.fallbacks.labels(decision.connection or UNKNOWN, solicited, fallback["verdict"]).inc()
        if self.logger.isEnabledFor(logging.INFO):
            log_event(
                self.logger,
                logging.INFO,
                "callback",
                request_id=request_id(scope),
                method=scope["method"],
                path=scope["path"],
                connection=decision.connection,
                identified_by=decision.identity.identified_by,
                decision=decision.action,
                reason=decision.reason,
                would=decision.would,
                protocol=decision.protocol,
                status=status,
                map=route_map.sha256[:12],
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                **fallback,
            )
        return status

    def _count(self, decision: Decision, cb: Callback, binding: bool, route_map: RouteMap) -> None:
        m = self.metrics
        label = decision.connection or UNKNOWN
        # A connection in state shadow: what would have gone to WorkOS, in either mode.
        conn = route_map.connection(label) if decision.reason == "shadow" else None
        shadowed = conn is not None and conn.state == "shadow" and decision.would == WORKOS
        m.progress.record(decision.connection, decision.action, decision.reason, shadowed=shadowed)
        if shadowed:
            m.shadow_connection.labels(label).inc()
        m.callbacks.labels(
            decision.protocol, label, decision.action, decision.reason, decision.identity.identified_by
        ).inc()
        if binding and decision.reason not in ("auth0_transaction", "fallback") and carries_login_value(cb):
            m.unbound.labels(decision.protocol, decision.action).inc()
        # Fallbacks are counted once Auth0 answered (their verdict); global shadow mode counts what it would do.
        if decision.reason != "fallback" and decision.would is not None and route_map.mode == "shadow":
            m.shadow.labels(label, decision.would).inc()

    async def _to_workos(
        self,
        scope: Scope,
        conn: Connection | None,
        query: bytes,
        body: bytes,
        form: bool,
        send: Send,
        cookie: bytes | None = None,
    ) -> int:
        """307 (or an auto-submitting form) to WorkOS; ``cookie`` marks the callback as sent by this
        proxy, so WorkOS's fallback=auth0 for it is counted as solicited."""
        target = workos_target(self.settings, conn, query)
        extra = [(b"set-cookie", cookie)] if cookie else []
        if wants_form_page(self.settings.redirect_mode, scope["method"], form, body):
            headers, page = form_page(target, body)
            await send({"type": "http.response.start", "status": 200, "headers": headers + extra})
            await send({"type": "http.response.body", "body": page})
            return 200
        # 307 keeps the method and body (RFC 9110 section 15.4.8); 302/303 would turn a POST into a GET.
        await send(
            {
                "type": "http.response.start",
                "status": 307,
                "headers": [(b"location", target.encode("latin-1")), NO_STORE, (b"content-length", b"0"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return 307


def make_binder(settings: Settings, started: float) -> Binder | None:
    """The transaction binding in force, or None when SSO_PROXY_TRANSACTION_BINDING is false. The
    previous login cookie format is read for one login lifetime after ``started`` (a deploy)."""
    if not settings.transaction_binding:
        return None
    ttl = settings.transaction_ttl
    return Binder(Keys(settings.transaction_keys), ttl, frozenset(settings.public_hosts), started + ttl)


def carries_login_value(cb: Callback) -> bool:
    """Whether the callback carries a state or RelayState a login's starter issued (for counting unbound callbacks)."""
    return bool(transaction_values(cb))


RELOAD_STATUS = {"success": 200, "unchanged": 200, "error": 422, "unsettled": 409, "busy": 429}


def create_ops_app(
    store: RouteStore, metrics: Metrics, lifecycle: Lifecycle, policy: AdminPolicy | None = None
) -> AdminGuard:
    """The operations listener: metrics, health, readiness, reload and the map in force.

    Every request passes :class:`proxy.admin.AdminGuard` first (Host, cross-site, and for
    ``POST /-/reload`` the admin token); see proxy/admin.py.
    """

    # Rendering runs in a worker thread: at 20,000 connections /metrics and /routes held
    # the loop 0.2-0.7 s. The thread's Python code gives the GIL back every switch interval (5 ms);
    # the collectors copy what the loop mutates before reading it (metrics.py, progress.py).
    async def get_metrics(request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if lifecycle.draining:
            return PlainTextResponse("draining\n", status_code=503)
        if store.current is None:
            return PlainTextResponse("no route map loaded\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def reload(request: Request) -> Response:
        result = await store.reload("endpoint")  # parsed off the event loop
        body = {"result": result.result, "sha256": result.sha256, "errors": list(result.errors)}
        headers = {"retry-after": "1"} if result.result == "busy" else None
        return JSONResponse(body, status_code=RELOAD_STATUS[result.result], headers=headers)

    async def routes(request: Request) -> Response:
        loaded = store.current
        if loaded is None:
            return JSONResponse(
                {"loaded": False, "version": __version__, "last_error": store.last_error}, status_code=503
            )
        body = await asyncio.to_thread(routes_body, loaded, store.last_error)
        return Response(body, media_type="application/json")

    def routes_body(loaded: Loaded, last_error: str | None) -> bytes:
        """``GET /routes`` for one map in force (a worker thread: the map is immutable, progress is copied).

        Written one connection at a time, as ``json.dumps(..., indent=2)`` would lay it out: a whole
        page's dicts and pieces at once (20,000 connections: 3.8 MB of JSON) cost 15-19 MiB of RSS
        that the allocator kept."""
        rm = loaded.route_map
        page = io.StringIO()
        head = {
            "loaded": True,
            "version": __version__,
            "sha256": rm.sha256,
            "source": loaded.source,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.loaded_at)),
            "mode": rm.mode,
            "unknown": rm.unknown,
            "connections_per_state": rm.counts_by_state(),
        }
        page.write(json.dumps(head, indent=2)[: -len("\n}")])
        states = ((name, json.dumps(conn.state)) for name, conn in sorted_connections(rm))
        write_member(page, "connections", states)
        # Since this process started: last callback, counts by decision, fallbacks, reachability.
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(metrics.progress.started_at))
        page.write(f',\n  "progress_since": {json.dumps(since)}')
        unseen = {id(entry): json.dumps(entry, indent=2).replace("\n", "\n    ") for entry in UNSEEN.values()}
        progress = (
            (name, unseen.get(id(entry)) or json.dumps(entry, indent=2).replace("\n", "\n    "))
            for name, entry in metrics.progress.entries(rm)
        )
        write_member(page, "connections_progress", progress)
        page.write(f',\n  "last_error": {json.dumps(last_error)}\n}}\n')
        out = page.getvalue().encode()
        del page
        # A page of a few MB for a large map, built of as many temporaries: hand their pages back.
        release_freed_memory()
        return out

    app = Starlette(
        routes=[
            Route("/metrics", get_metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/-/reload", reload, methods=["POST"]),
            Route("/routes", routes),
        ]
    )
    return AdminGuard(
        app,
        policy or AdminPolicy(),
        state_changing=lambda method, path: method not in SAFE_METHODS,
        on_refusal=lambda refusal: metrics.admin_refused.labels(refusal.reason).inc(),
    )
