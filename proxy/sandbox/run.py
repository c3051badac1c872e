"""Local stand-ins for Auth0 and WorkOS, and ``sso-proxy sandbox`` which runs them with the proxy.

The stand-ins are real HTTP servers behaving as the documented services do on the paths the proxy
touches. Tests, benchmarks and the sandbox use the same ones. Each records what it receives and
lists it at ``GET /_standin/requests`` (``DELETE`` clears), so a test can check what arrived.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import html
import os
import secrets
import shlex
import signal
import socket
import time
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, TextIO
from urllib.parse import quote, unquote_plus, urlencode, urlsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

import brotli
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from proxy.errors import ConfigError
from proxy.routing.callback import Callback, form_field, in_response_to, saml_document, transaction_values
from proxy.routing.decide import identify
from proxy.routing.routemap import Connection, RouteMap, load_routemap, make_routemap


def _recorder() -> tuple[list[dict[str, Any]], list[Route]]:
    received: list[dict[str, Any]] = []

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            received.clear()
            return Response(status_code=204)
        return JSONResponse(received)

    return received, [Route("/_standin/requests", requests, methods=["GET", "DELETE"])]


async def _record(received: list[dict[str, Any]], request: Request) -> bytes:
    body = await request.body()
    received.append(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
            "body_b64": base64.b64encode(body).decode(),
        }
    )
    return body


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded")


@dataclass(frozen=True, slots=True)
class UpstreamIdp:
    """How a stand-in sends a browser to one connection's identity provider."""

    protocol: str  # oidc | saml
    url: str  # the IdP's authorize (OIDC) or SSO (SAML) endpoint
    binding: str = "redirect"  # SAML: redirect (HTTP-Redirect, a 302) | post (HTTP-POST, an auto-post page)
    client_id: str = "auth0-standin-client"  # OIDC: the client the IdP knows
    response_type: str = "code"  # OIDC: code (back channel) | id_token (front channel, response_mode=form_post)
    entity_id: str | None = None  # SAML: the SP entity ID the IdP knows (default urn:auth0:<tenant>:<connection>)


def authn_request(request_id: str, acs_url: str, issuer: str) -> bytes:
    """A minimal SAML 2.0 AuthnRequest as Auth0 sends it (SAML core section 3.4.1)."""
    instant = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'ID="{request_id}" Version="2.0" IssueInstant="{instant}" '
        f"AssertionConsumerServiceURL={quoteattr(acs_url)} "
        'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST">'
        f'<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">{html.escape(issuer)}</saml:Issuer>'
        "</samlp:AuthnRequest>"
    ).encode()


def start_login(
    connection: str, idp: UpstreamIdp, public_origin: str, tenant: str = "standin"
) -> tuple[Response, tuple[str, ...]]:
    """The response sending the browser to ``idp`` for ``connection``, and the values it issued
    (OIDC: state; SAML: RelayState and the AuthnRequest ID)."""
    callback = f"{public_origin}/login/callback"
    state = secrets.token_urlsafe(24)
    if idp.protocol == "oidc":
        query = {
            "client_id": idp.client_id,
            "response_type": idp.response_type,
            "redirect_uri": callback,
            "scope": "openid email profile",
            "state": state,
        }
        if idp.response_type != "code":
            query |= {"response_mode": "form_post", "nonce": secrets.token_urlsafe(12)}
        return RedirectResponse(f"{idp.url}?{urlencode(query)}", status_code=302), (state,)
    request_id = "_" + secrets.token_hex(16)
    xml = authn_request(request_id, callback, idp.entity_id or f"urn:auth0:{tenant}:{connection}")
    if idp.binding == "post":
        fields = {"SAMLRequest": base64.b64encode(xml).decode(), "RelayState": state}
        inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}"/>' for k, v in fields.items())
        page = (
            "<!DOCTYPE html><html><head><title>Submit this form</title></head>"
            '<body onload="document.forms[0].submit()">'
            f'<form method="post" action="{html.escape(idp.url)}">{inputs}'
            '<noscript><input type="submit" value="Submit"/></noscript></form></body></html>'
        )
        return HTMLResponse(page), (state, request_id)
    deflated = zlib.compress(xml)[2:-4]  # raw DEFLATE (SAML bindings section 3.4.4.1)
    query = {"SAMLRequest": base64.b64encode(deflated).decode(), "RelayState": state}
    return RedirectResponse(f"{idp.url}?{urlencode(query)}", status_code=302), (state, request_id)


# Auth0's custom domain is served through an edge that compresses pages as the browser allows, and
# browsers ask for br and zstd. The stand-in's auto-post page is compressed the same way, so the
# proxy reads it as it will meet it.
EDGE_ENCODINGS = ("br", "zstd", "gzip")


def accepted_encoding(accept: str) -> str | None:
    """The first of :data:`EDGE_ENCODINGS` an Accept-Encoding header allows (RFC 9110 section
    12.5.3: q=0 refuses, ``*`` stands for any coding not listed), else None."""
    offered: dict[str, float] = {}
    for item in accept.split(","):
        name, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.strip():
            offered[name.strip().lower()] = q
    for encoding in EDGE_ENCODINGS:
        if offered.get(encoding, offered.get("*", 0.0)) > 0:
            return encoding
    return None


def edge_encoded(response: Response, accept: str) -> Response:
    """A 200 ``text/html`` response compressed as the edge would for this Accept-Encoding."""
    encoding = accepted_encoding(accept)
    if response.status_code != 200 or response.media_type != "text/html" or encoding is None:
        return response
    if encoding == "br":
        body = brotli.compress(response.body)
    elif encoding == "zstd":
        body = zstandard.ZstdCompressor().compress(response.body)
    else:
        body = gzip.compress(response.body)
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    headers |= {"content-encoding": encoding, "vary": "accept-encoding"}
    return Response(body, status_code=200, headers=headers)


class Transactions:
    """The logins one service started (state, RelayState, AuthnRequest ID), each usable once.

    A callback is this service's when one of its values was issued here; a SAML response without
    ``InResponseTo`` is IdP-initiated (nobody started it). Mutated only on the stand-in's own loop.
    """

    def __init__(self) -> None:
        self._issued: dict[str, tuple[str, ...]] = {}

    def issue(self, values: tuple[str, ...]) -> None:
        for value in values:
            self._issued[value] = values

    def __contains__(self, value: object) -> bool:
        return value in self._issued

    def values(self) -> list[str]:
        return sorted(self._issued)

    def claim(self, cb: Callback) -> str:
        """``issued`` (one of its values was issued here; now used), ``idp_initiated`` (a SAML
        response answering no request), or ``foreign`` (someone else started it)."""
        xml = saml_document(cb)
        reply_to = in_response_to(xml) if xml else None
        candidates = [value for _, value in transaction_values(cb)]
        wctx = form_field(cb.body, b"wctx") if cb.form else None
        if wctx is not None:
            candidates.append(unquote_plus(wctx.decode("latin-1")))
        if reply_to is not None:
            candidates.append(reply_to)
        for value in candidates:
            if value in self._issued:
                for used in self._issued[value]:
                    self._issued.pop(used, None)
                return "issued"
        return "idp_initiated" if xml is not None and reply_to is None else "foreign"


def create_workos_standin(
    client_id: str,
    proxy_origin: str,
    migrated: Iterable[str],
    route_map: RouteMap | None = None,
    idps: Mapping[str, UpstreamIdp] | None = None,
) -> Starlette:
    """WorkOS's Auth0-compatible callback endpoint: signs in what it started or what it can take as
    IdP-initiated for a migrated connection, and bounces the rest with ``fallback=auth0``, as WorkOS does.

    ``/sso/authorize?connection=X`` starts a login the way WorkOS does during a migration from Auth0:
    to the connection's IdP in ``idps``, with the callback on the Auth0 custom domain
    (``proxy_origin``), so the IdP needs no change. Connections are recognised with the proxy's own
    hint reading against ``route_map`` (default: a map of just the migrated names, which knows them by
    ``connection`` and ``urn:auth0`` audience). Issued values are listed at ``/_standin/issued``.
    """
    known = frozenset(migrated)
    table = route_map or make_routemap([Connection(name, "saml", "workos") for name in sorted(known)])
    received, routes = _recorder()
    transactions = Transactions()
    connections = dict(idps or {})

    async def callback(request: Request) -> Response:
        body = await _record(received, request)
        query: bytes = request.scope["query_string"]
        cb = Callback(query, body, _is_form(request))
        identity = identify(cb, table)
        claim = transactions.claim(cb)
        if claim == "issued" or (claim == "idp_initiated" and identity.connection in known):
            name = identity.connection or "(started here)"
            return HTMLResponse(f"<h1>Signed in through WorkOS</h1><p>connection: {name}</p>")
        back = f"{proxy_origin}/login/callback?" + (query.decode("latin-1") + "&" if query else "")
        return RedirectResponse(back + "fallback=auth0", status_code=307)

    async def authorize(request: Request) -> Response:
        await _record(received, request)
        connection = request.query_params.get("connection", "")
        if connection not in connections or connection not in known:
            return PlainTextResponse(f"connection {connection!r} is not set up in WorkOS\n", status_code=400)
        started, values = start_login(connection, connections[connection], proxy_origin)
        transactions.issue(values)
        return started

    async def list_issued(request: Request) -> Response:
        return JSONResponse(transactions.values())

    routes += [
        Route(f"/sso/{client_id}/auth0/callback", callback, methods=["GET", "POST"]),
        Route("/sso/authorize", authorize),
        Route("/_standin/issued", list_issued),
    ]
    return Starlette(routes=routes)


def _public_origin(request: Request, configured: str | None) -> str:
    """This login's custom domain as the browser sees it: configured, else what the proxy forwarded."""
    if configured:
        return configured
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return f"{proto}://{host}"


def create_auth0_standin(
    cname_api_key: str | None = None,
    app_url: str | None = None,
    idps: Mapping[str, UpstreamIdp] | None = None,
    public_origin: str | None = None,
) -> Starlette:
    """Auth0's custom domain as the proxy meets it (login callback, authorize, token, discovery).

    ``/authorize?connection=X`` for a connection in ``idps`` starts a transaction as Auth0 does: a
    302 to the IdP with ``state`` and ``redirect_uri`` (OIDC), or a real AuthnRequest by the
    HTTP-Redirect or HTTP-POST binding (SAML). What it issued is listed at ``/_standin/issued``.
    """
    received, routes = _recorder()
    transactions = Transactions()
    connections = dict(idps or {})

    def refused(request: Request) -> Response | None:
        if cname_api_key and request.headers.get("cname-api-key") != cname_api_key:
            return PlainForbidden()
        return None

    async def login_callback(request: Request) -> Response:
        body = await _record(received, request)
        if (denied := refused(request)) is not None:
            return denied
        cb = Callback(request.scope["query_string"], body, _is_form(request))
        claim = transactions.claim(cb)
        if claim == "foreign" or (claim == "idp_initiated" and "connection" not in request.query_params):
            # Auth0 refuses a state it did not issue; IdP-initiated SAML must name its connection.
            return PlainTextResponse("Bad Request: invalid state\n", status_code=400)
        target = app_url or str(request.url_for("app"))
        response = RedirectResponse(f"{target}?code={secrets.token_urlsafe(12)}&state=app-state", status_code=302)
        response.set_cookie(
            "auth0",
            secrets.token_urlsafe(16),
            path="/",
            httponly=True,
            samesite="none",
            secure=request.url.scheme == "https",
        )
        response.set_cookie("auth0_compat", "1", path="/", httponly=True)
        return response

    async def authorize(request: Request) -> Response:
        await _record(received, request)
        if (denied := refused(request)) is not None:
            return denied
        connection = request.query_params.get("connection")
        if connection in connections:
            started, values = start_login(connection, connections[connection], _public_origin(request, public_origin))
            transactions.issue(values)
            return edge_encoded(started, request.headers.get("accept-encoding", ""))
        # No IdP configured here for that connection: Auth0's own login page (Universal Login).
        response = RedirectResponse("/u/login?state=login-state", status_code=302)
        response.set_cookie("auth0_session", "s-" + secrets.token_urlsafe(8), path="/", httponly=True)
        return response

    async def token(request: Request) -> Response:
        await _record(received, request)
        if (denied := refused(request)) is not None:
            return denied
        return JSONResponse(
            {"access_token": "at-" + secrets.token_urlsafe(8), "token_type": "Bearer", "expires_in": 86400}
        )

    async def gzipped(request: Request) -> Response:
        payload = gzip.compress(b"compressed body from auth0\n" * 50)
        return Response(payload, headers={"content-encoding": "gzip", "content-type": "text/plain"})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("seconds", "5")))
        return Response("slow\n")

    async def big(request: Request) -> Response:
        size = int(request.query_params.get("bytes", "1048576"))

        async def chunks() -> Any:
            block = b"x" * 65536
            left = size
            while left > 0:
                yield block[: min(left, len(block))]
                left -= len(block)

        return StreamingResponse(chunks(), headers={"content-length": str(size)})

    async def app(request: Request) -> Response:
        return HTMLResponse("<h1>Signed in through Auth0</h1>")

    async def echo(request: Request) -> Response:
        body = await _record(received, request)
        if (denied := refused(request)) is not None:
            return denied
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.scope["query_string"].decode("latin-1"),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
                "body": body.decode("latin-1"),
            }
        )

    async def list_issued(request: Request) -> Response:
        return JSONResponse(transactions.values())

    routes += [
        Route("/_standin/issued", list_issued),
        Route("/login/callback", login_callback, methods=["GET", "POST"]),
        Route("/authorize", authorize),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/_standin/gzip", gzipped),
        Route("/_standin/slow", slow),
        Route("/_standin/big", big),
        Route("/_standin/app", app, name="app"),
        Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    ]
    return Starlette(routes=routes)


def PlainForbidden() -> Response:  # noqa: N802 - reads as a response type at the call site
    return Response("cname-api-key missing or wrong\n", status_code=403, media_type="text/plain")


# --- `sso-proxy sandbox`: the stand-ins with (or without) the proxy ----------------------------

SANDBOX_CLIENT_ID = "client_sandbox"
SANDBOX_CNAME_API_KEY = "sandbox-cname-api-key"  # fixed and printed: a local toy, never a real key


@dataclass(frozen=True, slots=True)
class SandboxPlan:
    """What ``sso-proxy sandbox`` runs, from its flags (see ``sso-proxy sandbox --help``)."""

    routes: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 9090
    auth0_port: int = 8081
    workos_port: int = 8082
    proxy_origin: str | None = None  # where WorkOS sends fallbacks; default: the sandbox's public listener
    migrated: tuple[str, ...] | None = None  # what WorkOS handles; default: the map's connections in state workos
    standins_only: bool = False

    @property
    def browser_host(self) -> str:
        """The listeners' host as a browser on this machine reaches it (a container's published ports)."""
        return "localhost" if self.host in ("0.0.0.0", "::") else _url_host(self.host)  # noqa: S104

    @property
    def loopback_host(self) -> str:
        """The listeners' host as a process in the same network namespace reaches it."""
        return {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, _url_host(self.host))  # noqa: S104

    @property
    def public(self) -> str:
        """The sandbox's own public listener, as a browser reaches it."""
        return f"http://{self.browser_host}:{self.port}"

    @property
    def fallback_origin(self) -> str:
        """Where the WorkOS stand-in sends what it cannot handle: the proxy under test, else the sandbox's."""
        return self.proxy_origin or self.public

    def listeners(self) -> dict[str, int]:
        """Each listener this plan opens, by name, with its port."""
        named = {"Auth0 stand-in": self.auth0_port, "WorkOS stand-in": self.workos_port}
        if self.standins_only:
            return named
        return {"public listener": self.port, "operations listener": self.admin_port, **named}

    def proxy_env(self) -> dict[str, str]:
        """The settings that point a proxy at the stand-ins; printed in full, secrets included."""
        return {
            "WORKOS_CUSTOM_DOMAIN": f"{self.browser_host}:{self.workos_port}",
            "SSO_PROXY_WORKOS_SCHEME": "http",
            "WORKOS_CLIENT_ID": SANDBOX_CLIENT_ID,
            "AUTH0_FALLBACK_ORIGIN": f"http://{self.loopback_host}:{self.auth0_port}",
            "AUTH0_CNAME_API_KEY": SANDBOX_CNAME_API_KEY,
        }


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def parse_origin(value: str) -> str:
    """``--proxy-origin``: an http(s) origin (scheme, host, optional port; no path, query or user)."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or port == -1
    ):
        raise ConfigError(f"--proxy-origin: {value!r} is not an origin like http://127.0.0.1:8080")
    return f"{parts.scheme}://{parts.netloc}"


def check_plan(plan: SandboxPlan, route_map: RouteMap) -> tuple[str, ...]:
    """The connections WorkOS handles; a :class:`ConfigError` naming the first flag that cannot work."""
    ports = plan.listeners()
    for name, port in ports.items():
        if not 0 < port < 65536:
            raise ConfigError(f"{name} port {port}: must be 1-65535")
        other = next((n for n, p in ports.items() if p == port and n != name), None)
        if other is not None:
            raise ConfigError(f"{name} and {other} both on port {port}")
    if plan.migrated is None:
        return tuple(name for name, conn in route_map.connections.items() if conn.state == "workos")
    unknown = [name for name in plan.migrated if name not in route_map.connections]
    if unknown:
        raise ConfigError(f"--migrated: {', '.join(unknown)} not in the route map {plan.routes}")
    return plan.migrated


def port_in_use(host: str, port: int) -> bool:
    """Whether a listener could not bind ``host:port`` now (bound as uvicorn binds: SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False  # an unresolvable host fails later, in the listener, with its own message
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return True
    return False


def _saml_b64(audience: str, issuer: str) -> str:
    """A minimal unsigned SAMLResponse naming ``audience``: enough for the proxy to identify it."""
    xml = (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Issuer>{xml_escape(issuer)}</saml:Issuer>'
        "<saml:Assertion><saml:Conditions><saml:AudienceRestriction>"
        f"<saml:Audience>{xml_escape(audience)}</saml:Audience>"
        "</saml:AudienceRestriction></saml:Conditions></saml:Assertion></samlp:Response>"
    )
    return base64.b64encode(xml.encode()).decode()


def sandbox_idps(route_map: RouteMap) -> dict[str, UpstreamIdp]:
    """An IdP address per connection of the map, so ``/authorize?connection=X`` starts a login on either
    stand-in (the sandbox has no IdP: the browser stops at the redirect, which shows the binding)."""
    return {
        name: UpstreamIdp(
            conn.protocol, f"https://idp.example.test/{name}/" + ("authorize" if conn.protocol == "oidc" else "sso")
        )
        for name, conn in route_map.connections.items()
    }


def sandbox_help(plan: SandboxPlan, route_map: RouteMap, migrated: tuple[str, ...]) -> str:
    """What the sandbox prints: every address and secret it uses, then one curl command per path."""
    public = plan.fallback_origin if plan.standins_only else plan.public
    workos = f"http://{plan.browser_host}:{plan.workos_port}"
    auth0 = f"http://{plan.browser_host}:{plan.auth0_port}"
    admin = f"http://{plan.loopback_host}:{plan.admin_port}"
    env = plan.proxy_env()
    lines = ["sso-proxy sandbox is running (Ctrl+C stops it):"]
    if not plan.standins_only:
        lines += [
            f"  public listener      {public}",
            f"  operations listener  {admin}  (/metrics /healthz /readyz /routes; POST /-/reload with "
            "SSO_PROXY_ADMIN_TOKEN set)",
        ]
    lines += [
        f"  Auth0 stand-in       {auth0}  (demands the header cname-api-key: {SANDBOX_CNAME_API_KEY})",
        f"  WorkOS stand-in      {workos}  (client id {SANDBOX_CLIENT_ID}; callback "
        f"{workos}/sso/{SANDBOX_CLIENT_ID}/auth0/callback)",
        f"    handles:           {', '.join(migrated) or '(none)'}",
        f"    sends the rest to  {plan.fallback_origin}/login/callback?...&fallback=auth0",
        f"  route map            {plan.routes} (read once at start by the stand-ins)",
        f"  what each stand-in received: curl -s {auth0}/_standin/requests ; curl -s {workos}/_standin/requests",
        "",
    ]
    if plan.standins_only:
        port = urlsplit(public).port or (443 if public.startswith("https:") else 80)
        lines += [
            f"Run the proxy under test at {public} with these settings:",
            "  " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " \\",
            f"    sso-proxy serve --routes {shlex.quote(plan.routes)} --port {port}",
            "",
        ]
    else:
        lines += [
            "The proxy runs with (the same settings point your own `sso-proxy serve` at the stand-ins;",
            "see `sso-proxy sandbox --standins-only`):",
            *(f"  {k}={shlex.quote(v)}" for k, v in env.items()),
            "",
        ]
    lines += ["Try each path (-i shows the status and Location):", *_curl_examples(public, route_map, migrated)]
    if not plan.standins_only:
        lines += [
            "  # what the proxy decided, and the map in force",
            f"  curl -s {admin}/metrics | grep sso_proxy_callbacks_total",
            f"  curl -s {admin}/routes",
        ]
    return "\n".join([*lines, ""])


def _curl_examples(public: str, route_map: RouteMap, migrated: tuple[str, ...]) -> list[str]:
    """One curl command per path through the proxy, with connections taken from the map in force."""
    callback = f"{public}/login/callback"
    conns = route_map.connections
    saml = [name for name in migrated if conns[name].protocol == "saml"]
    legacy = [name for name, conn in conns.items() if conn.state == "legacy"]
    bounced = [name for name, conn in conns.items() if conn.state == "workos" and name not in migrated]
    out: list[str] = []
    if saml:
        conn = conns[saml[0]]
        audience = conn.audiences[0] if conn.audiences else f"urn:auth0:sandbox:{saml[0]}"
        issuer = conn.issuers[0] if conn.issuers else "http://idp.example.com"
        form = shlex.quote(f"SAMLResponse={_saml_b64(audience, issuer)}")
        out += [
            "  # SAML, connection in the query, cut over -> 307 to WorkOS",
            f"  curl -i {shlex.quote(f'{callback}?connection={quote(saml[0])}')} --data-urlencode {form}",
        ]
        if conn.audiences:
            out += [
                "  # SAML, connection read from the Audience inside the response -> 307 to WorkOS",
                f"  curl -i {shlex.quote(callback)} --data-urlencode {form} -d RelayState=xyz",
            ]
    if legacy:
        out += [
            "  # legacy connection -> forwarded to Auth0 (302 to the app, Set-Cookie)",
            f"  curl -i {shlex.quote(f'{callback}?connection={quote(legacy[0])}')} -d SAMLResponse=PHNhbWw+",
        ]
    if bounced:
        out += [
            "  # cut over but unknown to WorkOS -> WorkOS sends it back with fallback=auth0 -> Auth0",
            f"  curl -iL {shlex.quote(f'{callback}?connection={quote(bounced[0])}')} -d SAMLResponse=PHNhbWw+",
        ]
    return [
        *out,
        "  # OIDC back channel (code+state, no connection) -> defaults.unknown",
        f"  curl -i {shlex.quote(f'{callback}?code=abc&state=xyz')}",
        "  # anything else is passed through to Auth0",
        f"  curl -i {shlex.quote(f'{public}/authorize?client_id=app&response_type=code')}",
        *(
            [
                "  # a login Auth0 starts: 302 to the IdP, plus the proxy's binding cookie sso_proxy_tx_<id>",
                f"  curl -i {shlex.quote(f'{public}/authorize?client_id=app&connection={quote(next(iter(conns)))}')}",
            ]
            if conns
            else []
        ),
    ]


async def run_sandbox(plan: SandboxPlan, out: TextIO) -> None:
    """The stand-ins, and unless ``standins_only`` the proxy, until Ctrl+C or SIGTERM.

    Raises :class:`ConfigError` (bad flag, port in use) or :class:`RouteMapError` before anything
    is started or printed.
    """
    from proxy.edge.listener import ListenerServer, uvicorn_config

    route_map = load_routemap(plan.routes, plan.proxy_env()["WORKOS_CUSTOM_DOMAIN"])
    migrated = check_plan(plan, route_map)
    for name, port in plan.listeners().items():
        if port_in_use(plan.host, port):
            raise ConfigError(f"{name} port {port} on {plan.host} is in use (choose another with its flag)")
    idps = sandbox_idps(route_map)
    auth0 = ListenerServer(
        uvicorn_config(create_auth0_standin(SANDBOX_CNAME_API_KEY, idps=idps), plan.host, plan.auth0_port, 1.0)
    )
    workos = ListenerServer(
        uvicorn_config(
            create_workos_standin(SANDBOX_CLIENT_ID, plan.fallback_origin, migrated, route_map, idps),
            plan.host,
            plan.workos_port,
            1.0,
        )
    )
    standins = [asyncio.create_task(auth0.serve()), asyncio.create_task(workos.serve())]
    try:
        while not (auth0.started and workos.started):
            if any(task.done() for task in standins):
                raise ConfigError(
                    f"a stand-in could not listen on {plan.host} (ports {plan.auth0_port}, {plan.workos_port})"
                )
            await asyncio.sleep(0.01)
        if plan.standins_only:
            out.write(sandbox_help(plan, route_map, migrated))
            out.flush()
            await _until_signal()
        else:
            await _serve_proxy(plan, route_map, migrated, out)
    finally:
        auth0.should_exit = workos.should_exit = True
        await asyncio.gather(*standins, return_exceptions=True)


async def _until_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve_proxy(plan: SandboxPlan, route_map: RouteMap, migrated: tuple[str, ...], out: TextIO) -> None:
    from proxy.config import load_settings
    from proxy.logs import setup_logging
    from proxy.metrics import Metrics
    from proxy.reload import RouteStore
    from proxy.server import serve

    settings = load_settings(
        {
            **plan.proxy_env(),
            "SSO_PROXY_ROUTES": plan.routes,
            "SSO_PROXY_HOST": plan.host,
            "SSO_PROXY_PORT": str(plan.port),
            "SSO_PROXY_ADMIN_HOST": plan.host,
            "SSO_PROXY_ADMIN_PORT": str(plan.admin_port),
            "SSO_PROXY_DRAIN_SECONDS": "0",
            "SSO_PROXY_SHUTDOWN_TIMEOUT": "2",
            # POST /-/reload only with a token the operator chose (Authorization: Bearer ...).
            "SSO_PROXY_ADMIN_TOKEN": os.environ.get("SSO_PROXY_ADMIN_TOKEN", ""),
        }
    )
    logger = setup_logging(settings.log_level)
    metrics = Metrics()
    store = RouteStore(settings.routes, settings.workos_domain, metrics, logger, settle=settings.reload_settle)
    store.load_initial()
    out.write(sandbox_help(plan, route_map, migrated))
    out.flush()
    await serve(settings, store, metrics, logger)
