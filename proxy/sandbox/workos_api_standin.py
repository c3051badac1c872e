"""A stand-in for the WorkOS API's connection endpoints, beside the callback stand-in in ``sandbox.py``.

A real HTTP app answering the documented shapes, as strictly as the service: a bearer API key is
required (401 otherwise), ``limit`` is 1-100 (422 otherwise, default 10), ``order`` is ``asc`` or
``desc`` (default ``desc``, by creation), ``before``/``after`` are connection ids and must name one
(422 otherwise), pages carry ``list_metadata.before``/``after`` (null at either end), and
``GET /connections/{id}`` answers 404 for an unknown id. Every request is recorded at
``GET /_standin/requests`` like the other stand-ins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

STATES = ("active", "inactive", "draft", "validating", "requires_type", "deleting")


def workos_connection(
    conn_id: str, state: str = "active", name: str = "", organization_id: str | None = None, created: int = 0
) -> dict[str, Any]:
    """A connection object as the API returns it."""
    return {
        "object": "connection",
        "id": conn_id,
        "organization_id": organization_id,
        "connection_type": "GenericSAML",
        "name": name or conn_id,
        "state": state,
        "domains": [],
        "created_at": f"2026-11-{1 + created // 86400 % 28:02d}T00:00:{created % 60:02d}.000Z",
        "updated_at": "2026-11-28T00:00:00.000Z",
    }


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"message": message, "code": code}, status_code=status)


def create_workos_api_standin(api_key: str, connections: Iterable[Mapping[str, Any]]) -> Starlette:
    """``GET /connections`` (paginated) and ``GET /connections/{id}`` over the given connections."""
    ordered = [dict(c) for c in connections]  # creation order: the list order
    received: list[dict[str, Any]] = []

    def authorized(request: Request) -> bool:
        received.append({"method": request.method, "path": request.url.path, "query": str(request.url.query)})
        return request.headers.get("authorization") == f"Bearer {api_key}"

    async def list_connections(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "Unauthorized", "unauthorized")
        params = request.query_params
        raw_limit = params.get("limit", "10")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            return _error(422, "limit must be between 1 and 100", "invalid_request_parameters")
        order = params.get("order", "desc")
        if order not in ("asc", "desc", "normal"):
            return _error(422, "order must be asc or desc", "invalid_request_parameters")
        items = ordered if order in ("asc", "normal") else list(reversed(ordered))
        ids = [c["id"] for c in items]
        before, after = params.get("before"), params.get("after")
        if before and after:
            return _error(422, "before and after cannot both be given", "invalid_request_parameters")
        limit = int(raw_limit)
        if after:
            if after not in ids:
                return _error(422, f"after: no connection {after}", "invalid_request_parameters")
            start = ids.index(after) + 1
            page = items[start : start + limit]
        elif before:
            if before not in ids:
                return _error(422, f"before: no connection {before}", "invalid_request_parameters")
            end = ids.index(before)
            start = max(0, end - limit)
            page = items[start:end]
        else:
            start = 0
            page = items[:limit]
        more_after = start + len(page) < len(items)
        meta = {
            "before": page[0]["id"] if page and start > 0 else None,
            "after": page[-1]["id"] if page and more_after else None,
        }
        return JSONResponse({"object": "list", "data": page, "list_metadata": meta})

    async def get_connection(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "Unauthorized", "unauthorized")
        wanted = request.path_params["conn_id"]
        for conn in ordered:
            if conn["id"] == wanted:
                return JSONResponse(conn)
        return _error(404, f"Connection not found: '{wanted}'.", "entity_not_found")

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            received.clear()
            return Response(status_code=204)
        return JSONResponse(received)

    return Starlette(
        routes=[
            Route("/connections", list_connections),
            Route("/connections/{conn_id}", get_connection),
            Route("/_standin/requests", requests, methods=["GET", "DELETE"]),
        ]
    )
