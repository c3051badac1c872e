"""WorkOS's ID mapping (Auth0 connection -> WorkOS connection and organization) into the route map.

After WorkOS imports the SSO connections it hands over a mapping of Auth0 to WorkOS IDs, as CSV or
JSON. Its columns are found by their headers (case, spaces, ``_`` and ``-`` ignored):

- the Auth0 side: a connection name (``externalId``, ``auth0_connection_name``, ``connection_name``,
  ``name`` ...) or an Auth0 connection ID (``auth0_connection_id``, ``source_connection_id`` ...; a
  ``con_...`` value), matched through the package's ``raw/auth0-connections.jsonl`` when given;
- ``workos_connection_id`` (``conn_...``) and, optionally, ``workos_organization_id`` (``org_...``).

Every row that matches no connection of the map is reported with its line (CSV) or index (JSON).
The reader is linear and bounded (:data:`MAX_BYTES`); nothing is read but these columns.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from proxy.migrate.package import one_line
from proxy.routing.routemap import Connection, RouteMap, make_routemap

MAX_BYTES = 32 * 1024 * 1024
NAME_KEYS = frozenset(
    ("externalid", "auth0connectionname", "connectionname", "auth0connection", "sourceconnectionname", "name")
)
AUTH0_ID_KEYS = frozenset(("auth0connectionid", "sourceconnectionid", "auth0id", "sourceid", "externalconnectionid"))
WORKOS_ID_KEYS = frozenset(("workosconnectionid", "workosid", "newconnectionid", "connectionid", "id"))
WORKOS_ORG_KEYS = frozenset(("workosorganizationid", "workosorgid", "organizationid"))


class MappingError(Exception):
    """The mapping file cannot be read at all."""


@dataclass(frozen=True, slots=True)
class MappingRow:
    where: str  # "mapping.csv:3" or "mapping.json[2]"
    auth0: str  # a name or a con_ id
    workos_connection_id: str
    workos_organization_id: str | None = None


@dataclass(slots=True)
class MappingResult:
    route_map: RouteMap
    applied: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # connections of the map with no row


def _norm(header: str) -> str:
    return "".join(c for c in header.lower() if c.isalnum())


def _pick(record: Mapping[str, str]) -> tuple[str, str, str | None] | None:
    """(auth0 name or id, WorkOS connection id, WorkOS organization id) of one record, by header."""
    auth0 = wid = org = ""
    for key, value in record.items():
        n, v = _norm(key), value.strip() if isinstance(value, str) else ""
        if not v:
            continue
        if n in WORKOS_ID_KEYS and v.startswith("conn_"):
            wid = wid or v
        elif n in WORKOS_ORG_KEYS and v.startswith("org_"):
            org = org or v
        elif n in AUTH0_ID_KEYS or (n in WORKOS_ID_KEYS and v.startswith("con_")):
            auth0 = auth0 or v
        elif n in NAME_KEYS:
            auth0 = v if not auth0 or auth0.startswith("con_") else auth0
    if not auth0 or not wid:
        return None
    return auth0, wid, org or None


def read_mapping(path: str) -> tuple[list[MappingRow], list[str]]:
    """(rows, rows that could not be read) of a CSV or JSON mapping file."""
    label = Path(path).name
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise MappingError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise MappingError(f"{path}: larger than {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8") from exc
    rows: list[MappingRow] = []
    bad: list[str] = []
    if text.lstrip()[:1] in ("[", "{"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise MappingError(f"{path}: not valid JSON") from exc
        if isinstance(doc, dict):
            doc = next(
                (doc[k] for k in ("data", "connections", "mappings", "mapping") if isinstance(doc.get(k), list)), None
            )
        if not isinstance(doc, list):
            raise MappingError(f"{path}: expected a list of objects (or data/connections/mappings: [...])")
        for i, item in enumerate(doc):
            picked = _pick({str(k): v for k, v in item.items()}) if isinstance(item, dict) else None
            if picked is None:
                bad.append(f"{label}[{i}]: no Auth0 connection and WorkOS connection id (conn_...) found")
            else:
                rows.append(MappingRow(f"{label}[{i}]", *picked))
        return rows, bad
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header: list[str] | None = None
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header = fields
                continue
            where = f"{label}:{reader.line_num}"
            picked = _pick(dict(zip(header, fields, strict=False))) if len(fields) == len(header) else None
            if picked is None:
                bad.append(f"{where}: no Auth0 connection and WorkOS connection id (conn_...) found")
            else:
                rows.append(MappingRow(where, *picked))
    except csv.Error as exc:
        raise MappingError(f"{path}: malformed CSV: {exc}") from exc
    return rows, bad


def read_auth0_ids(root: Path) -> dict[str, str]:
    """Auth0 connection id -> name from the package's ``raw/auth0-connections.jsonl`` (absent: {})."""
    path = root / "raw" / "auth0-connections.jsonl"
    ids: dict[str, str] = {}
    if not path.is_file():
        return ids
    try:
        with path.open("rb") as fh:
            for raw in iter(lambda: fh.readline(4 * 1024 * 1024), b""):
                try:
                    record = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                if (
                    isinstance(record, dict)
                    and isinstance(record.get("id"), str)
                    and isinstance(record.get("name"), str)
                ):
                    ids[record["id"]] = record["name"]
    except OSError:
        return ids
    return ids


def resolve(auth0: str, is_connection: Callable[[str], bool], auth0_ids: Mapping[str, str]) -> str | None:
    """The connection of the map a row's Auth0 side names (a name, or an id through ``auth0_ids``)."""
    name = auth0 if is_connection(auth0) else auth0_ids.get(auth0)
    return name if name is not None and is_connection(name) else None


def unmatched_line(row: MappingRow) -> str:
    return f"{row.where}: {one_line(row.auth0, 120)} is not a connection of the route map"


def apply_row(conn: Connection, row: MappingRow) -> tuple[Connection, str | None]:
    """One row applied to its connection: the connection, and what changed (None: nothing)."""
    said = []
    if conn.workos_connection_id != row.workos_connection_id:
        said.append(f"workos_connection_id {conn.workos_connection_id or '(none)'} -> {row.workos_connection_id}")
    conn = replace(conn, workos_connection_id=row.workos_connection_id)
    if row.workos_organization_id and conn.organizations != (row.workos_organization_id,):
        said.append(f"organization {', '.join(conn.organizations) or '(none)'} -> {row.workos_organization_id}")
        conn = replace(conn, organizations=(row.workos_organization_id,))
    return conn, (f"{conn.name}: {', '.join(said)}" if said else None)


def apply_mapping(route_map: RouteMap, rows: list[MappingRow], auth0_ids: Mapping[str, str]) -> MappingResult:
    """Fill ``workos_connection_id`` and ``organization`` (the WorkOS organization) from the rows."""
    connections = dict(route_map.connections)
    result = MappingResult(route_map)
    mapped: set[str] = set()
    for row in rows:
        name = resolve(row.auth0, connections.__contains__, auth0_ids)
        if name is None:
            result.unmatched.append(unmatched_line(row))
            continue
        connections[name], applied = apply_row(connections[name], row)
        mapped.add(name)
        if applied is not None:
            result.applied.append(applied)
    result.unmapped = sorted(n for n, c in connections.items() if n not in mapped and not c.workos_connection_id)
    result.route_map = make_routemap(list(connections.values()), unknown=route_map.unknown, mode=route_map.mode)
    return result


def summary_lines(result: MappingResult, bad: list[str]) -> list[str]:
    lines = [f"WorkOS ID mapping: {len(result.applied)} connection(s) updated"]
    lines.extend(f"  {line}" for line in result.applied)
    if result.unmatched or bad:
        lines.append(f"mapping rows not used: {len(result.unmatched) + len(bad)}")
        lines.extend(f"  {line}" for line in [*bad, *result.unmatched])
    if result.unmapped:
        lines.append(f"connections with no WorkOS connection id yet: {', '.join(result.unmapped)}")
    return lines
