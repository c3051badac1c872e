"""Tests for proxy.routing.packedmap: a packed map answers every read as the parsed map does."""

from __future__ import annotations

import pytest

from proxy.routing.packedmap import BUFFERS, Keys, PackedConnections, pack, packed, unpack
from proxy.routing.routemap import ID_KINDS, RouteMap, parse_routemap
from tests.conftest import ROUTES_YAML, big_routes_yaml

ODD = """version: 1
connections:
  "ünïcode-ß":
    protocol: oidc
    state: shadow
    organizations: [org_A, org_B]
    client_ids: ["client é", "c2"]
    issuers: ["https://idp.example/é"]
  plain:
    protocol: saml
    state: legacy
    reachability: unconfirmed
    notes: "a note\\nover two lines"
    audiences: [urn:auth0:t:plain, shared]
  other:
    protocol: saml
    state: workos
    moved_to_saml: true
    strategy: adfs
    audiences: [shared]
    acs_urls: ["https://auth.example.com/login/callback?connection=other"]
"""


@pytest.mark.parametrize(
    "text", [ROUTES_YAML, ODD, big_routes_yaml(300), "version: 1\n"], ids=["fixture", "odd", "300", "empty"]
)
def test_a_packed_map_reads_as_the_parsed_one(text: str) -> None:
    parsed = parse_routemap(text)
    small = packed(parsed)
    assert isinstance(small.connections, PackedConnections)
    assert small == parsed  # every field, every connection, every index entry
    assert list(small.connections) == list(parsed.connections)  # the file's order
    assert list(small.connections.items()) == list(parsed.connections.items())
    assert small.counts_by_state() == parsed.counts_by_state()
    for name, conn in parsed.connections.items():
        assert small.connection(name) == conn == small.connections[name]
        assert name in small.connections
    for kind in ID_KINDS:
        assert dict(small.index[kind]) == dict(parsed.index[kind])
        for value, owner in parsed.index[kind].items():
            assert small.lookup(kind, value) == owner
    assert small.ambiguous == parsed.ambiguous


@pytest.mark.parametrize(
    "key",
    ["", "absent", "x" * 1_000_000, "\ud800", "plain\x00", "PLAIN", "plain "],
    ids=["empty", "absent", "1 MB", "lone surrogate", "NUL", "case", "space"],
)
def test_what_no_connection_is_called_is_none(key: str) -> None:
    small = packed(parse_routemap(ODD))
    assert small.connection(key) is None
    assert key not in small.connections
    assert small.connections.get(key) is None
    with pytest.raises(KeyError):
        small.connections[key]
    for kind in ID_KINDS:
        assert small.lookup(kind, key) is None


def test_reads_that_are_not_strings_find_nothing() -> None:
    small = packed(parse_routemap(ODD))
    assert 3 not in small.connections
    assert small.index["audiences"].get(b"shared") is None


def test_only_the_request_paths_reads_are_kept() -> None:
    """Memory follows what is used: walking the whole map (GET /routes, a reload's diff) keeps
    nothing; the request path's reads keep the connections and identifiers found, never a miss."""
    small = packed(parse_routemap(big_routes_yaml(300)))
    conns = small.connections
    assert isinstance(conns, PackedConnections)
    list(conns.items()), list(conns.values()), [conns[name] for name in conns], [conns.get(n) for n in conns]
    assert conns._remembered == {}
    assert small.connection("gen-000007") is small.connection("gen-000007")
    assert small.connection("nobody") is None
    assert list(conns._remembered) == ["gen-000007"]
    index = small.index["audiences"]
    assert index.get("urn:auth0:globex-prod:gen-000007") == "gen-000007"
    assert index.get("urn:auth0:globex-prod:nobody") is None
    assert list(index._found) == ["urn:auth0:globex-prod:gen-000007"]


def test_a_lookup_is_linear_in_the_key_whatever_the_map() -> None:
    """One CRC over the key, then probes of a table at most half full: no key makes a chain longer
    than the map's own clustering allows, and a miss stops at the first empty slot."""
    keys = Keys.build(f"k{i}" for i in range(5000))
    assert len(keys._slots) >= 2 * len(keys)
    assert keys.find("k4999") == 4999
    assert keys.find("x" * 5_000_000) == -1
    with pytest.raises(ValueError, match="repeated key"):
        Keys.build(["a", "b", "a"])


def test_buffers_that_do_not_fit_are_refused() -> None:
    parsed = parse_routemap(ROUTES_YAML)
    buffers = pack(parsed.connections, parsed.index)
    assert len(buffers) == BUFFERS
    connections, _ = unpack(buffers)
    assert dict(connections.items()) == dict(parsed.connections.items())
    with pytest.raises(ValueError, match="buffers"):
        unpack(buffers[:-1])
    cut = list(buffers)
    cut[0] = cut[0][:-1]  # the names' text one byte short of their offsets
    with pytest.raises(ValueError, match="inconsistent"):
        unpack(cut)
    bad_slot = list(buffers)
    bad_slot[2] = (10_000).to_bytes(4, "little") + bad_slot[2][4:]  # a slot naming a key there is not
    with pytest.raises(ValueError, match="inconsistent"):
        unpack(bad_slot)
    wrong_owner = list(buffers)
    wrong_owner[8] = (10_000).to_bytes(4, "little") * (len(wrong_owner[8]) // 4)  # audiences owned by no connection
    with pytest.raises(ValueError, match="inconsistent"):
        unpack(wrong_owner)


def test_an_empty_map_packs() -> None:
    empty = packed(RouteMap())
    assert len(empty.connections) == 0 and empty.connection("x") is None and empty.lookup("issuers", "x") is None
