"""Route-map edits as operators think of them: ``routes set``, ``routes mode``, ``routes unknown``.

The route map is a file operators read, review and comment, so an edit is a text edit, not a
load-and-dump. One core serves every command: the YAML is composed once (``yaml.compose`` keeps
every node's position) to find where each value to change is, and exactly those scalars are
replaced, last one first, so the positions found stay true. Comments, ordering, quoting and line
ends of everything else stay byte for byte. A missing key is inserted as one line (``state`` after
the connection's ``protocol``, a default before the first one). A value that is not a plain or
quoted one-line scalar (an alias, an anchor, a block scalar) is refused rather than rewritten.

The result is validated with :func:`proxy.routing.routemap.parse_routemap` and checked to say what was
asked before anything is written; writing is atomic (temp file, fsync, rename) and refused when the
file changed on disk since it was read. Each command prints one audit line (who, what, before ->
after, sha256 of the file before and after) that can go into the commit message of the change.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, TextIO

import yaml

from proxy.errors import ProxyError, RouteMapError
from proxy.migrate.locate import Irregular, Located, Locator
from proxy.migrate.routefile import write_routemap_atomic
from proxy.routing.routemap import (
    MODES,
    MOVING_STATES,
    STATES,
    UNKNOWN_DEFAULTS,
    WSFED_STRATEGIES,
    RouteMap,
    SafeLoader,
    cutover_warnings,
    format_instant,
    parse_routemap,
    wsfed_problem,
)

# A one-line scalar that can be swapped for another word: plain, or single/double quoted.
_SIMPLE_SCALAR = re.compile(r"""[A-Za-z0-9_.:+-]*|"[^"\\\n]*"|'[^'\n]*'""")
DEFAULT_CHOICES = {"mode": MODES, "unknown": UNKNOWN_DEFAULTS}


class EditError(ProxyError):
    """The edit cannot be made; the message says why and where."""


class Splice(NamedTuple):
    """Replace ``text[start:end]`` with ``new``."""

    start: int
    end: int
    new: str


@dataclass(frozen=True, slots=True)
class Change:
    """One value an edit sets: where (``connections.<name>.state``, ``defaults.mode``), from what, to what."""

    section: str  # a connection name, or "defaults"
    key: str
    before: str | None  # None: the key was not there
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _key(mapping: yaml.MappingNode, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    """The last (key, value) pair whose key is ``name``: the one ``yaml.safe_load`` keeps."""
    found: tuple[yaml.Node, yaml.Node] | None = None
    for key, value in mapping.value:
        if isinstance(key, yaml.ScalarNode) and key.value == name:
            found = (key, value)
    return found


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _where(source: str, node: yaml.Node) -> str:
    return f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _compose(text: str, source: str) -> yaml.MappingNode:
    try:
        root = yaml.compose(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        raise EditError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise EditError(f"{source}: not a route map (expected a mapping with connections)")
    return root


def _connections(root: yaml.MappingNode, source: str) -> yaml.MappingNode:
    pair = _key(root, "connections")
    if pair is None or not isinstance(pair[1], yaml.MappingNode):
        raise EditError(f"{source}: has no connections mapping")
    return pair[1]


def locate_connections(text: str, names: Sequence[str], source: str) -> tuple[Located, list[str]]:
    """(name -> (key node, body node) for each of ``names`` the map has, every connection name).

    Read from the event stream; a file that is anything but one plain mapping (aliases, several
    documents, a YAML error) is composed whole instead, so its errors read as they always did."""
    try:
        found = Locator(text, set(names)).locate()
    except (yaml.YAMLError, Irregular):
        connections = _connections(_compose(text, source), source)
        bodies = {str(k.value): (k, v) for k, v in connections.value if isinstance(k, yaml.ScalarNode)}
        return {n: bodies[n] for n in names if n in bodies}, list(bodies)
    if found is None:
        raise EditError(f"{source}: has no connections mapping")
    return found


def scalar_splice(
    text: str, mapping: yaml.MappingNode, key: str, value: str, what: str, source: str, after: str | None = None
) -> tuple[Splice | None, str | None]:
    """(the splice setting ``mapping[key]`` to ``value`` or None when it already is, the old value).

    A missing key is inserted as one line: after the one-line ``after`` key when there is one,
    else before the mapping's first key (first in a flow mapping).
    """
    pair = _key(mapping, key)
    if pair is not None:
        node = pair[1]
        start, end = node.start_mark.index, node.end_mark.index
        if not isinstance(node, yaml.ScalarNode) or not _SIMPLE_SCALAR.fullmatch(text[start:end]):
            raise EditError(f"{_where(source, node)}: {what}.{key} is not a plain one-line value; edit it by hand")
        old = str(node.value)
        return (None if old == value else Splice(start, end, value)), old
    if not mapping.value:
        raise EditError(f"{_where(source, mapping)}: {what} is empty; add {key} by hand")
    first_key = mapping.value[0][0]
    if mapping.flow_style:
        at = first_key.start_mark.index
        return Splice(at, at, f"{key}: {value}, "), None
    newline = "\r\n" if "\r\n" in text else "\n"
    indent = " " * first_key.start_mark.column
    anchor = _key(mapping, after) if after else None
    if anchor is not None and anchor[1].start_mark.line == anchor[1].end_mark.line:
        # After `protocol: saml  # comment`, so the two fields read together.
        at = _line_end(text, anchor[1].end_mark.index)
        prefix = "" if text[:at].endswith("\n") else newline
        return Splice(at, at, f"{prefix}{indent}{key}: {value}{newline}"), None
    at = _line_start(text, first_key.start_mark.index)
    if text[at : first_key.start_mark.index].strip():
        raise EditError(f"{_where(source, first_key)}: cannot place a {key} line here; edit it by hand")
    return Splice(at, at, f"{indent}{key}: {value}{newline}"), None


def apply_splices(text: str, splices: Sequence[Splice]) -> str:
    """Apply non-overlapping splices (any order given); the last in the text first."""
    out = text
    for splice in sorted(splices, key=lambda s: (s.start, s.end), reverse=True):
        out = out[: splice.start] + splice.new + out[splice.end :]
    return out


def plan_states(
    text: str,
    names: Sequence[str],
    state: str,
    source: str = "routes.yaml",
    when: str | None = None,
    located: tuple[Located, list[str]] | None = None,
) -> tuple[str, list[Change]]:
    """Set ``connections.<name>.state`` for every name: (new text, one Change per name). Not validated.

    ``when`` (``2026-12-07T19:50:00Z``): written as ``state_changed`` of each connection whose state
    this changes, so progress can be counted since the cut-over.
    """
    if state not in STATES:
        raise EditError(f"state must be one of {', '.join(STATES)} (got {state!r})")
    # One pass over the file (the last of a duplicate, as the loader keeps), so many edits stay linear.
    bodies, known = located if located is not None else locate_connections(text, names, source)
    splices: list[Splice] = []
    changes: list[Change] = []
    missing: list[str] = []
    for name in dict.fromkeys(names):
        if name not in bodies:
            missing.append(name)
            continue
        key, body = bodies[name]
        if not isinstance(body, yaml.MappingNode):
            raise EditError(f"{_where(source, key)}: connections.{name} is not a mapping")
        splice, old = scalar_splice(text, body, "state", state, f"connections.{name}", source, after="protocol")
        if splice is not None:
            splices.append(splice)
            if when is not None:
                # After the state line, or (no state line yet) after protocol, where state goes too.
                anchor = "state" if old is not None else "protocol"
                where = f"connections.{name}"
                stamp, _ = scalar_splice(text, body, "state_changed", when, where, source, after=anchor)
                if stamp is not None and old is None:  # both go in at the same place: one splice
                    stamp = Splice(splice.start, splice.end, splice.new + stamp.new)
                    splices.pop()
                if stamp is not None:
                    splices.append(stamp)
        changes.append(Change(name, "state", old, state))
    if missing:
        known = sorted(set(known))
        named = ("connection " if len(missing) == 1 else "connections ") + ", ".join(repr(m) for m in missing)
        raise EditError(f"{source}: {named} not found (known: {', '.join(known) or 'none'})")
    return apply_splices(text, splices), changes


def plan_default(text: str, key: str, value: str, source: str = "routes.yaml") -> tuple[str, list[Change]]:
    """Set ``defaults.<key>`` (``mode`` or ``unknown``): (new text, [Change]). Not validated."""
    choices = DEFAULT_CHOICES.get(key)
    if choices is None:
        raise EditError(f"defaults.{key}: not a default this command edits")
    if value not in choices:
        raise EditError(f"defaults.{key} must be one of {', '.join(choices)} (got {value!r})")
    root = _compose(text, source)
    pair = _key(root, "defaults")
    if pair is None:
        if root.flow_style:
            raise EditError(f"{source}: no defaults mapping; add one by hand")
        connections = _key(root, "connections")
        anchor = connections[0] if connections is not None else root.value[0][0] if root.value else None
        if anchor is None:
            raise EditError(f"{source}: not a route map (no connections)")
        newline = "\r\n" if "\r\n" in text else "\n"
        at = _line_start(text, anchor.start_mark.index)
        return apply_splices(text, [Splice(at, at, f"defaults:{newline}  {key}: {value}{newline}")]), [
            Change("defaults", key, None, value)
        ]
    if not isinstance(pair[1], yaml.MappingNode):
        raise EditError(f"{_where(source, pair[1])}: defaults is not a mapping; edit it by hand")
    splice, old = scalar_splice(text, pair[1], key, value, "defaults", source)
    return apply_splices(text, [splice] if splice else []), [Change("defaults", key, old, value)]


def check_changes(new_text: str, changes: Sequence[Change], source: str, workos_domain: str | None) -> RouteMap:
    """Validate the edited text and check that it says what was asked (RouteMapError / EditError)."""
    checked = parse_routemap(new_text, source=source, workos_domain=workos_domain)
    for change in changes:
        if change.section == "defaults":
            got: str | None = getattr(checked, change.key)
        else:
            conn = checked.connections.get(change.section)
            got = conn.state if conn is not None else None
        if got != change.after:  # the located node was not the one the loader uses
            where = "defaults" if change.section == "defaults" else f"connections.{change.section}"
            raise EditError(f"{source}: editing {where}.{change.key} did not take effect; edit by hand")
    return checked


def edit_state(text: str, connection: str, state: str, source: str = "routes.yaml") -> tuple[str, str | None]:
    """(new text, previous state value or None when there was no ``state`` key). Not validated."""
    new_text, changes = plan_states(text, [connection], state, source)
    return new_text, changes[0].before


def set_state(
    text: str, connection: str, state: str, source: str = "routes.yaml", workos_domain: str | None = None
) -> str:
    """``text`` with ``connections.<connection>.state`` set to ``state``, everything else unchanged.

    Raises :class:`EditError` when the connection is missing, the state is invalid or the value
    cannot be edited in place, and :class:`RouteMapError` when the edited map does not validate.
    """
    new_text, changes = plan_states(text, [connection], state, source)
    check_changes(new_text, changes, source, workos_domain)
    return new_text


def one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def login_name() -> str:
    """The account the command runs as: ``$USER``, ``$LOGNAME``, else its entry in the password
    database (as in a container or under cron, where neither is set); empty where there is none."""
    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if name:
        return name
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # no pwd (Windows), or a uid without an entry (runAsUser: 10001)
        return ""


def who_is(by: str | None, login: Callable[[], str] = login_name) -> str:
    """Who makes the change: ``--by``, else ``$USER``/``$LOGNAME``, else the login name, else ``unknown``."""
    return one_line(by or login() or "unknown")[:100] or "unknown"


def describe(changes: Sequence[Change], label: str | None = None) -> str:
    """``a, b legacy -> workos; c (none) -> workos`` (grouped by before -> after), plus what already was."""
    groups: dict[tuple[str | None, str], list[str]] = {}
    same: dict[str, list[str]] = {}
    for change in changes:
        what = "defaults." + change.key if change.section == "defaults" else change.section
        if change.changed:
            groups.setdefault((change.before, change.after), []).append(what)
        else:
            same.setdefault(change.after, []).append(what)
    parts = [f"{', '.join(names)} {before or '(none)'} -> {after}" for (before, after), names in groups.items()]
    parts += [f"{', '.join(names)} already {value}" for value, names in same.items()]
    return (f"{label}: " if label else "") + "; ".join(parts)


Planner = Callable[[str], tuple[str, list[Change]]]
# Given the map after the edit and the changes, messages saying why it must not be written ([] = go).
Gate = Callable[[RouteMap, list[Change]], list[str]]


def _read(path: str, stderr: TextIO) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8")
    except OSError as exc:
        stderr.write(f"error: cannot read {path}: {exc.strerror or exc}\n")
    except UnicodeDecodeError as exc:
        stderr.write(f"error: {path}: not UTF-8 ({exc.reason} at byte {exc.start})\n")
    return None


def run_edit(
    path: str,
    plan: Planner,
    stdout: TextIO,
    stderr: TextIO,
    workos_domain: str | None = None,
    *,
    label: str | None = None,
    dry_run: bool = False,
    by: str | None = None,
    gate: Gate | None = None,
    force: bool = False,
) -> int:
    """Read, plan, validate, gate, then (unless ``dry_run``) write atomically; one audit line on stdout.

    A dry run says everything the real run would (refusals, warnings), only writing nothing.
    """
    text = _read(path, stderr)
    if text is None:
        return 1
    try:
        new_text, changes = plan(text)
        checked = check_changes(new_text, changes, path, workos_domain)
    except EditError as exc:
        stderr.write(f"error: {exc}\n")
        return 1
    except RouteMapError as exc:
        stderr.write(f"error: {path} would not be a valid route map after the edit; nothing written\n{exc}\n")
        return 1
    refusals = gate(checked, [c for c in changes if c.changed]) if gate is not None else []
    if refusals:
        for refusal in refusals:
            stderr.write(f"refused: {refusal}\n")
        stderr.write(f"error: {path}: nothing written\n")
        return 1
    before = hashlib.sha256(text.encode("utf-8")).hexdigest()
    after = hashlib.sha256(new_text.encode("utf-8")).hexdigest()
    who = who_is(by) + (", --force" if force else "")
    what = describe(changes, label)
    if new_text == text:
        stdout.write(f"{path}: {what}; file unchanged (by {who}, sha256 {before})\n")
        return 0
    if dry_run:
        shown = path.lstrip("/")  # a/etc/... as git writes it, never a//etc/...
        diff = difflib.unified_diff(
            text.splitlines(keepends=True), new_text.splitlines(keepends=True), f"a/{shown}", f"b/{shown}"
        )
        stdout.writelines(line if line.endswith("\n") else line + "\n" for line in diff)
        stdout.write(f"{path}: {what} (dry run, nothing written; by {who}, sha256 {before} -> {after})\n")
        _warn_cutover(checked, changes, stderr)
        return 0
    current = _read(path, stderr)
    if current is None:
        return 1
    if current != text:  # someone else wrote it meanwhile: their change must not be lost
        stderr.write(f"error: {path} changed on disk during the edit; nothing written, run the command again\n")
        return 1
    try:
        write_routemap_atomic(new_text, path)
    except OSError as exc:
        stderr.write(f"error: cannot write {path}: {exc.strerror or exc}\n")
        return 1
    stdout.write(f"{path}: {what} (by {who}, sha256 {before} -> {after})\n")
    _warn_cutover(checked, changes, stderr)
    return 0


def _warn_cutover(checked: RouteMap, changes: Sequence[Change], stderr: TextIO) -> None:
    """An OIDC connection cut over while defaults.unknown is auth0 cannot take its
    code-flow callbacks; say so for the connections this edit moved (all of them when it set unknown)."""
    moved = [c for c in changes if c.changed]
    if any(c.section == "defaults" and c.key == "unknown" for c in moved):
        only = None
    else:
        only = frozenset(c.section for c in moved if c.section != "defaults")
        if not only:
            return
    for warning in cutover_warnings(checked, only):
        stderr.write(f"warning: {warning}\n")


@dataclass(frozen=True, slots=True)
class Selection:
    """What ``routes set --organization ...`` picks: the connections whose every organization is named,
    and the shared ones left as they are, with the organizations they still serve that were not named."""

    names: tuple[str, ...]
    left: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def notes(self) -> list[str]:
        return [
            f"{name} left as it is: shared with {', '.join(others)} too (name every organization that shares it "
            "to move it)"
            for name, others in self.left
        ]


def select_by_organizations(
    route_map: RouteMap, organizations: Sequence[str], source: str = "routes.yaml"
) -> Selection:
    """The connections every organization of which is named; a shared connection with only some of its
    organizations named stays as it is. EditError for an organization no connection has, or
    when nothing is selected."""
    named = set(organizations)
    known = {org for conn in route_map.connections.values() for org in conn.organizations}
    unknown = [org for org in dict.fromkeys(organizations) if org not in known]
    if unknown:
        shown = ", ".join(repr(org) for org in unknown)
        raise EditError(
            f"{source}: no connection has organization {shown} (known: {', '.join(sorted(known)) or 'none'})"
        )
    chosen: list[str] = []
    left: list[tuple[str, tuple[str, ...]]] = []
    for name in sorted(route_map.connections):
        orgs = route_map.connections[name].organizations
        if not orgs or named.isdisjoint(orgs):
            continue
        rest = tuple(org for org in orgs if org not in named)
        if rest:
            left.append((name, rest))
        else:
            chosen.append(name)
    selection = Selection(tuple(chosen), tuple(left))
    if not chosen:
        raise EditError(f"{source}: no connection selected; " + "; ".join(selection.notes()))
    return selection


def refuse_wsfed(
    text: str,
    names: Sequence[str],
    state: str,
    source: str,
    workos_domain: str | None,
    located: Located | None = None,
) -> None:
    """An Auth0 ``adfs`` connection (WS-Federation) cannot move to shadow or workos until the
    map records ``moved_to_saml: true`` (EditError naming each, with why). A map that does not parse
    is left to the edit's own validation. ``located`` (:func:`locate_connections`): the whole map is
    parsed only when one of the named connections says ``strategy: adfs``."""
    if located is not None and not any(_says_wsfed(body) for _, body in located.values()):
        return
    try:
        route_map = parse_routemap(text, source=source, workos_domain=workos_domain)
    except RouteMapError:
        return
    problems = []
    for name in names:
        conn = route_map.connections.get(name)
        problem = wsfed_problem(name, conn.strategy, state, conn.moved_to_saml) if conn is not None else None
        if problem is not None:
            problems.append(f"refused: {problem}")
    if problems:
        raise EditError("\n".join(problems) + f"\n{source}: nothing written")


def _says_wsfed(body: yaml.Node) -> bool:
    return isinstance(body, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == "strategy" and getattr(v, "value", None) in WSFED_STRATEGIES
        for k, v in body.value
    )


def run_set(
    path: str,
    connections: str | Sequence[str],
    state: str,
    stdout: TextIO,
    stderr: TextIO,
    workos_domain: str | None = None,
    *,
    organization: str | Sequence[str] | None = None,
    dry_run: bool = False,
    by: str | None = None,
    gate: Gate | None = None,
    force: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """``sso-proxy routes set CONN [CONN...] STATE`` or ``routes set --organization ORG [...] STATE``."""
    names = [connections] if isinstance(connections, str) else list(connections)
    orgs = [organization] if isinstance(organization, str) else list(organization or ())

    def plan(text: str) -> tuple[str, list[Change]]:
        chosen = names
        if orgs:
            try:
                route_map = parse_routemap(text, source=path, workos_domain=workos_domain)
            except RouteMapError as exc:
                raise EditError(f"{path} is not a valid route map; fix it first\n{exc}") from exc
            selection = select_by_organizations(route_map, orgs, path)
            for note in selection.notes():
                stderr.write(f"note: {note}\n")
            chosen = list(selection.names)
        located = locate_connections(text, chosen, path) if state in STATES else None
        if state in MOVING_STATES:
            refuse_wsfed(text, chosen, state, path, workos_domain, located[0] if located else None)
        return plan_states(text, chosen, state, path, when=format_instant(now()), located=located)

    label = None
    if orgs:
        label = ("organization " if len(orgs) == 1 else "organizations ") + ", ".join(one_line(o) for o in orgs)
    return run_edit(
        path, plan, stdout, stderr, workos_domain, label=label, dry_run=dry_run, by=by, gate=gate, force=force
    )


def run_default(
    path: str,
    key: str,
    value: str,
    stdout: TextIO,
    stderr: TextIO,
    workos_domain: str | None = None,
    *,
    dry_run: bool = False,
    by: str | None = None,
) -> int:
    """``sso-proxy routes mode normal|auth0|shadow`` and ``routes unknown workos|auth0``."""
    return run_edit(
        path, lambda text: plan_default(text, key, value, path), stdout, stderr, workos_domain, dry_run=dry_run, by=by
    )
