"""Tests for proxy.migrate.merge: re-importing over a map an operator has been running and editing."""

from __future__ import annotations

import pytest

from proxy.errors import RouteMapError
from proxy.migrate.merge import (
    GENERATED,
    Comments,
    merge_connection,
    merge_maps,
    read_comments,
    render,
    scalar,
)
from proxy.routing.routemap import Connection, make_routemap, parse_routemap

NEW = Connection("a", "saml", "legacy", organizations=("org_1",), audiences=("urn:auth0:t:a",), acs_urls=("u1",))


def conn(**changes: object) -> Connection:
    base = {
        "name": "a",
        "protocol": "saml",
        "state": "legacy",
        "organizations": ("org_1",),
        "audiences": ("urn:auth0:t:a",),
        "acs_urls": ("u1",),
    }
    base.update(changes)
    return Connection(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exported", "existing", "prune", "checked", "expected", "notes"),
    [
        # new in the export
        (conn(), None, False, False, conn(), []),
        # gone from the export: kept unless pruned
        (None, conn(state="workos"), False, False, conn(state="workos"), ["a: not in this export; kept as workos"]),
        (None, conn(state="workos"), True, False, None, ["a: not in this export; dropped (--prune), was workos"]),
        # the rollout's state is the operator's
        (conn(), conn(state="workos"), False, False, conn(state="workos"), ["a: state workos kept"]),
        # hand-set fields win; the export fills what is empty
        (
            conn(organizations=()),
            conn(workos_connection_id="conn_1", notes="wave 1"),
            False,
            False,
            conn(workos_connection_id="conn_1", notes="wave 1", organizations=("org_1",)),
            ["a: organizations kept", "a: workos_connection_id kept", "a: notes kept"],
        ),
        (
            conn(workos_connection_id="conn_new"),
            conn(workos_connection_id="conn_old"),
            False,
            False,
            conn(workos_connection_id="conn_old"),
            ["a: workos_connection_id 'conn_old' kept from the existing route map (export says 'conn_new')"],
        ),
        # when the state last changed is the operator's record, kept with the state
        (
            conn(),
            conn(state="workos", state_changed="2026-12-07T19:50:00Z"),
            False,
            False,
            conn(state="workos", state_changed="2026-12-07T19:50:00Z"),
            ["a: state workos kept"],
        ),
        # organizations: the operator's win, except a con_ id an earlier import filed a shared connection under
        (
            conn(organizations=("org_A", "org_B")),
            conn(organizations=("con_1",)),
            False,
            False,
            conn(organizations=("org_A", "org_B")),
            ["a: organizations org_A, org_B from the export replace con_1"],
        ),
        (
            conn(organizations=("org_A", "org_B")),
            conn(organizations=("org_01W",)),
            False,
            False,
            conn(organizations=("org_01W",)),
            ["a: organizations org_01W kept from the existing route map (export says org_A, org_B)"],
        ),
        (
            conn(organizations=("org_A", "org_B")),
            conn(organizations=("org_A", "org_B")),
            False,
            False,
            conn(organizations=("org_A", "org_B")),
            [],
        ),
        # hand-added identifiers stay, after the export's own
        (
            conn(),
            conn(audiences=("https://hand.example/sp", "urn:auth0:t:a"), issuers=("iss",)),
            False,
            False,
            conn(audiences=("urn:auth0:t:a", "https://hand.example/sp"), issuers=("iss",)),
            ["a: 2 identifier(s) not in the export kept"],
        ),
        # a protocol change from the export wins, and the old identifiers (of the other protocol) go
        (
            conn(protocol="oidc", audiences=(), client_ids=("c",)),
            conn(),
            False,
            False,
            conn(protocol="oidc", audiences=(), client_ids=("c",)),
            ["a: protocol oidc from the export replaces saml"],
        ),
        # reachability: without --custom-domain the old mark stays; with it the new one wins ...
        (conn(), conn(reachability="unconfirmed"), False, False, conn(reachability="unconfirmed"), []),
        (conn(), conn(reachability="unconfirmed"), False, True, conn(), []),
        (conn(reachability="unconfirmed"), conn(), False, True, conn(reachability="unconfirmed"), []),
        # ... except an operator's "confirmed"
        (
            conn(reachability="unconfirmed"),
            conn(reachability="confirmed"),
            False,
            True,
            conn(reachability="confirmed"),
            [],
        ),
        # nothing changed: nothing said
        (conn(), conn(), False, False, conn(), []),
    ],
)
def test_merge_connection(
    exported: Connection | None,
    existing: Connection | None,
    prune: bool,
    checked: bool,
    expected: Connection | None,
    notes: list[str],
) -> None:
    merged, said = merge_connection(exported, existing, prune, checked)
    assert merged == expected
    assert len(said) == len(notes)
    for note, want in zip(said, notes, strict=True):
        assert note.startswith(want)


def test_merge_maps_keeps_defaults_and_lists_absent_connections() -> None:
    exported = make_routemap([conn(), conn(name="b")], unknown="auth0")
    existing = make_routemap([conn(state="workos"), conn(name="c", state="workos")], unknown="workos", mode="shadow")
    merged, notes, kept = merge_maps(exported, existing)
    assert (merged.unknown, merged.mode) == ("workos", "shadow")
    assert {n: c.state for n, c in merged.connections.items()} == {"a": "workos", "b": "legacy", "c": "workos"}
    assert kept == ["c"]
    assert len(notes) == 2
    pruned, _, kept = merge_maps(exported, existing, prune=True)
    assert sorted(pruned.connections) == ["a", "b"] and kept == []


OPERATED = """\
# [import] sso-proxy route map, generated by `sso-proxy routes import`
# sso-proxy route map, generated by an older import (not kept)
# team: identity-platform
version: 1
defaults:
  unknown: auth0  # until transaction binding is on
  mode: normal
connections:
  # Ann: Initech's change window is 2026-12-01
  a:  # OPS-12
    # [import] a remark the next import rewrites
    protocol: saml
    state: workos  # flipped by ann
    audiences:
    - urn:auth0:t:a  # the default one
    - https://hand.example/sp
    acs_urls: [u1]
  b: {protocol: oidc, state: legacy}  # flow style
  # about c
  c:
    protocol: saml
    state: legacy
    notes: a field
    issuers:
    - gone-later  # will not survive
# trailing remark
"""


def test_read_comments_finds_each_comment_where_it_belongs() -> None:
    got = read_comments(OPERATED)
    assert got.header == ("# team: identity-platform", "# trailing remark")
    assert got.lines == {"a": ("# Ann: Initech's change window is 2026-12-01",), "c": ("# about c",)}
    assert got.inline == {
        ("defaults", "unknown", ""): "# until transaction binding is on",
        ("a", "", ""): "# OPS-12",
        ("b", "", ""): "# flow style",
        ("a", "state", ""): "# flipped by ann",
        ("a", "audiences", "urn:auth0:t:a"): "# the default one",
        ("c", "issuers", "gone-later"): "# will not survive",
    }


@pytest.mark.parametrize("text", ["", "not: [valid", "- a list", "connections: 5\ndefaults: 1", "version: 1\n"])
def test_read_comments_on_odd_files(text: str) -> None:
    assert isinstance(read_comments(text), Comments)


def test_render_puts_kept_comments_back_and_validates() -> None:
    existing = parse_routemap(OPERATED)
    exported = make_routemap(
        [
            conn(),
            conn(name="b", protocol="oidc", audiences=(), acs_urls=()),
            conn(name="c", protocol="oidc", audiences=(), acs_urls=()),  # its old SAML issuers go
        ]
    )
    merged, _, _ = merge_maps(exported, existing)
    text = render(merged, ["generated header"], {"a": ["a remark"]}, read_comments(OPERATED))
    assert parse_routemap(text).connections == merged.connections
    lines = text.splitlines()
    assert lines[:2] == [f"{GENERATED}generated header", "# team: identity-platform"]
    assert "  unknown: workos  # until transaction binding is on" not in lines  # the value is the map's
    assert "  unknown: auth0  # until transaction binding is on" in lines
    at = lines.index("  a:  # OPS-12")
    assert lines[at - 2 : at] == ["  # Ann: Initech's change window is 2026-12-01", f"  {GENERATED}a remark"]
    assert "    state: workos  # flipped by ann" in lines
    assert "  b:  # flow style" in lines
    assert "    - urn:auth0:t:a  # the default one" in lines
    assert "    - https://hand.example/sp" in lines
    # A comment whose line is gone is kept as a full-line comment on the connection.
    assert "  # (was on issuers gone-later) will not survive" in lines
    assert "# [import] a remark the next import rewrites" not in text
    assert "older import" not in text
    # Rendering again from its own output changes nothing.
    again = render(merged, ["generated header"], {"a": ["a remark"]}, read_comments(text))
    assert again == text


def test_render_an_empty_map() -> None:
    text = render(make_routemap([]))
    assert parse_routemap(text).connections == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("urn:auth0:t:a", "urn:auth0:t:a"),
        ("https://a/b?c=d", "https://a/b?c=d"),
        ("a: b", "'a: b'"),
        ("- x", "'- x'"),
        ("#x", "'#x'"),
        ("yes", "'yes'"),
        ("123", "'123'"),
        ("a\nb", '"a\\nb"'),
        ("x\u2028y", '"x\\Ly"'),
    ],
)
def test_scalar(value: str, expected: str) -> None:
    assert scalar(value) == expected
    # As an identifier (connection names may not hold line separators: issue 11, finding 9).
    text = "version: 1\nconnections:\n  a:\n    protocol: saml\n    state: legacy\n    audiences:\n"
    text += f"      - {scalar(value)}\n"
    assert parse_routemap(text).connections["a"].audiences == (value,)


def test_names_and_comments_cannot_inject_yaml() -> None:
    hostile = Connection("a\u2028b: x\n  evil:", "saml", "legacy", audiences=("v\nconnections: {}",))
    text = render(make_routemap([hostile]), ["header\nversion: 2"], {hostile.name: ["remark\n  evil: 1"]})
    # Such a name is escaped on one line, then refused by validation (issue 11, finding 9), located.
    with pytest.raises(RouteMapError) as info:
        parse_routemap(text)
    [error] = info.value.errors
    assert "line-separator character" in error and len(error.splitlines()) == 1
    benign = Connection("a", "saml", "legacy", audiences=hostile.audiences)
    text = render(make_routemap([benign]), ["header\nversion: 2"], {"a": ["remark\n  evil: 1"]})
    parsed = parse_routemap(text)
    assert list(parsed.connections) == ["a"]
    assert parsed.connections["a"].audiences == hostile.audiences
