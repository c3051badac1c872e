"""``routes.yaml`` <-> :class:`RouteMap`: validation with located errors, lookup indexes, sha256.

The route map says, per Auth0 connection, whether its callbacks stay on Auth0 (``legacy``) or go to
WorkOS (``workos``), and which values seen inside a callback identify it. An identifier claimed by
two connections identifies neither: it is kept out of the index and reported as ambiguous, so the
decision never guesses with it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, Callable, Mapping
from urllib.parse import urlsplit

import yaml

from proxy.errors import RouteMapError
from proxy.routing.yamlread import _MAP, _SEQ, _STR, SafeDumper, load_yaml
from proxy.routing.yamlread import SafeLoader as SafeLoader  # re-exported: edit.py and the tests read it here

# legacy: callbacks go to Auth0; shadow: they still go to Auth0, and those that would go to WorkOS
# are counted (sso_proxy_shadow_total{connection}); workos: they go to WorkOS. A connection moves
# legacy -> shadow -> workos.
STATES = ("legacy", "shadow", "workos")
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
# A connection's one-value fields, in the order a route file lists them (the organization, and its
# lists, are written around them).
SCALAR_FIELDS = (
    "protocol",
    "state",
    "state_changed",
    "workos_connection_id",
    "workos_acs_url",
    "reachability",
    "notes",
    "strategy",
    "moved_to_saml",
)
_CONNECTION_FIELDS = frozenset((*SCALAR_FIELDS, "organization", "organizations", *ID_KINDS))
# Auth0's ADFS connections (strategy ``adfs``) speak WS-Federation to /login/callback (``wresult``,
# ``wctx``); WorkOS takes AD FS only as SAML (a SAML relying party the customer adds). Until the map
# records ``moved_to_saml: true`` such a connection cannot be on workos or shadow.
WSFED_STRATEGIES = frozenset(("adfs",))
MOVING_STATES = frozenset(("shadow", "workos"))


def wsfed_problem(name: str, strategy: str | None, state: str, moved_to_saml: bool) -> str | None:
    """Why a WS-Federation connection cannot be in ``state`` (None: it can)."""
    if strategy not in WSFED_STRATEGIES or moved_to_saml or state not in MOVING_STATES:
        return None
    return (
        f"{name} is an Auth0 {strategy} connection: it speaks WS-Federation (wresult/wctx), which WorkOS does not "
        "take (AD FS only as SAML), so its callbacks would stay on Auth0 whatever the map says. The customer "
        "must add a SAML relying party for WorkOS first; then record it with `moved_to_saml: true`"
    )


@dataclass(frozen=True, slots=True)
class Connection:
    """One Auth0 connection and everything that identifies it in a callback."""

    name: str
    protocol: str
    state: str
    # When ``state`` last changed (``routes set``), UTC, ``YYYY-MM-DDTHH:MM:SSZ``: progress counts from here.
    state_changed: str | None = None
    # The organizations it serves: one (``organization: org_A``), or several when the exporter
    # consolidated a connection shared by organizations (``organizations: [org_A, org_B]``).
    organizations: tuple[str, ...] = ()
    workos_connection_id: str | None = None
    workos_acs_url: str | None = None
    reachability: str | None = None
    notes: str | None = None
    strategy: str | None = None  # the Auth0 strategy, where it matters (adfs: WS-Federation), from the import
    moved_to_saml: bool = False  # an adfs connection whose customer added a SAML relying party for WorkOS
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

    def connection(self, name: str) -> Connection | None:
        """The connection called ``name``, or None: the request path's read (a packed map,
        :mod:`proxy.routing.packedmap`, keeps what is read here and only here)."""
        remember = getattr(self.connections, "remember", None)
        return remember(name) if remember is not None else self.connections.get(name)

    def counts_by_state(self) -> dict[str, int]:
        counts = {state: 0 for state in STATES}
        for conn in self.connections.values():
            counts[conn.state] += 1
        return counts


def build_index(
    connections: Mapping[str, Connection],
) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, tuple[str, ...]]]]:
    """Index every identifier; one claimed by several connections goes to ``ambiguous`` instead.

    No list per identifier while indexing (one for each shared one only): temporaries made between
    the map's own objects are the holes the next map's objects fill, which kept a replaced map's
    memory from going back to the system.
    """
    index: dict[str, dict[str, str]] = {}
    ambiguous: dict[str, dict[str, tuple[str, ...]]] = {}
    for kind in ID_KINDS:
        table: dict[str, str] = {}
        shared: dict[str, list[str]] = {}
        for conn in connections.values():
            name = conn.name
            for value in getattr(conn, kind):
                first = table.setdefault(value, name)
                if first != name:
                    owners = shared.get(value)
                    if owners is None:
                        shared[value] = [first, name]
                    # Connections are visited one at a time, so a repeat within one is the last owner.
                    elif owners[-1] != name:
                        owners.append(name)
        # Both in the order identifiers were first claimed, as before.
        ambiguous[kind] = {value: tuple(sorted(shared[value])) for value in table if value in shared} if shared else {}
        index[kind] = {value: owner for value, owner in table.items() if value not in shared} if shared else table
    return index, ambiguous


def ambiguity_warnings(route_map: RouteMap) -> list[str]:
    """One line per identifier that several connections claim."""
    return [
        f"{kind}: {value!r} is claimed by {', '.join(owners)}; it identifies none of them"
        for kind, table in route_map.ambiguous.items()
        for value, owners in sorted(table.items())
    ]


def cutover_warnings(route_map: RouteMap, only: frozenset[str] | None = None) -> list[str]:
    """One line per OIDC connection cut over to WorkOS while ``defaults.unknown`` is auth0.

    Auth0's usual OIDC callback (``code`` + ``state``) names no connection, so with unknown -> auth0
    every WorkOS-started login of that connection would end on Auth0's "invalid state".
    """
    if route_map.unknown != "auth0":
        return []
    return [
        f"connection {name} (oidc) is on workos but defaults.unknown is auth0: its code-flow callbacks "
        "(code+state, no connection named) cannot be identified and go to Auth0, which refuses a login WorkOS "
        "started. Set defaults.unknown: workos once every replica shares SSO_PROXY_TRANSACTION_KEYS and one "
        "SSO_PROXY_TRANSACTION_TTL has passed (Auth0-started logins are then bound and still reach Auth0; "
        "docs/routing.md 'Who starts a login'), or keep the connection on legacy"
        for name, conn in sorted(route_map.connections.items())
        if conn.protocol == "oidc" and conn.state == "workos" and (only is None or name in only)
    ]


def workos_url_problem(url: str, workos_domain: str | None) -> str | None:
    """Why ``url`` may not be a ``workos_acs_url``, or None when it may.

    It must be an https URL on the WorkOS custom domain or a workos.com host, with no user-info
    (``https://api.workos.com@evil.example/`` reads as a WorkOS host to a person, not to a browser)
    and no fragment: a ``#`` would silently drop the callback's query the proxy appends after it.
    """
    # Browsers read a backslash as a path separator ("https://evil.com\\.workos.com" goes to evil.com)
    # and a CR/LF would split the Location header: only printable ASCII, no backslash.
    where = (
        f"must be an https URL on the WorkOS custom domain ({workos_domain or 'WORKOS_CUSTOM_DOMAIN not set'}) "
        "or a workos.com host"
    )
    if any(not "!" <= c <= "~" or c == "\\" for c in url):
        return f"has a character outside printable ASCII, a space or a backslash; it {where}"
    if "#" in url:
        return "has a fragment (#): the callback's query appended after it would never reach WorkOS"
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return "has user-info (user@host): a WorkOS URL never has one"
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not _HOSTNAME.fullmatch(host):
        return where
    if host == "workos.com" or host.endswith(".workos.com"):
        return None
    if workos_domain is not None and (parts.netloc.lower() == workos_domain.lower() or host == workos_domain.lower()):
        return None
    return where


def workos_url_allowed(url: str, workos_domain: str | None) -> bool:
    """A WorkOS ACS URL may only point at the WorkOS custom domain or a workos.com host."""
    return workos_url_problem(url, workos_domain) is None


# Unicode categories a connection name may not contain: control characters (C0, C1 such as U+0085
# NEXT LINE, DEL), format characters (bidirectional overrides, zero-width), line and paragraph
# separators (U+2028, U+2029), surrogates and private use. YAML and many terminals and log viewers
# read several of them as line breaks, so a name carrying one could start a new line in a comment,
# a log or a review diff.
_FORBIDDEN_NAME_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a connection name, or None. Linear in the name."""
    if not name.strip():
        return "must be a non-empty string"
    for i, char in enumerate(name):
        if unicodedata.category(char) in _FORBIDDEN_NAME_CATEGORIES:
            return f"has a control, format or line-separator character (U+{ord(char):04X} at {i})"
    return None


def _shown(key: Any) -> str:
    """A key as it goes into an error line: as written, or quoted and escaped when it could break the line."""
    return str(key) if isinstance(key, str) and name_problem(key) is None else repr(key)


def _string_list(value: Any, where: str, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        errors.append(f"{where}: must be a list of strings")
        return ()
    out: dict[str, None] = {}  # an ordered set: `item not in list` was quadratic in the list's length
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            errors.append(f"{where}[{i}]: must be a non-empty string")
        else:
            out[item] = None
    return tuple(out)


def _optional_string(raw: Mapping[str, Any], key: str, where: str, errors: list[str]) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors.append(f"{where}.{key}: must be a string")
        return None
    return value


def format_instant(when: datetime) -> str:
    """A moment as the route map writes it: UTC, to the second, ``2026-12-07T19:50:00Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(value: str) -> float:
    """Unix seconds of a ``state_changed`` value as :func:`format_instant` writes it."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _instant(raw: Mapping[str, Any], key: str, where: str, errors: list[str]) -> str | None:
    """An RFC 3339 time with a zone (YAML reads an unquoted one as a timestamp), normalized to UTC."""
    value = raw.get(key)
    if value is None or value == "":
        return None
    when: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
    if when is None or when.tzinfo is None:
        errors.append(f"{where}.{key}: must be a time with its zone, e.g. 2026-12-07T19:50:00Z (got {value!r})")
        return None
    return format_instant(when)


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
    return choices[choices.index(value)]  # the one constant, not a copy per connection


def _parse_connection(
    name: Any, raw: Any, where: str, errors: list[str], workos_domain: str | None
) -> Connection | None:
    if not isinstance(name, str) or not name.strip():
        errors.append(f"{where}: connection names must be non-empty strings (got {name!r})")
        return None
    problem = name_problem(name)
    if problem is not None:
        errors.append(f"{where}: connection name {name!r} {problem}")
        return None
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be a mapping with at least protocol and state")
        return None
    for key in sorted(set(raw) - _CONNECTION_FIELDS, key=str):
        errors.append(f"{where}.{_shown(key)}: unknown field")
    protocol = _choice(raw, "protocol", PROTOCOLS, where, errors)
    state = _choice(raw, "state", STATES, where, errors)
    acs = _optional_string(raw, "workos_acs_url", where, errors)
    problem = workos_url_problem(acs, workos_domain) if acs is not None else None
    if problem is not None:
        errors.append(f"{where}.workos_acs_url: {acs!r} {problem}")
    lists = {kind: _string_list(raw.get(kind), f"{where}.{kind}", errors) for kind in ID_KINDS}
    reachability = _optional_string(raw, "reachability", where, errors)
    if reachability is not None and reachability not in REACHABILITY:
        errors.append(f"{where}.reachability: must be one of {', '.join(REACHABILITY)} (got {reachability!r})")
    organizations = _string_list(raw.get("organizations"), f"{where}.organizations", errors)
    single = _optional_string(raw, "organization", where, errors)
    if single is not None and organizations:
        errors.append(f"{where}: give organization or organizations, not both")
    elif single is not None:
        organizations = (single,)
    strategy = _optional_string(raw, "strategy", where, errors)
    moved = raw.get("moved_to_saml", False)
    if not isinstance(moved, bool):
        errors.append(f"{where}.moved_to_saml: must be true or false (got {moved!r})")
        moved = False
    if moved and strategy not in WSFED_STRATEGIES:
        errors.append(f"{where}.moved_to_saml: only for a WS-Federation connection (strategy: adfs)")
    problem = wsfed_problem(name, strategy, state, moved)
    if problem is not None:
        errors.append(f"{where}.state: {state}: {problem}")
    return Connection(
        name=name,
        protocol=protocol,
        state=state,
        state_changed=_instant(raw, "state_changed", where, errors),
        organizations=organizations,
        workos_connection_id=_optional_string(raw, "workos_connection_id", where, errors),
        workos_acs_url=acs,
        reachability=reachability,
        notes=_optional_string(raw, "notes", where, errors),
        strategy=strategy,
        moved_to_saml=moved,
        **lists,
    )


# YAML itself (libyaml's events, located problems) is read by proxy/routing/yamlread.py.


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One connection validated as it was read: the connection (None when refused) and its errors."""

    conn: Connection | None
    errors: list[str]


def read_top_level(
    data: bytes | IO[bytes], parse_connection: Callable[[Any, Any], Any], source: str
) -> tuple[list[str], str, str, dict[Any, Any]]:
    """Load a route file, each connection's mapping handed to ``parse_connection`` as it streams, and
    check its top level: (errors so far, defaults.unknown, defaults.mode, the connections as loaded,
    each the hook's result). :class:`RouteMapError` when the file cannot be read as a route map."""
    try:
        raw, problems, fatal = load_yaml(data, parse_connection)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RouteMapError(source, [f"{where}: not valid YAML: {problem}"]) from exc
    except RecursionError as exc:  # the pure-Python composer, without libyaml, recurses per level
        raise RouteMapError(source, [f"{source}: not valid YAML: nested too deeply"]) from exc
    errors = [f"{source}:{problem}" for problem in problems]
    if fatal:
        raise RouteMapError(source, errors)
    if not isinstance(raw, dict):
        raise RouteMapError(source, [f"{source}: must be a mapping with version, defaults, connections"])
    for key in sorted(set(raw) - {"version", "defaults", "connections"}, key=str):
        errors.append(f"{source}: {_shown(key)}: unknown top-level field")
    if type(raw.get("version")) is not int or raw.get("version") != 1:  # True == 1 in Python
        errors.append(f"{source}: version: must be 1 (got {raw.get('version')!r})")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        errors.append(f"{source}: defaults: must be a mapping")
        defaults = {}
    for key in sorted(set(defaults) - {"unknown", "mode"}, key=str):
        errors.append(f"{source}: defaults.{_shown(key)}: unknown field")
    unknown = _choice(defaults, "unknown", UNKNOWN_DEFAULTS, f"{source}: defaults", errors, "workos")
    mode = _choice(defaults, "mode", MODES, f"{source}: defaults", errors, "normal")
    raw_connections = raw.get("connections") or {}
    if not isinstance(raw_connections, dict):
        errors.append(f"{source}: connections: must be a mapping of connection name to route")
        raw_connections = {}
    return errors, unknown, mode, raw_connections


def parse_routemap(
    text: str | bytes, source: str = "routes.yaml", workos_domain: str | None = None, indexed: bool = True
) -> RouteMap:
    """Parse and fully validate a route map; raise :class:`RouteMapError` listing every error.

    ``indexed=False``: without lookup indexes (:func:`with_index` adds them), for a builder that
    hands the connections to another process.
    """
    data = text.encode() if isinstance(text, str) else text

    def parse_connection(name: Any, body: Any) -> _Parsed:
        found: list[str] = []
        conn = _parse_connection(name, body, f"{source}: connections.{_shown(name)}", found, workos_domain)
        return _Parsed(conn, found)

    errors, unknown, mode, raw_connections = read_top_level(data, parse_connection, source)
    connections: dict[str, Connection] = {}
    for name, body in raw_connections.items():
        parsed = body if isinstance(body, _Parsed) else parse_connection(name, body)  # read as it streamed
        errors += parsed.errors
        if parsed.conn is not None:
            connections[parsed.conn.name] = parsed.conn
    if errors:
        raise RouteMapError(source, errors)
    draft = RouteMap(
        unknown=unknown, mode=mode, connections=MappingProxyType(connections), sha256=hashlib.sha256(data).hexdigest()
    )
    return with_index(draft) if indexed else draft


def with_index(route_map: RouteMap) -> RouteMap:
    """``route_map`` with its lookup indexes built from its connections."""
    index, ambiguous = build_index(route_map.connections)
    return replace(
        route_map,
        index=MappingProxyType({k: MappingProxyType(v) for k, v in index.items()}),
        ambiguous=MappingProxyType({k: MappingProxyType(v) for k, v in ambiguous.items()}),
    )


def _assemble(connections: dict[str, Connection], unknown: str, mode: str, sha256: str) -> RouteMap:
    """A read-only RouteMap with its lookup indexes, from validated connections."""
    return with_index(RouteMap(unknown=unknown, mode=mode, connections=MappingProxyType(connections), sha256=sha256))


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
    if conn.state_changed:
        out["state_changed"] = conn.state_changed
    if len(conn.organizations) == 1:
        out["organization"] = conn.organizations[0]
    elif conn.organizations:
        out["organizations"] = list(conn.organizations)
    for key in ("workos_connection_id", "workos_acs_url", "reachability", "notes", "strategy"):
        value = getattr(conn, key)
        if value:
            out[key] = value
    if conn.moved_to_saml:
        out["moved_to_saml"] = True
    for kind in ID_KINDS:
        values = getattr(conn, kind)
        if values:
            out[kind] = list(values)
    return out


def _node(data: Any) -> yaml.Node:
    """The YAML node of plain data (dict, list, str, int), as PyYAML's safe representer builds it.

    Built directly: the representer's alias bookkeeping and per-value type dispatch cost more than
    the C emitter itself on a large map.
    """
    if isinstance(data, dict):
        return yaml.MappingNode(_MAP, [(_node(k), _node(v)) for k, v in data.items()], flow_style=False)
    if isinstance(data, list):
        return yaml.SequenceNode(_SEQ, [_node(item) for item in data], flow_style=False)
    if isinstance(data, bool):
        return yaml.ScalarNode("tag:yaml.org,2002:bool", "true" if data else "false")
    if not isinstance(data, (str, int)):  # pragma: no cover - the callers' data
        raise TypeError(f"cannot dump {type(data).__name__}")
    if isinstance(data, int):
        return yaml.ScalarNode("tag:yaml.org,2002:int", str(data))
    return yaml.ScalarNode(_STR, data)


def dump_routemap(route_map: RouteMap, header: str = "") -> str:
    """Deterministic YAML for a route map (connections sorted by name)."""
    doc = {
        "version": 1,
        "defaults": {"unknown": route_map.unknown, "mode": route_map.mode},
        "connections": {
            name: connection_to_dict(route_map.connections[name]) for name in sorted(route_map.connections)
        },
    }
    body = yaml.serialize(_node(doc), Dumper=SafeDumper, allow_unicode=True, width=1000)
    return header + body


def make_routemap(
    connections: list[Connection], unknown: str = "workos", mode: str = "normal", hashed: bool = True
) -> RouteMap:
    """Build a RouteMap in code (tests, importer); sha256 is of its YAML form (empty when not ``hashed``:
    the importer hashes the text it writes, and dumping a large map twice doubles the import's time)."""
    draft = _assemble({conn.name: conn for conn in connections}, unknown, mode, "")
    if not hashed:
        return draft
    return replace(draft, sha256=hashlib.sha256(dump_routemap(draft).encode()).hexdigest())
