"""A route file read as a stream, never held whole: its connections one at a time, validated as
:func:`proxy.routing.routemap.parse_routemap` validates them, and the operator's comments as
:func:`proxy.migrate.merge.read_comments` finds them (``routes import`` of a large map: the file it
merges with, and the file it has just written, read back).

Memory is one connection, the names seen (duplicate keys are errors) and the lines holding a ``#``;
time is linear in the file.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import IO, Any

import yaml

from proxy.errors import RouteMapError
from proxy.migrate import merge
from proxy.routing.routemap import Connection, _parse_connection, _shown, read_top_level
from proxy.routing.yamlread import MAP_END, MAP_START, SCALAR_EVENT, SEQ_END, SEQ_START, STREAM_END, SafeLoader


def scan_routemap(
    stream: IO[bytes], on_connection: Callable[[Connection], None], source: str, workos_domain: str | None = None
) -> tuple[str, str]:
    """(defaults.unknown, defaults.mode) of a route file, each connection handed to ``on_connection``
    as it is read; :class:`RouteMapError` with the errors ``parse_routemap`` would list, in its order.

    A connection is handed over before the file is known to be valid: on an error, drop them all.
    """
    found: list[str] = []

    def parse_connection(name: Any, body: Any) -> None:
        conn = _parse_connection(name, body, f"{source}: connections.{_shown(name)}", found, workos_domain)
        if conn is not None:
            on_connection(conn)

    errors, unknown, mode, connections = read_top_level(stream, parse_connection, source)
    for name, body in connections.items():
        if body is not None:  # a value the hook did not see (a mapping with an unusual tag)
            parse_connection(name, body)
    if errors or found:
        raise RouteMapError(source, errors + found)
    return unknown, mode


# --- the operator's comments, as merge.read_comments finds them -------------------------------------

# Characters str.splitlines() breaks lines at but YAML does not: a file holding one is read whole.
_ODD_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]|\r(?!\n?$)")


class _Lines:
    """The lines of a file that hold a ``#`` (all that comments can be on), by 0-based number."""

    def __init__(self) -> None:
        self.hashed: dict[int, str] = {}
        self.full: dict[int, str] = {}  # full-line comments, generated ones left out

    def rest(self, mark: Any) -> str:
        return self.hashed.get(mark.line, "")[mark.column :]


def _scan_lines(path: str) -> _Lines | None:
    """The lines holding a ``#``; None when the file has line breaks only ``str.splitlines`` sees.

    UnicodeDecodeError (the file is not UTF-8), as reading it whole would raise."""
    lines = _Lines()
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh):
            line = raw.decode("utf-8").removesuffix("\n")
            if _ODD_BREAKS.search(line):
                return None
            line = line.removesuffix("\r")
            if "#" not in line:
                continue
            lines.hashed[number] = line
            if line.lstrip().startswith("#"):
                comment = line.strip()
                if not merge.is_generated(comment):
                    lines.full[number] = comment
    return lines


class _Walker:
    """libyaml's events of a route file, for the lines each connection spans and end-of-line comments."""

    def __init__(self, loader: Any, lines: _Lines) -> None:
        self.next = loader.get_event
        self.lines = lines
        self.inline: dict[merge.Anchor, str] = {}
        self.end_mark: Any = None  # of the collection last closed

    def _comment(self, anchor: merge.Anchor, pattern: re.Pattern[str], mark: Any) -> None:
        if mark.line in self.lines.hashed:
            match = pattern.match(self.lines.rest(mark))
            if match:
                self.inline[anchor] = "#" + match.group(1)

    def last_line(self, event: Any, items: Callable[[Any], None] | None = None) -> int:
        """Consume the node ``event`` starts; the last line holding its content (merge._last_line).
        ``items`` sees each direct item of a block sequence."""
        if isinstance(event, SCALAR_EVENT):
            start, end = event.start_mark, event.end_mark
            return int(end.line - 1 if end.column == 0 and end.line > start.line else end.line)
        if not isinstance(event, (MAP_START, SEQ_START)):
            return int(event.start_mark.line)  # an alias: a valid route map has none
        last = event.start_mark.line
        while not isinstance(child := self.next(), (MAP_END, SEQ_END)):
            if items is not None and not event.flow_style:
                items(child)
            last = max(last, self.last_line(child))
        self.end_mark = child.end_mark
        return int(child.end_mark.line if event.flow_style else last)

    def field(self, key: Any, section: str) -> int:
        """One field of a connection or of defaults: its end-of-line comments (merge._inline_of)."""
        value = self.next()
        name = str(key.value)
        if isinstance(value, SCALAR_EVENT):
            self._comment((section, name, ""), merge.INLINE, value.end_mark)
            return self.last_line(value)
        self._comment((section, name, ""), merge.KEY_INLINE, key.end_mark)

        def item(event: Any) -> None:
            if isinstance(event, SCALAR_EVENT):
                self._comment((section, name, str(event.value)), merge.INLINE, event.end_mark)

        return self.last_line(value, item if isinstance(value, SEQ_START) else None)

    def mapping(self, event: Any, section: str) -> int:
        """A mapping's fields (a connection's, or defaults); its last line."""
        last = event.start_mark.line
        while not isinstance(key := self.next(), MAP_END):
            if isinstance(key, SCALAR_EVENT):
                last = max(last, key.end_mark.line, self.field(key, section))
            else:
                last = max(last, self.last_line(key), self.last_line(self.next()))
        self.end_mark = key.end_mark
        return int(key.end_mark.line if event.flow_style else last)

    def connections(self, key: Any, owner: Callable[[int, int, str], None]) -> None:
        """The top-level ``connections`` mapping: each connection's lines (previous end + 1 to its last)."""
        event = self.next()
        if not isinstance(event, MAP_START):
            self.last_line(event)
            return
        previous_end = key.start_mark.line
        while not isinstance(name_event := self.next(), MAP_END):
            body = self.next()
            if not isinstance(name_event, SCALAR_EVENT):
                self.last_line(name_event)
                self.last_line(body)
                continue
            name = str(name_event.value)
            if isinstance(body, MAP_START):
                if not body.flow_style:
                    self._comment((name, "", ""), merge.KEY_INLINE, name_event.end_mark)
                last = self.mapping(body, name)
                if body.flow_style:
                    self._comment((name, "", ""), merge.INLINE, self.end_mark)
            else:
                last = self.last_line(body)
                if isinstance(body, SEQ_START) and body.flow_style:
                    self._comment((name, "", ""), merge.INLINE, self.end_mark)
            last = max(last, name_event.start_mark.line)
            owner(previous_end + 1, last, name)
            previous_end = last

    def walk(self, owner: Callable[[int, int, str], None]) -> None:
        self.next()  # stream start
        if isinstance(self.next(), STREAM_END):
            return
        root = self.next()
        if not isinstance(root, MAP_START):
            return
        while not isinstance(key := self.next(), MAP_END):
            if isinstance(key, SCALAR_EVENT) and key.value == "connections":
                self.connections(key, owner)
                continue
            value = self.next()
            if isinstance(key, SCALAR_EVENT) and key.value == "defaults" and isinstance(value, MAP_START):
                self.mapping(value, "defaults")
            else:
                self.last_line(key)
                self.last_line(value)


def read_comments_file(path: str) -> merge.Comments:
    """What :func:`merge.read_comments` gives for the file's text, reading it as a stream.

    OSError, UnicodeDecodeError as reading the file would raise."""
    lines = _scan_lines(path)
    if lines is None:  # pragma: no cover - a route file with vertical tabs, form feeds or U+2028
        with open(path, "rb") as fh:
            return merge.read_comments(fh.read().decode("utf-8"))
    if not lines.full and not lines.hashed:
        return merge.Comments()
    numbers = sorted(lines.full)
    owners: dict[int, str] = {}

    def owner(first: int, last: int, name: str) -> None:
        for number in numbers[bisect_left(numbers, first) : bisect_right(numbers, last)]:
            owners[number] = name

    with open(path, "rb") as fh:
        loader = SafeLoader(fh)
        walker = _Walker(loader, lines)
        try:
            walker.walk(owner)
        except yaml.YAMLError:
            return merge.Comments()
        finally:
            loader.dispose()
    per: dict[str, list[str]] = {}
    header: list[str] = []
    for number in numbers:
        if number in owners:
            per.setdefault(owners[number], []).append(lines.full[number])
        else:
            header.append(lines.full[number])
    return merge.Comments(tuple(header), {k: tuple(v) for k, v in per.items()}, walker.inline)
