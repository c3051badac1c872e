"""The customer's application (``app.globex.test``): where Auth0 sends the browser after login.

It records requests the way the sandbox stand-ins do (``GET``/``DELETE /_standin/requests``), so
the tests read it with the same client.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

WELCOME = "Welcome to Globex"


def create_app_page() -> Starlette:
    log: list[dict[str, Any]] = []

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            log.clear()
            return Response(status_code=204)
        return JSONResponse(log)

    async def page(request: Request) -> Response:
        log.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": [[k, v] for k, v in request.headers.items()],
                "body_b64": base64.b64encode(await request.body()).decode(),
            }
        )
        return HTMLResponse(f"<!doctype html><title>{WELCOME}</title><h1>{WELCOME}</h1>")

    return Starlette(
        routes=[
            Route("/_standin/requests", requests, methods=["GET", "DELETE"]),
            Route("/{path:path}", page, methods=["GET", "POST"]),
        ]
    )
