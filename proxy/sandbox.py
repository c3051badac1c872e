"""Local stand-ins for Auth0 and WorkOS, and ``sso-proxy sandbox`` which runs them with the proxy.

The stand-ins are real HTTP servers behaving as the documented services do on the paths the proxy
touches. Tests, benchmarks and the sandbox use the same ones. Each records what it receives and
lists it at ``GET /_standin/requests`` (``DELETE`` clears), so a test can check what arrived.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import secrets
from typing import Any, Iterable, TextIO

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from proxy.callback import Callback
from proxy.decide import identify
from proxy.routemap import Connection, RouteMap, make_routemap


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


def create_workos_standin(
    client_id: str, proxy_origin: str, migrated: Iterable[str], route_map: RouteMap | None = None
) -> Starlette:
    """WorkOS's Auth0-compatible callback endpoint: handles migrated connections, bounces the rest.

    Connections are recognised with the proxy's own hint reading against ``route_map`` (default: a
    map of just the migrated names, which knows them by ``connection`` and ``urn:auth0`` audience).
    """
    known = frozenset(migrated)
    table = route_map or make_routemap([Connection(name, "saml", "workos") for name in sorted(known)])
    received, routes = _recorder()

    async def callback(request: Request) -> Response:
        body = await _record(received, request)
        query: bytes = request.scope["query_string"]
        identity = identify(Callback(query, body, _is_form(request)), table)
        if identity.connection in known:
            return HTMLResponse(f"<h1>Signed in through WorkOS</h1><p>connection: {identity.connection}</p>")
        back = f"{proxy_origin}/login/callback?" + (query.decode("latin-1") + "&" if query else "")
        return RedirectResponse(back + "fallback=auth0", status_code=307)

    routes.append(Route(f"/sso/{client_id}/auth0/callback", callback, methods=["GET", "POST"]))
    return Starlette(routes=routes)


def create_auth0_standin(cname_api_key: str | None = None, app_url: str | None = None) -> Starlette:
    """Auth0's custom domain as the proxy meets it (login callback, authorize, token, discovery)."""
    received, routes = _recorder()

    def refused(request: Request) -> Response | None:
        if cname_api_key and request.headers.get("cname-api-key") != cname_api_key:
            return PlainForbidden()
        return None

    async def login_callback(request: Request) -> Response:
        await _record(received, request)
        if (denied := refused(request)) is not None:
            return denied
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

    routes += [
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


def sandbox_help(public: str, admin: str) -> str:
    """The curl commands printed by ``make run``: one for each path through the proxy."""
    saml = base64.b64encode(
        b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Issuer>http://www.okta.com/acme</saml:Issuer>'
        b"<saml:Assertion><saml:Conditions><saml:AudienceRestriction>"
        b"<saml:Audience>urn:auth0:globex-prod:acme-okta</saml:Audience>"
        b"</saml:AudienceRestriction></saml:Conditions></saml:Assertion></samlp:Response>"
    ).decode()
    return "\n".join(
        [
            "sso-proxy sandbox is running:",
            f"  public listener      {public}",
            f"  operations listener  {admin}  (/metrics /healthz /readyz /routes; POST /-/reload with "
            "SSO_PROXY_ADMIN_TOKEN set)",
            "",
            "Try each path (-i shows the status and Location):",
            "  # SAML, connection in the query, cut over -> 307 to WorkOS",
            f"  curl -i '{public}/login/callback?connection=acme-okta' --data-urlencode 'SAMLResponse={saml}'",
            "  # SAML, connection read from the Audience inside the response -> 307 to WorkOS",
            f"  curl -i '{public}/login/callback' --data-urlencode 'SAMLResponse={saml}' -d RelayState=xyz",
            "  # legacy connection -> forwarded to Auth0 (302 to the app, Set-Cookie)",
            f"  curl -i '{public}/login/callback?connection=globex-adfs' -d SAMLResponse=PHNhbWw+",
            "  # cut over but unknown to WorkOS -> WorkOS sends it back with fallback=auth0 -> Auth0",
            f"  curl -iL '{public}/login/callback?connection=hooli-ping' -d SAMLResponse=PHNhbWw+",
            "  # OIDC back channel (code+state, no connection) -> defaults.unknown",
            f"  curl -i '{public}/login/callback?code=abc&state=xyz'",
            "  # anything else is passed through to Auth0",
            f"  curl -i '{public}/authorize?client_id=app&response_type=code'",
            "  # what the proxy decided, and the map in force",
            f"  curl -s {admin}/metrics | grep sso_proxy_callbacks_total",
            f"  curl -s {admin}/routes",
            "",
        ]
    )


async def run_sandbox(
    routes_path: str,
    host: str,
    port: int,
    admin_port: int,
    auth0_port: int,
    workos_port: int,
    migrated: tuple[str, ...],
    out: TextIO,
) -> None:
    """The proxy plus both stand-ins on loopback, until Ctrl+C."""
    from proxy.config import load_settings
    from proxy.listener import ListenerServer, uvicorn_config
    from proxy.logs import setup_logging
    from proxy.metrics import Metrics
    from proxy.reload import RouteStore
    from proxy.server import serve

    key = "sandbox-cname-api-key"
    # Bound to every interface (a container): the browser reaches the published ports on localhost.
    seen_as = "localhost" if host in ("0.0.0.0", "::") else host  # noqa: S104
    public = f"http://{seen_as}:{port}"
    settings = load_settings(
        {
            "WORKOS_CUSTOM_DOMAIN": f"{seen_as}:{workos_port}",
            "WORKOS_CLIENT_ID": "client_sandbox",
            "AUTH0_FALLBACK_ORIGIN": f"http://{host}:{auth0_port}",
            "AUTH0_CNAME_API_KEY": key,
            "SSO_PROXY_WORKOS_SCHEME": "http",
            "SSO_PROXY_ROUTES": routes_path,
            "SSO_PROXY_HOST": host,
            "SSO_PROXY_PORT": str(port),
            "SSO_PROXY_ADMIN_HOST": host,
            "SSO_PROXY_ADMIN_PORT": str(admin_port),
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
    auth0 = ListenerServer(uvicorn_config(create_auth0_standin(key), host, auth0_port, 1.0))
    workos = ListenerServer(
        uvicorn_config(
            create_workos_standin(
                "client_sandbox", public, migrated, store.current.route_map if store.current else None
            ),
            host,
            workos_port,
            1.0,
        )
    )
    standins = [asyncio.create_task(auth0.serve()), asyncio.create_task(workos.serve())]
    out.write(sandbox_help(public, f"http://{host}:{admin_port}"))
    out.write(
        f"Auth0 stand-in http://{host}:{auth0_port}, WorkOS stand-in http://{host}:{workos_port} "
        f"(migrated: {', '.join(migrated)})\n\n"
    )
    out.flush()
    try:
        await serve(settings, store, metrics, logger)
    finally:
        auth0.should_exit = workos.should_exit = True
        await asyncio.gather(*standins, return_exceptions=True)
