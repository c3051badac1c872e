"""``routes.yaml``'s YAML read from libyaml's events: plain values and located structural problems.

The route map's reader (:mod:`proxy.routing.routemap`) validates what this returns. Split from it
along the seam between YAML and the route map's meaning: this module knows tags, keys, aliases and
nesting, nothing of connections, except that the top-level ``connections`` mapping's entries can be
handed to a hook as they are read (so a large map is validated as it streams).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import yaml

# libyaml's parser (C) where PyYAML was built with it: about ten times faster than the pure-Python
# one, and it bounds nesting (1,000 levels). Its nodes carry the same marks, so errors stay located.
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MAX_NESTING = 64  # a route map is 4 levels deep; anything far deeper is not a route map


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"


# First characters of a plain scalar that no implicit resolver (bool, int, float, null, timestamp,
# merge...) of the loader starts with: such a scalar is a string, no regular expression needed (the
# resolver's per-scalar regexes were a third of a large map's parse).
_RESOLVERS: dict[Any, Any] = getattr(SafeLoader, "yaml_implicit_resolvers", {})
_STRING_FIRSTS = (
    frozenset()
    if None in _RESOLVERS
    else frozenset(chr(c) for c in range(0x20, 0x7F) if chr(c) not in _RESOLVERS) - {""}
)
_SCALAR = yaml.ScalarEvent
# libyaml's event classes, typed Any for the tools that walk a route file's events (the marks of the
# events a parser makes are always set).
SCALAR_EVENT: Any = yaml.ScalarEvent
ALIAS_EVENT: Any = yaml.AliasEvent
MAP_START: Any = yaml.MappingStartEvent
MAP_END: Any = yaml.MappingEndEvent
SEQ_START: Any = yaml.SequenceStartEvent
SEQ_END: Any = yaml.SequenceEndEvent
STREAM_END: Any = yaml.StreamEndEvent
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
ItemHook = Callable[[Any, Any], Any]


class _Builder:
    """Builds the Python value of a document from the parser's events and records located problems.

    What ``yaml.safe_load`` returns, in one pass over libyaml's events without composing a node tree
    (the tree of a 20,000-connection map, with two marks per node, peaked at 137 MB; the
    events are read one at a time): the common tags (str, null, map, seq) directly, every other tag
    by PyYAML's safe constructor. ``connections`` hands each connection's value to ``item_hook`` as
    soon as it is built, so a map is validated as it streams and only one raw connection is held at
    a time. Problems:

    - a mapping key written twice (``yaml.safe_load`` would silently keep the last one): a map with
      ``defaults`` or a connection written twice is ambiguous about what the operator meant;
    - an alias (``*name``): a route map has no use for them, and one node reached through many
      aliases would make validation work grow with the product of their counts (fatal; located at
      the anchored node);
    - a key that is not a plain value: a merge key ``<<``, a list or a mapping (fatal);
    - nesting deeper than :data:`MAX_NESTING` (fatal; it also bounds this recursion).
    """

    def __init__(self, loader: yaml.SafeLoader, item_hook: ItemHook | None = None) -> None:
        self.loader = loader
        self.item_hook = item_hook
        self.problems: list[tuple[int, int, str]] = []
        self.fatal = False
        self.anchors: dict[str, yaml.Mark] = {}

    def _problem(self, mark: Any, text: str, fatal: bool) -> None:
        self.problems.append((mark.line + 1, mark.column + 1, text))
        self.fatal = self.fatal or fatal

    def _event(self) -> Any:
        return self.loader.get_event()  # type: ignore[no-untyped-call]

    def _tag(self, event: Any, kind: type[yaml.Node]) -> str:
        tag: str | None = event.tag
        if tag is None or tag == "!":
            if kind is yaml.ScalarNode and (not event.implicit[0] or event.value[:1] in _STRING_FIRSTS):
                return _STR  # quoted, or a plain value no implicit resolver starts with: what resolve() says
            value = event.value if kind is yaml.ScalarNode else None
            tag = self.loader.resolve(kind, value, event.implicit)  # type: ignore[no-untyped-call]
        return str(tag)

    def _skip(self, event: Any) -> None:
        """Consume the rest of a collection whose start is ``event`` (nothing for a scalar or alias)."""
        depth = 1 if isinstance(event, _OPEN) else 0
        while depth:
            event = self._event()
            depth += 1 if isinstance(event, _OPEN) else -1 if isinstance(event, _CLOSE) else 0

    def _alias(self, event: Any) -> None:
        mark = self.anchors.get(event.anchor)
        if mark is None:
            raise yaml.composer.ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
        self._problem(mark, "an anchored node is repeated by an alias", True)

    def build(self, event: Any, depth: int = 0, item_hook: ItemHook | None = None) -> Any:
        if isinstance(event, yaml.AliasEvent):
            self._alias(event)
            return None
        if depth > MAX_NESTING:
            self._problem(event.start_mark, f"nested more than {MAX_NESTING} levels deep", True)
            self._skip(event)
            return None
        if event.anchor is not None:
            self.anchors[event.anchor] = event.start_mark
        if isinstance(event, _SCALAR):
            tag = self._tag(event, yaml.ScalarNode)
            if tag == _STR:
                return event.value
            if tag == _NULL:
                return None
            return self.loader.construct_object(self._compose(event, depth), deep=True)
        if isinstance(event, yaml.SequenceStartEvent):
            if self._tag(event, yaml.SequenceNode) != _SEQ:
                return self.loader.construct_object(self._compose(event, depth), deep=True)
            items = []
            while not isinstance(item := self._event(), yaml.SequenceEndEvent):
                items.append(self.build(item, depth + 1))
            return items
        if self._tag(event, yaml.MappingNode) != _MAP:
            return self.loader.construct_object(self._compose(event, depth), deep=True)
        out: dict[Any, Any] = {}
        raw_keys: set[str] = set()
        while not isinstance(key_event := self._event(), yaml.MappingEndEvent):
            if not isinstance(key_event, _SCALAR) or self._tag(key_event, yaml.ScalarNode) == _MERGE:
                if isinstance(key_event, yaml.AliasEvent):
                    self._alias(key_event)
                else:
                    self._problem(key_event.start_mark, "a key must be a plain value (no <<, list or mapping)", True)
                self._skip(key_event)
                self._skip(self._event())
                continue
            if key_event.value in raw_keys:
                self._problem(
                    key_event.start_mark,
                    f"duplicate key {key_event.value!r} (the YAML loader would keep the last one)",
                    False,
                )
            raw_keys.add(key_event.value)
            key = self.build(key_event, depth + 1)
            hook = self.item_hook if depth == 0 and key == "connections" else None
            value = self.build(self._event(), depth + 1, hook)
            out[key] = item_hook(key, value) if item_hook is not None else value
        return out

    def _compose(self, event: Any, depth: int) -> yaml.Node:
        """The node of a value with an uncommon tag (``!!set``, ``!!binary``...), for the safe constructor."""
        if isinstance(event, yaml.AliasEvent):
            self._alias(event)
            return yaml.ScalarNode(_NULL, "")
        if depth > MAX_NESTING:
            self._problem(event.start_mark, f"nested more than {MAX_NESTING} levels deep", True)
            self._skip(event)
            return yaml.ScalarNode(_NULL, "")
        if event.anchor is not None:
            self.anchors[event.anchor] = event.start_mark
        start: Any = event.start_mark
        end: Any = event.end_mark
        if isinstance(event, _SCALAR):
            tag = self._tag(event, yaml.ScalarNode)
            return yaml.ScalarNode(tag, event.value, start, end, style=event.style)
        if isinstance(event, yaml.SequenceStartEvent):
            items = []
            while not isinstance(item := self._event(), yaml.SequenceEndEvent):
                items.append(self._compose(item, depth + 1))
            return yaml.SequenceNode(self._tag(event, yaml.SequenceNode), items, start, end)
        pairs = []
        while not isinstance(key_event := self._event(), yaml.MappingEndEvent):
            pairs.append((self._compose(key_event, depth + 1), self._compose(self._event(), depth + 1)))
        return yaml.MappingNode(self._tag(event, yaml.MappingNode), pairs, start, end)


def load_yaml(data: bytes | IO[bytes], item_hook: ItemHook | None = None) -> tuple[Any, list[str], bool]:
    """(document, located structural problems, whether they stop validation: the document is then None).

    ``item_hook(name, value)`` replaces each entry of the top-level ``connections`` mapping as it is read.
    """
    loader = SafeLoader(data)
    try:
        loader.get_event()  # type: ignore[no-untyped-call]  # stream start
        start = loader.get_event()  # type: ignore[no-untyped-call]
        if isinstance(start, yaml.StreamEndEvent):
            return None, [], False
        builder = _Builder(loader, item_hook)
        document = builder.build(loader.get_event())  # type: ignore[no-untyped-call]
        loader.get_event()  # type: ignore[no-untyped-call]  # document end
        after = loader.get_event()  # type: ignore[no-untyped-call]
        if not isinstance(after, yaml.StreamEndEvent):
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                start.start_mark,
                "but found another document",
                after.start_mark,
            )
        problems = [f"{line}:{column}: {text}" for line, column, text in sorted(builder.problems)]
        return (None if builder.fatal else document), problems, builder.fatal
    finally:
        loader.dispose()
