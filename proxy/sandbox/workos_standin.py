"""A stand-in for WorkOS's Auth0-compatible callback endpoint (and its ``/sso/authorize``)."""

from __future__ import annotations

from typing import Iterable, Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from proxy.routing.callback import Callback
from proxy.routing.decide import identify
from proxy.routing.routemap import Connection, RouteMap, make_routemap
from proxy.sandbox.standin import Transactions, UpstreamIdp, is_form, record, recorder, start_login


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
    received, routes = recorder()
    transactions = Transactions()
    connections = dict(idps or {})

    async def callback(request: Request) -> Response:
        body = await record(received, request)
        query: bytes = request.scope["query_string"]
        cb = Callback(query, body, is_form(request))
        identity = identify(cb, table)
        claim = transactions.claim(cb)
        if claim == "issued" or (claim == "idp_initiated" and identity.connection in known):
            name = identity.connection or "(started here)"
            return HTMLResponse(f"<h1>Signed in through WorkOS</h1><p>connection: {name}</p>")
        back = f"{proxy_origin}/login/callback?" + (query.decode("latin-1") + "&" if query else "")
        return RedirectResponse(back + "fallback=auth0", status_code=307)

    async def authorize(request: Request) -> Response:
        await record(received, request)
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
