"""Tests for proxy.migrate.locate: the named connections found in the event stream are the nodes
composing the whole file gives (same values, same positions), and anything unusual is left to it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from proxy.migrate.edit import _compose, _connections, locate_connections
from proxy.migrate.locate import Irregular, Locator

BLOCK = """\
# a comment
version: 1
defaults: {unknown: workos, mode: normal}
connections:
  a:  # the first
    protocol: saml
    state: legacy   # flip
    audiences:
      - urn:x  # one
      - 'urn:y'
  "b": {protocol: oidc, state: workos, client_ids: [c1, c2]}
  c:
    protocol: saml
    strategy: adfs
    state: &s legacy
  é-conn:
    protocol: oidc
    state: "legacy"
"""


def shape(node: Any) -> Any:
    """A node as comparable data: kind, value, style, and every position."""
    marks = (node.start_mark.index, node.start_mark.line, node.start_mark.column, node.end_mark.index)
    if isinstance(node, yaml.ScalarNode):
        return ("scalar", node.value, node.style, marks)
    if isinstance(node, yaml.SequenceNode):
        return ("seq", [shape(item) for item in node.value], node.flow_style, marks)
    return ("map", [(shape(k), shape(v)) for k, v in node.value], node.flow_style, marks)


def composed(text: str, names: list[str]) -> tuple[dict[str, Any], list[str]]:
    connections = _connections(_compose(text, "r.yaml"), "r.yaml")
    bodies = {str(k.value): (k, v) for k, v in connections.value if isinstance(k, yaml.ScalarNode)}
    return {n: (shape(bodies[n][0]), shape(bodies[n][1])) for n in names if n in bodies}, sorted(bodies)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (BLOCK, ["a", "b", "c", "é-conn", "nope"]),
        (BLOCK.replace("\n", "\r\n"), ["a", "c"]),
        (BLOCK + "  a:\n    protocol: oidc\n    state: workos\n", ["a"]),  # the last of a duplicate
        (BLOCK + "other: [1, {x: y}]\n", ["b"]),
        ("version: 1\nconnections: {a: {protocol: saml, state: legacy}, b: {}}\n", ["a", "b"]),
        ("connections:\n  ? [odd, key]\n  : 1\n  a: {state: legacy}\n", ["a"]),
    ],
)
def test_the_stream_finds_what_composing_finds(text: str, names: list[str]) -> None:
    located, known = locate_connections(text, names, "r.yaml")
    assert {n: (shape(k), shape(v)) for n, (k, v) in located.items()} == composed(text, names)[0]
    assert sorted(set(known)) == composed(text, names)[1]
    assert Locator(text, set(names)).locate() is not None  # read as a stream, not composed


@pytest.mark.parametrize(
    "text",
    [
        BLOCK.replace("state: legacy   # flip", "state: *s"),  # an alias
        BLOCK + "---\nversion: 1\n",  # a second document
        "- a list\n",
        "",
        "? [a]\n: 1\nconnections: {}\n",  # a key that is not a scalar
        "connections: &c {a: {state: legacy}}\n",
    ],
)
def test_anything_unusual_is_left_to_composing_the_whole_file(text: str) -> None:
    with pytest.raises((Irregular, yaml.YAMLError)):
        Locator(text, {"a"}).locate()


def test_no_connections_mapping_is_said_as_before() -> None:
    assert Locator("version: 1\nconnections: [a]\n", {"a"}).locate() is None
    assert Locator("version: 1\n", {"a"}).locate() is None
