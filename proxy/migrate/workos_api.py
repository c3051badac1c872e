"""The WorkOS API, for the command line only: does each mapped connection exist, and is it active?

The request path never calls WorkOS; ``sso-proxy routes check`` and ``routes set ... workos`` do.
This is the documented REST API ("List Connections": ``GET /connections`` with ``limit`` up to 100
and ``before``/``after`` cursors, answered as ``{"data": [...], "list_metadata": {"before", "after"}}``;
"Get a Connection": ``GET /connections/{id}``), with the bearer API key, read from the official SDK's
own variables ``WORKOS_API_KEY`` and ``WORKOS_BASE_URL`` (default ``https://api.workos.com``).

Why not the official ``workos`` SDK: its current release (10.x) pins ``httpx2``, ``cryptography`` 50
and ``pyjwt`` for what is here two GET requests; the standard library does them, and the client stays
one small module. A connection's ``state`` is one of ``active``, ``inactive``, ``draft``,
``validating``, ``requires_type``, ``deleting``; only ``active`` authenticates.

:func:`readiness` is the pure core (tested by a table); :class:`WorkosApi` does the HTTP.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.routing.routemap import RouteMap

DEFAULT_BASE_URL = "https://api.workos.com"
PAGE_LIMIT = 100
MAX_PAGES = 1000  # 100,000 connections: far beyond any tenant; a cursor loop cannot run forever
MAX_BODY = 8 * 1024 * 1024
ACTIVE = "active"


class WorkosApiError(Exception):
    """The WorkOS API could not answer (network, auth, unexpected shape): one line, no secrets."""


@dataclass(frozen=True, slots=True)
class WorkosConnection:
    """What the check needs of a WorkOS connection."""

    id: str
    state: str
    name: str = ""
    organization_id: str | None = None
    connection_type: str = ""


def _parse_connection(item: Any) -> WorkosConnection | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        return None
    state, org, name, kind = (item.get(k) for k in ("state", "organization_id", "name", "connection_type"))
    return WorkosConnection(
        id=item["id"],
        state=state if isinstance(state, str) else "unknown",
        name=name if isinstance(name, str) else "",
        organization_id=org if isinstance(org, str) else None,
        connection_type=kind if isinstance(kind, str) else "",
    )


class WorkosApi:
    """A minimal client: list every connection (all pages), get one."""

    def __init__(self, api_key: str, base_url: str | None = None, timeout: float = 15.0) -> None:
        if not api_key:
            raise WorkosApiError("WORKOS_API_KEY is not set")
        base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise WorkosApiError(f"WORKOS_BASE_URL must be an http(s) URL (got {base!r})")
        self.base_url = base
        self._key = api_key
        self.timeout = timeout
        self.requests = 0  # how many calls were made (tests assert pagination by count)

    def _get(self, path: str, query: Mapping[str, str] | None = None) -> tuple[int, Any]:
        url = f"{self.base_url}/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            url, headers={"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        )
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, data = response.status, response.read(MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read(MAX_BODY + 1)
        except (urllib.error.URLError, OSError) as exc:
            raise WorkosApiError(f"cannot reach {self.base_url}: {getattr(exc, 'reason', exc)}") from exc
        if status in (401, 403):
            raise WorkosApiError(f"WorkOS refused the API key (HTTP {status}); check WORKOS_API_KEY")
        if status == 404:
            return status, None
        if len(data) > MAX_BODY:
            raise WorkosApiError(f"{url.split('?')[0]}: answer larger than {MAX_BODY} bytes")
        if status != 200:
            raise WorkosApiError(f"{url.split('?')[0]}: HTTP {status}")
        try:
            return status, json.loads(data)
        except ValueError as exc:
            raise WorkosApiError(f"{url.split('?')[0]}: not JSON") from exc

    def list_connections(self) -> Iterator[WorkosConnection]:
        """Every connection, following ``list_metadata.after`` until it is null."""
        after: str | None = None
        for _ in range(MAX_PAGES):
            query = {"limit": str(PAGE_LIMIT), "order": "asc"}
            if after:
                query["after"] = after
            _, body = self._get("connections", query)
            if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
                raise WorkosApiError("GET /connections: no data list in the answer")
            for item in body["data"]:
                conn = _parse_connection(item)
                if conn is not None:
                    yield conn
            meta = body.get("list_metadata")
            after = meta.get("after") if isinstance(meta, Mapping) else None
            if not isinstance(after, str) or not after or not body["data"]:
                return
        raise WorkosApiError(f"GET /connections: more than {MAX_PAGES} pages; stopped")

    def get_connection(self, connection_id: str) -> WorkosConnection | None:
        """One connection by id, or None when WorkOS has none with that id."""
        status, body = self._get("connections/" + urllib.parse.quote(connection_id, safe=""))
        return None if status == 404 else _parse_connection(body)


# --- readiness: the pure core ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Readiness:
    """One connection of the route map against WorkOS."""

    connection: str
    state: str  # in the route map
    workos_connection_id: str | None
    workos_state: str  # active, inactive, ..., "missing" (no such id), "not mapped" (no id in the map)
    ready: bool
    note: str = ""


def readiness(route_map: RouteMap, found: Mapping[str, WorkosConnection]) -> list[Readiness]:
    """Each connection of the map: is its WorkOS connection there and active? (``found``: by id.)"""
    rows: list[Readiness] = []
    for name in sorted(route_map.connections):
        conn = route_map.connections[name]
        wid = conn.workos_connection_id
        if not wid:
            rows.append(
                Readiness(name, conn.state, None, "not mapped", False, "no workos_connection_id in the route map")
            )
            continue
        remote = found.get(wid)
        if remote is None:
            rows.append(Readiness(name, conn.state, wid, "missing", False, "WorkOS has no connection with this id"))
            continue
        note = ""
        workos_orgs = [org for org in conn.organizations if org.startswith("org_01")]
        if workos_orgs and remote.organization_id and remote.organization_id not in workos_orgs:
            note = f"organization in WorkOS is {remote.organization_id}, the map says {', '.join(workos_orgs)}"
        if remote.state != ACTIVE:
            note = note or f"only active connections authenticate (WorkOS says {remote.state})"
        rows.append(Readiness(name, conn.state, wid, remote.state, remote.state == ACTIVE, note))
    return rows


def render_readiness(rows: list[Readiness]) -> str:
    header = ("connection", "route state", "workos connection", "workos state", "ready", "note")
    table = [header] + [
        (r.connection, r.state, r.workos_connection_id or "-", r.workos_state, "yes" if r.ready else "no", r.note)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    ready = sum(r.ready for r in rows)
    risky = sorted(r.connection for r in rows if r.state in ("workos", "shadow") and not r.ready)
    lines.append("")
    lines.append(f"ready in WorkOS: {ready} of {len(rows)}")
    if risky:
        lines.append(
            f"cut over (or in shadow) but NOT ready in WorkOS (their logins bounce back or fail): {', '.join(risky)}"
        )
    return "\n".join(lines) + "\n"


def refusals(rows: list[Readiness], names: list[str]) -> list[str]:
    """Why ``routes set NAMES workos`` (or ``shadow``) must not go ahead: one line per connection WorkOS cannot take."""
    by_name = {r.connection: r for r in rows}
    out = []
    for name in names:
        row = by_name.get(name)
        if row is not None and not row.ready:
            out.append(
                f"{name}: WorkOS connection {row.workos_connection_id or '(none in the map)'} is {row.workos_state}"
                + (f" ({row.note})" if row.note else "")
                + "; use --force to set it anyway"
            )
    return out
