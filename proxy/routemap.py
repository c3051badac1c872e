"""``routes.yaml`` <-> :class:`RouteMap`: validation with located errors, lookup indexes, sha256.

The route map says, per Auth0 connection, whether its callbacks stay on Auth0 (``legacy``) or go to
WorkOS (``workos``), and which values seen inside a callback identify it. An identifier claimed by
two connections identifies neither: it is kept out of the index and reported as ambiguous, so the
decision never guesses with it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from proxy.errors import RouteMapError

STATES = ("legacy", "workos")
PROTOCOLS = ("saml", "oidc")
UNKNOWN_DEFAULTS = ("workos", "auth0")
MODES = ("normal", "auth0", "shadow")
# Whether callbacks of a connection are known to reach this proxy: ``unconfirmed`` when its recorded
# callback URLs are not on the custom domain (its IdP may post to Auth0 directly), ``confirmed`` when
# an operator has checked. Absent: nothing known against it.
REACHABILITY = ("unconfirmed", "confirmed")
# Identifier lists a connection may carry, and the index each one feeds.
ID_KINDS = ("audiences", "issuers", "acs_urls", "client_ids")
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
_CONNECTION_FIELDS = frozenset(
    ("protocol", "state", "organization", "workos_connection_id", "workos_acs_url", "reachability", "notes", *ID_KINDS)
)


@dataclass(frozen=True, slots=True)
class Connection:
    """One Auth0 connection and everything that identifies it in a callback."""

    name: str
    protocol: str
    state: str
    organization: str | None = None
    workos_connection_id: str | None = None
    workos_acs_url: str | None = None
    reachability: str | None = None
    notes: str | None = None
    audiences: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()
    acs_urls: tuple[str, ...] = ()
    client_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteMap:
    """A validated route map with one lookup index per identifier kind."""

    unknown: str = "workos"
    mode: str = "normal"
    connections: Mapping[str, Connection] = field(default_factory=lambda: MappingProxyType({}))
    # kind -> identifier -> connection name; ambiguous identifiers are absent.
    index: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    # kind -> identifier -> the connections that all claim it.
    ambiguous: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=lambda: MappingProxyType({}))
    sha256: str = ""

    def lookup(self, kind: str, value: str) -> str | None:
        """The connection an identifier of ``kind`` names, or None (unknown or ambiguous)."""
        table = self.index.get(kind)
        return table.get(value) if table is not None else None

    def counts_by_state(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for conn in self.connections.values():
            counts[conn.state] += 1
        return counts


def build_index(
    connections: Mapping[str, Connection],
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, tuple[str, ...]]]]:
    """Index every identifier; one claimed by several connections goes to ``ambiguous`` instead."""
    claims: dict[str, dict[str, list[str]]] = {kind: {} for kind in ID_KINDS}
    for conn in connections.values():
        for kind in ID_KINDS:
            for value in getattr(conn, kind):
                owners = claims[kind].setdefault(value, [])
                if conn.name not in owners:
                    owners.append(conn.name)
    index: dict[str, dict[str, str]] = {}
    ambiguous: dict[str, dict[str, tuple[str, ...]]] = {}
    for kind, table in claims.items():
        index[kind] = {value: owners[0] for value, owners in table.items() if len(owners) == 1}
        ambiguous[kind] = {value: tuple(sorted(owners)) for value, owners in table.items() if len(owners) > 1}
    return index, ambiguous


def ambiguity_warnings(route_map: RouteMap) -> list[str]:
    """One line per identifier that several connections claim."""
    return [
        f"{kind}: {value!r} is claimed by {', '.join(owners)}; it identifies none of them"
        for kind, table in route_map.ambiguous.items()
        for value, owners in sorted(table.items())
    ]


def workos_url_allowed(url: str, workos_domain: str | None) -> bool:
    """A WorkOS ACS URL may only point at the WorkOS custom domain or a workos.com host."""
    # Browsers read a backslash as a path separator ("https://evil.com\\.workos.com" goes to evil.com)
    # and a CR/LF would split the Location header: only printable ASCII, no backslash.
    if any(not "!" <= c <= "~" or c == "\\" for c in url):
        return False
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not _HOSTNAME.fullmatch(host) or parts.username or parts.password:
        return False
    if host == "workos.com" or host.endswith(".workos.com"):
        return True
    if workos_domain is None:
        return False
    return parts.netloc.lower() == workos_domain.lower() or host == workos_domain.lower()


def _string_list(value: Any, where: str, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        errors.append(f"{where}: must be a list of strings")
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            errors.append(f"{where}[{i}]: must be a non-empty string")
        elif item not in out:
            out.append(item)
    return tuple(out)


def _optional_string(raw: Mapping[str, Any], key: str, where: str, errors: list[str]) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors.append(f"{where}.{key}: must be a string")
        return None
    return value


def _choice(
    raw: Mapping[str, Any],
    key: str,
    choices: tuple[str, ...],
    where: str,
    errors: list[str],
    default: str | None = None,
) -> str:
    value = raw.get(key, default)
    if value not in choices:
        shown = "missing" if value is None else repr(value)
        errors.append(f"{where}.{key}: must be one of {', '.join(choices)} (got {shown})")
        return choices[0]
    return str(value)


def _parse_connection(
    name: Any, raw: Any, where: str, errors: list[str], workos_domain: str | None
) -> Connection | None:
    if not isinstance(name, str) or not name.strip():
        errors.append(f"{where}: connection names must be non-empty strings (got {name!r})")
        return None
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be a mapping with at least protocol and state")
        return None
    for key in sorted(set(raw) - _CONNECTION_FIELDS, key=str):
        errors.append(f"{where}.{key}: unknown field")
    protocol = _choice(raw, "protocol", PROTOCOLS, where, errors)
    state = _choice(raw, "state", STATES, where, errors)
    acs = _optional_string(raw, "workos_acs_url", where, errors)
    if acs is not None and not workos_url_allowed(acs, workos_domain):
        errors.append(
            f"{where}.workos_acs_url: {acs!r} must be an https URL on the WorkOS custom domain "
            f"({workos_domain or 'WORKOS_CUSTOM_DOMAIN not set'}) or a workos.com host"
        )
    lists = {kind: _string_list(raw.get(kind), f"{where}.{kind}", errors) for kind in ID_KINDS}
    reachability = _optional_string(raw, "reachability", where, errors)
    if reachability is not None and reachability not in REACHABILITY:
        errors.append(f"{where}.reachability: must be one of {', '.join(REACHABILITY)} (got {reachability!r})")
    return Connection(
        name=name,
        protocol=protocol,
        state=state,
        organization=_optional_string(raw, "organization", where, errors),
        workos_connection_id=_optional_string(raw, "workos_connection_id", where, errors),
        workos_acs_url=acs,
        reachability=reachability,
        notes=_optional_string(raw, "notes", where, errors),
        **lists,
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that records duplicate mapping keys instead of letting the last one win.

    A route map with ``defaults`` or a connection written twice is ambiguous about what the
    operator meant (kill switch or not?), so it is refused, located, like any other error.
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                mark = key_node.start_mark
                self.duplicates.append(f"{mark.line + 1}:{mark.column + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(data: bytes) -> tuple[Any, list[str]]:
    loader = _UniqueKeyLoader(data)
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def parse_routemap(text: str | bytes, source: str = "routes.yaml", workos_domain: str | None = None) -> RouteMap:
    """Parse and fully validate a route map; raise :class:`RouteMapError` listing every error."""
    data = text.encode() if isinstance(text, str) else text
    try:
        raw, duplicates = _load_yaml(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RouteMapError(source, [f"{where}: not valid YAML: {problem}"]) from exc
    errors: list[str] = [f"{source}:{where} (the YAML loader would keep the last one)" for where in duplicates]
    if not isinstance(raw, dict):
        raise RouteMapError(source, [f"{source}: must be a mapping with version, defaults, connections"])
    for key in sorted(set(raw) - {"version", "defaults", "connections"}, key=str):
        errors.append(f"{source}: {key}: unknown top-level field")
    if type(raw.get("version")) is not int or raw.get("version") != 1:  # True == 1 in Python
        errors.append(f"{source}: version: must be 1 (got {raw.get('version')!r})")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        errors.append(f"{source}: defaults: must be a mapping")
        defaults = {}
    for key in sorted(set(defaults) - {"unknown", "mode"}, key=str):
        errors.append(f"{source}: defaults.{key}: unknown field")
    unknown = _choice(defaults, "unknown", UNKNOWN_DEFAULTS, f"{source}: defaults", errors, "workos")
    mode = _choice(defaults, "mode", MODES, f"{source}: defaults", errors, "normal")
    raw_connections = raw.get("connections") or {}
    if not isinstance(raw_connections, dict):
        errors.append(f"{source}: connections: must be a mapping of connection name to route")
        raw_connections = {}
    connections: dict[str, Connection] = {}
    for name, body in raw_connections.items():
        conn = _parse_connection(name, body, f"{source}: connections.{name}", errors, workos_domain)
        if conn is not None:
            connections[conn.name] = conn
    if errors:
        raise RouteMapError(source, errors)
    return _assemble(connections, unknown, mode, hashlib.sha256(data).hexdigest())


def _assemble(connections: dict[str, Connection], unknown: str, mode: str, sha256: str) -> RouteMap:
    """A read-only RouteMap with its lookup indexes, from validated connections."""
    index, ambiguous = build_index(connections)
    return RouteMap(
        unknown=unknown,
        mode=mode,
        connections=MappingProxyType(connections),
        index=MappingProxyType({k: MappingProxyType(v) for k, v in index.items()}),
        ambiguous=MappingProxyType({k: MappingProxyType(v) for k, v in ambiguous.items()}),
        sha256=sha256,
    )


def load_routemap(path: str, workos_domain: str | None = None) -> RouteMap:
    """Read and validate the route map at ``path``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise RouteMapError(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    return parse_routemap(data, source=path, workos_domain=workos_domain)


def connection_to_dict(conn: Connection) -> dict[str, Any]:
    """The YAML form of one connection: fixed key order, empty fields left out."""
    out: dict[str, Any] = {"protocol": conn.protocol, "state": conn.state}
    for key in ("organization", "workos_connection_id", "workos_acs_url", "reachability", "notes"):
        value = getattr(conn, key)
        if value:
            out[key] = value
    for kind in ID_KINDS:
        values = getattr(conn, kind)
        if values:
            out[kind] = list(values)
    return out


def dump_routemap(route_map: RouteMap, header: str = "") -> str:
    """Deterministic YAML for a route map (connections sorted by name)."""
    doc = {
        "version": 1,
        "defaults": {"unknown": route_map.unknown, "mode": route_map.mode},
        "connections": {
            name: connection_to_dict(route_map.connections[name]) for name in sorted(route_map.connections)
        },
    }
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=False)
    return header + body


def make_routemap(connections: list[Connection], unknown: str = "workos", mode: str = "normal") -> RouteMap:
    """Build a RouteMap in code (tests, importer); sha256 is of its YAML form."""
    draft = _assemble({conn.name: conn for conn in connections}, unknown, mode, "")
    return replace(draft, sha256=hashlib.sha256(dump_routemap(draft).encode()).hexdigest())
