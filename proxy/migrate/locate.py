"""The connections an edit touches, found in a route file's event stream without composing the rest.

``routes set`` needs, for each connection it edits, the key and body nodes with their positions (to
splice the new value in place, :mod:`proxy.migrate.edit`). Composing the whole file for that took a
second at 20,000 connections; here the other connections' events are read and dropped, and only the
named ones become nodes, exactly as ``yaml.compose`` makes them. Anything unusual (an alias, a
second document, a root that is not a mapping) is :class:`Irregular`: the caller composes the whole
file then, so errors read as they always did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from proxy.routing.routemap import SafeLoader
from proxy.routing.yamlread import ALIAS_EVENT, MAP_END, MAP_START, SCALAR_EVENT, SEQ_END, SEQ_START


class Irregular(Exception):
    """Something the streaming locator leaves to the full compose (aliases, a second document...)."""


Located = dict[str, tuple[yaml.Node, yaml.Node]]


class Locator:
    """The named connections' bodies from libyaml's events, every other one skipped unread.

    What composing the whole file gives for those connections (key and body nodes with their marks,
    the last of a duplicate), without a node for anything else: a 20,000-connection map took a
    second to compose for an edit of one line.
    """

    def __init__(self, text: str, wanted: set[str]) -> None:
        self.loader = SafeLoader(text)
        self.next: Callable[[], Any] = self.loader.get_event
        self.wanted = wanted

    def node(self, event: Any) -> yaml.Node:
        if isinstance(event, ALIAS_EVENT):
            raise Irregular
        if isinstance(event, SCALAR_EVENT):
            return yaml.ScalarNode(event.tag or "", event.value, event.start_mark, event.end_mark, style=event.style)
        if isinstance(event, SEQ_START):
            items = []
            while not isinstance(item := self.next(), SEQ_END):
                items.append(self.node(item))
            return yaml.SequenceNode(event.tag or "", items, event.start_mark, item.end_mark, event.flow_style)
        pairs = []
        while not isinstance(key := self.next(), MAP_END):
            pairs.append((self.node(key), self.node(self.next())))
        return yaml.MappingNode(event.tag or "", pairs, event.start_mark, key.end_mark, event.flow_style)

    def skip(self, event: Any) -> None:
        depth = 1 if isinstance(event, (SEQ_START, MAP_START)) else 0
        if isinstance(event, ALIAS_EVENT):
            raise Irregular
        while depth:
            event = self.next()
            if isinstance(event, ALIAS_EVENT):
                raise Irregular
            depth += (
                1 if isinstance(event, (SEQ_START, MAP_START)) else -1 if isinstance(event, (SEQ_END, MAP_END)) else 0
            )

    def locate(self) -> tuple[Located, list[str]] | None:
        """(wanted name -> (key, body), every connection name); None: no connections mapping.
        Irregular when the file is anything but one mapping without aliases."""
        try:
            self.next()  # stream start
            if not isinstance(self.next(), yaml.DocumentStartEvent) or not isinstance(root := self.next(), MAP_START):
                raise Irregular
            found: tuple[Located, list[str]] | None = None
            while not isinstance(key := self.next(), MAP_END):
                if not isinstance(key, SCALAR_EVENT):
                    raise Irregular
                value = self.next()
                if key.value == "connections":
                    found = self.connections(value) if isinstance(value, MAP_START) else None
                else:
                    self.skip(value)
            self.next()  # document end
            if not isinstance(self.next(), yaml.StreamEndEvent) or root.anchor is not None:
                raise Irregular
            return found
        finally:
            self.loader.dispose()

    def connections(self, event: Any) -> tuple[Located, list[str]]:
        if event.anchor is not None:
            raise Irregular
        located: Located = {}
        names: list[str] = []
        while not isinstance(key := self.next(), MAP_END):
            if not isinstance(key, SCALAR_EVENT):
                self.skip(key)
                self.skip(self.next())
                continue
            body = self.next()
            names.append(key.value)
            if key.value in self.wanted:
                located[key.value] = (self.node(key), self.node(body))
            else:
                self.skip(body)
        return located, names
