"""A stand-in for Auth0's custom domain as the proxy meets it: login callback, authorize, token, and
pages compressed as Auth0's edge compresses them."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import secrets
from typing import Any, Mapping

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

from proxy.routing.callback import Callback
from proxy.sandbox.standin import STATE_FORMS, Transactions, UpstreamIdp, is_form, record, recorder, start_login

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
    state_form: str = "auth0",
) -> Starlette:
    """Auth0's custom domain as the proxy meets it (login callback, authorize, token, discovery).

    ``/authorize?connection=X`` for a connection in ``idps`` starts a transaction as Auth0 does: a
    302 to the IdP with ``state`` and ``redirect_uri`` (OIDC), or a real AuthnRequest by the
    HTTP-Redirect or HTTP-POST binding (SAML). What it issued is listed at ``/_standin/issued``.
    The state (OIDC) and RelayState (SAML) are of Auth0's own form (``state_form="auth0"``, see
    proxy/routing/auth0state.py), or random (``"opaque"``: Auth0 after a change of format).
    """
    if state_form not in STATE_FORMS:
        raise ValueError(f"state_form must be one of {', '.join(STATE_FORMS)}")
    received, routes = recorder()
    transactions = Transactions()
    connections = dict(idps or {})

    def refused(request: Request) -> Response | None:
        if cname_api_key and request.headers.get("cname-api-key") != cname_api_key:
            return PlainForbidden()
        problem = client_ip_problem(request.headers.getlist("x-forwarded-for"))
        if problem is not None:
            return PlainTextResponse(f"Bad Request: {problem}\n", status_code=400)
        return None

    async def login_callback(request: Request) -> Response:
        body = await record(received, request)
        if (denied := refused(request)) is not None:
            return denied
        cb = Callback(request.scope["query_string"], body, is_form(request))
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
        await record(received, request)
        if (denied := refused(request)) is not None:
            return denied
        connection = request.query_params.get("connection")
        if connection in connections:
            started, values = start_login(
                connection, connections[connection], _public_origin(request, public_origin), state_form=state_form
            )
            transactions.issue(values)
            return edge_encoded(started, request.headers.get("accept-encoding", ""))
        # No IdP configured here for that connection: Auth0's own login page (Universal Login).
        response = RedirectResponse("/u/login?state=login-state", status_code=302)
        response.set_cookie("auth0_session", "s-" + secrets.token_urlsafe(8), path="/", httponly=True)
        return response

    async def token(request: Request) -> Response:
        await record(received, request)
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
        body = await record(received, request)
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


def client_ip_problem(forwarded_for: list[str]) -> str | None:
    """What is wrong with a forwarded request's X-Forwarded-For, or None when it holds the one address
    Auth0 expects ("Configure Custom Domains with Self-Managed Certificates", "Original client ip
    address": "Just one ip address is expected"; without it Auth0 takes the proxy for the client)."""
    if len(forwarded_for) != 1:
        return f"X-Forwarded-For must be sent exactly once with the end user's IP address (got {len(forwarded_for)})"
    value = forwarded_for[0].strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"X-Forwarded-For must hold exactly one IP address, the end user's (got {value[:100]!r})"
    return None


def PlainForbidden() -> Response:  # noqa: N802 - reads as a response type at the call site
    return Response("cname-api-key missing or wrong\n", status_code=403, media_type="text/plain")
