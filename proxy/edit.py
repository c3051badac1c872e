"""``sso-proxy routes set CONNECTION STATE``: change one connection's state, keeping the rest of the file.

The route map is a file operators read, review and comment, so the edit is a text edit, not a
load-and-dump: the YAML is composed (``yaml.compose`` keeps every node's position) only to find
where ``connections.<name>.state`` is, and exactly that scalar is replaced. Comments, ordering,
quoting and line ends of everything else stay byte for byte. When the connection has no ``state``,
one ``state:`` line is inserted after its ``protocol`` (or before its first key). A value that is
not a plain or quoted one-line scalar (an alias, an anchor, a block scalar) is refused rather than
rewritten. The result is validated with :func:`proxy.routemap.parse_routemap` and checked to say
what was asked before anything is written; writing is atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import re
from typing import TextIO

import yaml

from proxy.errors import ProxyError, RouteMapError
from proxy.export import write_routemap_atomic
from proxy.routemap import STATES, SafeLoader, parse_routemap

# A one-line scalar that can be swapped for another word: plain, or single/double quoted.
_SIMPLE_SCALAR = re.compile(r"""[A-Za-z0-9_.-]*|"[^"\\\n]*"|'[^'\n]*'""")


class EditError(ProxyError):
    """The edit cannot be made; the message says why and where."""


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


def locate_connection(text: str, connection: str, source: str = "routes.yaml") -> yaml.MappingNode:
    """The mapping node of ``connections.<connection>``; EditError when there is none."""
    try:
        root = yaml.compose(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        raise EditError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise EditError(f"{source}: not a route map (expected a mapping with connections)")
    pair = _key(root, "connections")
    if pair is None or not isinstance(pair[1], yaml.MappingNode):
        raise EditError(f"{source}: has no connections mapping")
    connections = pair[1]
    found = _key(connections, connection)
    if found is None:
        known = sorted(str(k.value) for k, _ in connections.value if isinstance(k, yaml.ScalarNode))
        raise EditError(f"{source}: connection {connection!r} not found (known: {', '.join(known) or 'none'})")
    key, body = found
    if not isinstance(body, yaml.MappingNode):
        raise EditError(f"{_where(source, key)}: connections.{connection} is not a mapping")
    return body


def edit_state(text: str, connection: str, state: str, source: str = "routes.yaml") -> tuple[str, str | None]:
    """(new text, previous state value or None when there was no ``state`` key). Not validated."""
    if state not in STATES:
        raise EditError(f"state must be one of {', '.join(STATES)} (got {state!r})")
    body = locate_connection(text, connection, source)
    pair = _key(body, "state")
    if pair is not None:
        node = pair[1]
        start, end = node.start_mark.index, node.end_mark.index
        if not isinstance(node, yaml.ScalarNode) or not _SIMPLE_SCALAR.fullmatch(text[start:end]):
            raise EditError(
                f"{_where(source, node)}: connections.{connection}.state is not a plain one-line value; edit it by hand"
            )
        return text[:start] + state + text[end:], str(node.value)
    if not body.value:
        raise EditError(f"{_where(source, body)}: connections.{connection} is empty; add protocol and state by hand")
    first_key = body.value[0][0]
    if body.flow_style:
        at = first_key.start_mark.index
        return text[:at] + f"state: {state}, " + text[at:], None
    newline = "\r\n" if "\r\n" in text else "\n"
    indent = " " * first_key.start_mark.column
    protocol = _key(body, "protocol")
    if protocol is not None and protocol[1].start_mark.line == protocol[1].end_mark.line:
        # After `protocol: saml  # comment`, so the two fields read together.
        at = _line_end(text, protocol[1].end_mark.index)
        if not text[:at].endswith("\n"):
            text, at = text + newline, at + len(newline)
    else:
        at = _line_start(text, first_key.start_mark.index)
        if text[at : first_key.start_mark.index].strip():
            raise EditError(f"{_where(source, first_key)}: cannot place a state line here; edit it by hand")
    return text[:at] + f"{indent}state: {state}{newline}" + text[at:], None


def set_state(
    text: str, connection: str, state: str, source: str = "routes.yaml", workos_domain: str | None = None
) -> str:
    """``text`` with ``connections.<connection>.state`` set to ``state``, everything else unchanged.

    Raises :class:`EditError` when the connection is missing, the state is invalid or the value
    cannot be edited in place, and :class:`RouteMapError` when the edited map does not validate.
    """
    return _edit_and_check(text, connection, state, source, workos_domain)[0]


def _edit_and_check(
    text: str, connection: str, state: str, source: str, workos_domain: str | None
) -> tuple[str, str | None]:
    """(new text, previous state): one compose and one validation, linear in the file."""
    new_text, old = edit_state(text, connection, state, source)
    checked = parse_routemap(new_text, source=source, workos_domain=workos_domain)
    conn = checked.connections.get(connection)
    if conn is None or conn.state != state:  # the located node was not the one the loader uses
        raise EditError(f"{source}: editing connections.{connection}.state did not take effect; edit by hand")
    return new_text, old


def run_set(
    path: str, connection: str, state: str, stdout: TextIO, stderr: TextIO, workos_domain: str | None = None
) -> int:
    """``sso-proxy routes set CONNECTION STATE --routes PATH``: edit, validate, write atomically."""
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except OSError as exc:
        stderr.write(f"error: cannot read {path}: {exc.strerror or exc}\n")
        return 1
    except UnicodeDecodeError as exc:
        stderr.write(f"error: {path}: not UTF-8 ({exc.reason} at byte {exc.start})\n")
        return 1
    try:
        new_text, old = _edit_and_check(text, connection, state, path, workos_domain)
    except EditError as exc:
        stderr.write(f"error: {exc}\n")
        return 1
    except RouteMapError as exc:
        stderr.write(f"error: {path} would not be a valid route map after the edit; nothing written\n{exc}\n")
        return 1
    if old == state:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        stdout.write(f"connection {connection}: already {state}, file unchanged (sha256 {digest})\n")
        return 0
    digest = hashlib.sha256(new_text.encode("utf-8")).hexdigest()
    try:
        write_routemap_atomic(new_text, path)
    except OSError as exc:
        stderr.write(f"error: cannot write {path}: {exc.strerror or exc}\n")
        return 1
    stdout.write(f"connection {connection}: {old or '(no state)'} -> {state} (sha256 {digest})\n")
    return 0
