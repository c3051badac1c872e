"""Tests for proxy.mapbuild: the route map built in a child process equals the one parsed here."""

from __future__ import annotations

import gc
import logging
import sys
import tracemalloc
from pathlib import Path

import pytest

from proxy import heap
from proxy.errors import RouteMapError
from proxy.heap import release_freed_memory
from proxy.mapbuild import build_routemap
from proxy.metrics import Metrics
from proxy.reload import RouteStore
from proxy.routing.routemap import parse_routemap
from tests.conftest import ROUTES_YAML, big_routes_yaml


def test_the_child_builds_the_same_map() -> None:
    text = (
        big_routes_yaml(600)
        + "  dup:\n    protocol: saml\n    state: legacy\n    issuers: [http://www.okta.com/acme]\n"
    ).encode()
    here = parse_routemap(text, "r.yaml", "auth.example.com")
    there = build_routemap(text, "r.yaml", "auth.example.com", in_process_below=0)
    assert there == here
    assert there.lookup("audiences", "urn:auth0:globex-prod:gen-000599") == "gen-000599"
    assert there.ambiguous["issuers"]["http://www.okta.com/acme"] == ("acme-okta", "dup")


@pytest.mark.parametrize("below", [0, 1 << 20], ids=["child", "in-process"])
def test_errors_are_located_either_way(below: int) -> None:
    text = ROUTES_YAML.replace("state: legacy", "state: paused", 1).encode()
    with pytest.raises(RouteMapError) as info:
        build_routemap(text, "r.yaml", None, in_process_below=below)
    assert info.value.errors == [
        "r.yaml: connections.globex-adfs.state: must be one of legacy, shadow, workos (got 'paused')"
    ]


@pytest.mark.parametrize(
    ("python", "expected"),
    [
        ("/nonexistent/python", "r.yaml: cannot start the map builder"),
        ("/bin/false", "r.yaml: the map builder failed ("),  # exits at once: no map comes back
    ],
)
def test_a_failing_child_is_one_located_error_and_no_map(python: str, expected: str) -> None:
    with pytest.raises(RouteMapError) as info:
        build_routemap(ROUTES_YAML.encode(), "r.yaml", None, in_process_below=0, python=python)
    [error] = info.value.errors
    assert error.startswith(expected), error


def test_freed_memory_is_handed_back_where_the_c_library_can(monkeypatch: pytest.MonkeyPatch) -> None:
    assert release_freed_memory() is (heap._MALLOC_TRIM is not None)
    assert heap.map_large_blocks() is (heap._MALLOPT is not None)
    monkeypatch.setattr(heap, "_MALLOC_TRIM", None)  # musl, macOS: nothing to call
    monkeypatch.setattr(heap, "_MALLOPT", None)
    assert release_freed_memory() is False
    assert heap.map_large_blocks() is False


def test_a_reload_frees_the_map_it_replaces(tmp_path: Path) -> None:
    """A map in the server is a few buffers, not objects per connection, and nothing keeps a replaced
    map alive (the store, the metrics' per-connection state, the collector's frozen generation):
    three reloads later the memory allocated is what it was with one map."""
    path = tmp_path / "routes.yaml"
    text = big_routes_yaml(3000)
    path.write_text(text)
    store = RouteStore(str(path), None, Metrics(), logging.getLogger("test-mapbuild"), settle=0)
    gc.collect()  # what earlier tests left is not counted as this map (the count is the process's)
    tracemalloc.start()
    try:
        empty, empty_bytes = sys.getallocatedblocks(), tracemalloc.get_traced_memory()[0]
        store.load_initial()
        gc.collect()
        gc.freeze()  # as serve does once started
        try:
            loaded, loaded_bytes = sys.getallocatedblocks(), tracemalloc.get_traced_memory()[0]
            for i in range(3):
                state = "legacy" if i % 2 == 0 else "workos"
                path.write_text(text.replace("state: workos", f"state: {state}", 1) + f"# edit {i}\n")
                assert store.apply(store.snapshot(), "test").result == "success"
            gc.collect()
            after, after_bytes = sys.getallocatedblocks(), tracemalloc.get_traced_memory()[0]
        finally:
            gc.unfreeze()
    finally:
        tracemalloc.stop()
    one_map = loaded_bytes - empty_bytes
    assert one_map > 3000 * 50, (empty_bytes, loaded_bytes)  # the map is there: 90 bytes a connection
    assert loaded - empty < 3000 / 4, (empty, loaded)  # but not as objects per connection
    assert abs(after_bytes - loaded_bytes) < one_map / 20, (empty_bytes, loaded_bytes, after_bytes)
    assert after - loaded < 3000 / 4, (empty, loaded, after)
