"""Tests for proxy.migrate.edit: ``sso-proxy routes set`` edits one state in place and keeps everything else."""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.errors import RouteMapError
from proxy.migrate.edit import EditError, run_set, set_state
from proxy.migrate.export import run_import
from proxy.routing.routemap import parse_routemap

T1 = datetime(2026, 12, 7, 19, 50, tzinfo=UTC)
T2 = datetime(2026, 12, 7, 20, 5, 30, tzinfo=UTC)

SHARED = Path(__file__).resolve().parent / "fixtures" / "auth0-export"

ROUTES = """\
# Route map for globex-prod. Reviewed by CS before every change.
version: 1
defaults:
  unknown: workos   # unknown callbacks go to WorkOS
  mode: normal
connections:
  # Initech moves first.
  initech-okta:
    protocol: saml
    state: legacy   # flip after the customer call
    audiences: [urn:auth0:globex-prod:initech-okta]
  umbrella-entra: {protocol: oidc, state: "workos", client_ids: [cid]}
  hooli:
    client_ids:
    - hooli-cid
    protocol: oidc  # no state yet: broken on purpose in some tests
"""


def with_hooli_state(text: str) -> str:
    return text.replace("    protocol: oidc  # no state yet", "    state: legacy\n    protocol: oidc  # no state yet")


VALID = with_hooli_state(ROUTES)


@pytest.mark.parametrize(
    ("text", "connection", "state", "old_line", "new_line"),
    [
        (VALID, "initech-okta", "workos", "    state: legacy   # flip", "    state: workos   # flip"),
        (
            VALID,
            "umbrella-entra",
            "legacy",
            '{protocol: oidc, state: "workos", client_ids',
            "{protocol: oidc, state: legacy, client_ids",
        ),
        (
            VALID,
            "hooli",
            "workos",
            "    state: legacy\n    protocol: oidc",
            "    state: workos\n    protocol: oidc",
        ),
        # A missing state is inserted after `protocol` (block style) ...
        (
            ROUTES,
            "hooli",
            "workos",
            "    protocol: oidc  # no state yet: broken on purpose in some tests\n",
            "    protocol: oidc  # no state yet: broken on purpose in some tests\n    state: workos\n",
        ),
        # ... or first in a flow mapping.
        (
            VALID.replace('state: "workos", client_ids', "client_ids"),
            "umbrella-entra",
            "legacy",
            "{protocol: oidc, client_ids",
            "{state: legacy, protocol: oidc, client_ids",
        ),
    ],
    ids=["block", "flow-quoted", "before-protocol", "insert-block", "insert-flow"],
)
def test_set_changes_one_value_and_keeps_the_rest_byte_for_byte(
    text: str, connection: str, state: str, old_line: str, new_line: str
) -> None:
    assert old_line in text
    edited = set_state(text, connection, state)
    assert edited == text.replace(old_line, new_line, 1)
    assert parse_routemap(edited).connections[connection].state == state


def test_set_keeps_crlf_line_ends_and_comments() -> None:
    text = VALID.replace("\n", "\r\n")
    edited = set_state(text, "initech-okta", "workos")
    assert edited == text.replace("state: legacy   # flip", "state: workos   # flip")
    missing = ROUTES.replace("\n", "\r\n")
    inserted = set_state(missing, "hooli", "workos")
    assert "# no state yet: broken on purpose in some tests\r\n    state: workos\r\n" in inserted
    assert "\n" not in inserted.replace("\r\n", "")


def test_set_on_the_last_line_without_newline() -> None:
    text = VALID.rstrip("\n").replace(
        "    state: legacy\n    protocol: oidc  # no state yet: broken on purpose in some tests",
        "    protocol: oidc",
    )
    edited = set_state(text, "hooli", "workos")
    assert edited.endswith("    protocol: oidc\n    state: workos\n")


@pytest.mark.parametrize(
    ("text", "connection", "state", "message"),
    [
        (VALID, "nope", "workos", "connection 'nope' not found (known: hooli, initech-okta, umbrella-entra)"),
        (VALID, "initech-okta", "auth0", "state must be one of legacy, shadow, workos (got 'auth0')"),
        (VALID, "initech-okta", "", "state must be one of legacy, shadow, workos (got '')"),
        ("version: 1\nconnections: [a, b]\n", "a", "workos", "has no connections mapping"),
        ("- just a list\n", "a", "workos", "not a route map"),
        ("connections: {a: [1]\n", "a", "workos", "not valid YAML"),
        (
            "version: 1\nconnections:\n  a: legacy\n",
            "a",
            "workos",
            "routes.yaml:3:3: connections.a is not a mapping",
        ),
        ("version: 1\nconnections:\n  a: {}\n", "a", "workos", "connections.a is empty"),
        (
            VALID.replace("state: legacy   # flip", "state: &s legacy   # flip"),
            "initech-okta",
            "workos",
            "routes.yaml:10:12: connections.initech-okta.state is not a plain one-line value",
        ),
        (
            VALID.replace("state: legacy   # flip", "state: |\n      legacy\n    # flip"),
            "initech-okta",
            "workos",
            "is not a plain one-line value",
        ),
    ],
)
def test_set_errors_are_clear(text: str, connection: str, state: str, message: str) -> None:
    with pytest.raises(EditError) as info:
        set_state(text, connection, state)
    assert message in str(info.value)


def test_set_refuses_a_result_that_does_not_validate() -> None:
    # hooli has no state, so the map stays invalid whatever initech-okta's state is.
    with pytest.raises(RouteMapError) as info:
        set_state(ROUTES, "initech-okta", "workos")
    assert "connections.hooli.state: must be one of legacy, shadow, workos (got missing)" in str(info.value)


def test_set_refuses_a_map_with_duplicate_keys() -> None:
    # the route map refuses duplicate keys (which one did the operator mean?), so set cannot
    # produce a valid map from one: it says where the duplicate is instead of guessing
    text = VALID.replace("    audiences: [urn", "    state: legacy\n    audiences: [urn")
    with pytest.raises(RouteMapError) as info:
        set_state(text, "initech-okta", "workos")
    assert "duplicate key 'state'" in str(info.value)


def test_set_checks_workos_acs_url_against_the_given_domain() -> None:
    text = VALID.replace("    audiences: [urn", "    workos_acs_url: https://auth.globex.com/acs\n    audiences: [urn")
    with pytest.raises(RouteMapError):
        set_state(text, "initech-okta", "workos")
    edited = set_state(text, "initech-okta", "workos", workos_domain="auth.globex.com")
    assert "state: workos   # flip" in edited


# --- run_set -----------------------------------------------------------------------------------


def test_run_set_writes_atomically_and_reports_the_change(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(VALID)
    path.chmod(0o640)
    out, err = io.StringIO(), io.StringIO()
    assert run_set(str(path), "initech-okta", "workos", out, err, by="ann", now=lambda: T1) == 0
    data = path.read_bytes()
    assert data.decode() == VALID.replace(
        "state: legacy   # flip after the customer call\n",
        "state: workos   # flip after the customer call\n    state_changed: 2026-12-07T19:50:00Z\n",
    )
    before, after = hashlib.sha256(VALID.encode()).hexdigest(), hashlib.sha256(data).hexdigest()
    assert out.getvalue() == f"{path}: initech-okta legacy -> workos (by ann, sha256 {before} -> {after})\n"
    assert parse_routemap(data).sha256 == hashlib.sha256(data).hexdigest()
    assert err.getvalue() == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["routes.yaml"]


def test_run_set_back_and_forth_restores_the_original_bytes_but_when(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(VALID)
    assert run_set(str(path), "initech-okta", "workos", io.StringIO(), io.StringIO(), now=lambda: T1) == 0
    out = io.StringIO()
    assert run_set(str(path), "initech-okta", "legacy", out, io.StringIO(), now=lambda: T2) == 0
    assert out.getvalue().startswith(f"{path}: initech-okta workos -> legacy (by ")
    # The stamp is replaced in place: one line more than the original, and only that one.
    assert path.read_text() == VALID.replace(
        "customer call\n", "customer call\n    state_changed: 2026-12-07T20:05:30Z\n"
    )


def test_run_set_to_the_current_state_does_not_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(VALID)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    out = io.StringIO()
    assert run_set(str(path), "umbrella-entra", "workos", out, io.StringIO(), by="ann") == 0
    digest = hashlib.sha256(VALID.encode()).hexdigest()
    assert out.getvalue() == f"{path}: umbrella-entra already workos; file unchanged (by ann, sha256 {digest})\n"
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


@pytest.mark.parametrize(
    ("content", "connection", "state", "message"),
    [
        (VALID, "nope", "workos", "error: "),
        (VALID, "initech-okta", "on", "error: state must be one of legacy, shadow, workos (got 'on')"),
        (ROUTES, "initech-okta", "workos", "would not be a valid route map after the edit; nothing written"),
        (None, "initech-okta", "workos", "error: cannot read"),
        (b"\xff\xfe", "initech-okta", "workos", "not UTF-8"),
    ],
)
def test_run_set_errors_exit_1_and_leave_the_file(
    tmp_path: Path, content: str | bytes | None, connection: str, state: str, message: str
) -> None:
    path = tmp_path / "routes.yaml"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    before = path.read_bytes() if path.exists() else None
    out, err = io.StringIO(), io.StringIO()
    assert run_set(str(path), connection, state, out, err) == 1
    assert message in err.getvalue()
    assert out.getvalue() == ""
    assert (path.read_bytes() if path.exists() else None) == before
    assert len(os.listdir(tmp_path)) == (0 if content is None else 1)


def test_set_on_an_imported_map(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    assert run_import(str(SHARED / "redacted"), str(path), io.StringIO(), io.StringIO()) == 0
    before = path.read_text()
    assert run_set(str(path), "umbrella-onelogin", "workos", io.StringIO(), io.StringIO()) == 0
    after = path.read_text()
    rm = parse_routemap(after)
    assert rm.connections["umbrella-onelogin"].state == "workos"
    assert rm.counts_by_state() == {"legacy": 6, "shadow": 0, "workos": 1}
    diff = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0) if line[:1] in "+-"]
    assert diff[2:] == [
        "-    state: legacy",
        "+    state: workos",
        f"+    state_changed: {rm.connections['umbrella-onelogin'].state_changed}",
    ]
    assert after.startswith("# [import] sso-proxy route map")  # the header comments survive


# --- flips as operators think of them: many connections, organizations, defaults, dry run -------

ORGS = """\
# Globex route map
version: 1
defaults:
  unknown: auth0  # until binding is on
  mode: normal
connections:
  a:
    protocol: saml
    state: legacy  # wave 1
    organization: org_1
  b: {protocol: oidc, state: legacy, organization: org_1}
  c:
    protocol: saml
    organization: org_2
    state: workos
  d:
    protocol: oidc
    state: legacy
"""


def test_plan_states_edits_many_connections_in_one_pass() -> None:
    from proxy.migrate.edit import Change, plan_states

    text, changes = plan_states(ORGS, ["a", "b", "c", "a"], "workos")
    assert changes == [
        Change("a", "state", "legacy", "workos"),
        Change("b", "state", "legacy", "workos"),
        Change("c", "state", "workos", "workos"),
    ]
    assert text == ORGS.replace("state: legacy  # wave 1", "state: workos  # wave 1").replace(
        "b: {protocol: oidc, state: legacy", "b: {protocol: oidc, state: workos"
    )


def test_plan_states_names_every_missing_connection() -> None:
    from proxy.migrate.edit import plan_states

    with pytest.raises(EditError) as info:
        plan_states(ORGS, ["a", "x", "y"], "workos")
    assert "connections 'x', 'y' not found (known: a, b, c, d)" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key", "value", "old_line", "new_line"),
    [
        (ORGS, "mode", "auth0", "  mode: normal\n", "  mode: auth0\n"),
        (ORGS, "unknown", "workos", "  unknown: auth0  # until", "  unknown: workos  # until"),
        (
            ORGS.replace("  mode: normal\n", ""),
            "mode",
            "shadow",
            "  unknown: auth0",
            "  mode: shadow\n  unknown: auth0",
        ),
        (
            ORGS.replace("defaults:\n  unknown: auth0  # until binding is on\n  mode: normal\n", ""),
            "mode",
            "auth0",
            "connections:\n",
            "defaults:\n  mode: auth0\nconnections:\n",
        ),
        (
            ORGS.replace(
                "defaults:\n  unknown: auth0  # until binding is on\n  mode: normal\n", "defaults: {mode: normal}\n"
            ),
            "unknown",
            "workos",
            "defaults: {mode: normal}",
            "defaults: {unknown: workos, mode: normal}",
        ),
    ],
    ids=["mode", "unknown-keeps-comment", "insert-key", "insert-defaults", "flow"],
)
def test_plan_default(text: str, key: str, value: str, old_line: str, new_line: str) -> None:
    from proxy.migrate.edit import plan_default

    edited, changes = plan_default(text, key, value)
    assert edited == text.replace(old_line, new_line, 1)
    assert getattr(parse_routemap(edited), key) == value
    assert [c.after for c in changes] == [value]


@pytest.mark.parametrize(
    ("text", "key", "value", "message"),
    [
        (ORGS, "mode", "off", "defaults.mode must be one of normal, auth0, shadow (got 'off')"),
        (ORGS, "unknown", "legacy", "defaults.unknown must be one of workos, auth0"),
        (ORGS, "version", "2", "not a default this command edits"),
        (
            ORGS.replace("defaults:\n  unknown", "defaults: 5\nx:\n  unknown"),
            "mode",
            "auth0",
            "defaults is not a mapping",
        ),
        ("{connections: {}}", "mode", "auth0", "no defaults mapping; add one by hand"),
        ("version: 1\ndefaults: {}\nconnections: {}\n", "mode", "auth0", "defaults is empty"),
    ],
)
def test_plan_default_errors(text: str, key: str, value: str, message: str) -> None:
    from proxy.migrate.edit import plan_default

    with pytest.raises(EditError) as info:
        plan_default(text, key, value)
    assert message in str(info.value)


def test_run_set_many_connections_prints_one_audit_line(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    out = io.StringIO()
    assert run_set(str(path), ["a", "b", "c"], "workos", out, io.StringIO(), by="ann") == 0
    before, after = hashlib.sha256(ORGS.encode()).hexdigest(), hashlib.sha256(path.read_bytes()).hexdigest()
    assert out.getvalue() == (f"{path}: a, b legacy -> workos; c already workos (by ann, sha256 {before} -> {after})\n")
    assert "state: workos  # wave 1" in path.read_text()


def test_run_set_by_organization(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    out = io.StringIO()
    assert run_set(str(path), [], "workos", out, io.StringIO(), organization="org_1", by="ann") == 0
    assert out.getvalue().startswith(f"{path}: organization org_1: a, b legacy -> workos (by ann, sha256 ")
    rm = parse_routemap(path.read_text())
    assert {n: c.state for n, c in rm.connections.items()} == {
        "a": "workos",
        "b": "workos",
        "c": "workos",
        "d": "legacy",
    }
    err = io.StringIO()
    assert run_set(str(path), [], "workos", io.StringIO(), err, organization="org_9") == 1
    assert "no connection has organization 'org_9' (known: org_1, org_2)" in err.getvalue()


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    out = io.StringIO()
    assert run_set(str(path), ["a"], "workos", out, io.StringIO(), dry_run=True, by="ann") == 0
    assert path.read_text() == ORGS
    printed = out.getvalue()
    shown = str(path).lstrip("/")
    assert f"--- a/{shown}\n+++ b/{shown}\n" in printed
    assert "a//" not in printed
    assert "-    state: legacy  # wave 1\n+    state: workos  # wave 1\n" in printed
    assert printed.splitlines()[-1].startswith(f"{path}: a legacy -> workos (dry run, nothing written; by ann, ")


def test_run_default_and_the_audit_user_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.migrate.edit import run_default

    monkeypatch.setenv("USER", "bob")
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    out = io.StringIO()
    assert run_default(str(path), "mode", "auth0", out, io.StringIO()) == 0
    assert out.getvalue().startswith(f"{path}: defaults.mode normal -> auth0 (by bob, sha256 ")
    assert parse_routemap(path.read_text()).mode == "auth0"
    err = io.StringIO()
    assert run_default(str(path), "mode", "nope", io.StringIO(), err) == 1
    assert "defaults.mode must be one of" in err.getvalue()


def test_a_gate_can_refuse_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    seen: list[list[str]] = []

    def gate(route_map: object, changes: list[object]) -> list[str]:
        names = [c.section for c in changes]  # type: ignore[attr-defined]
        seen.append(names)
        return [f"{n}: not active in WorkOS" for n in names if n == "b"]

    err = io.StringIO()
    assert run_set(str(path), ["a", "b", "c"], "workos", io.StringIO(), err, gate=gate) == 1
    assert seen == [["a", "b"]]  # only what changes is checked
    assert "refused: b: not active in WorkOS\n" in err.getvalue()
    assert path.read_text() == ORGS


def test_a_file_changed_during_the_edit_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)

    def gate(route_map: object, changes: list[object]) -> list[str]:
        path.write_text(ORGS.replace("# Globex", "# someone else's edit"))
        return []

    err = io.StringIO()
    assert run_set(str(path), ["a"], "workos", io.StringIO(), err, gate=gate) == 1
    assert "changed on disk during the edit; nothing written" in err.getvalue()
    assert "someone else's edit" in path.read_text()


def test_many_connections_are_edited_linearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """500 connections set by organization: the text is read for them once, as a stream (an operation
    count, not a time), and never composed whole."""
    from proxy.migrate import edit, locate

    body = "".join(f"  c{i}:\n    protocol: saml\n    state: legacy\n    organization: org_big\n" for i in range(500))
    text = "version: 1\nconnections:\n" + body
    calls = {"compose": 0, "locate": 0}
    compose, stream = edit._compose, locate.Locator.locate

    def composing(t: str, s: str) -> object:
        calls["compose"] += 1
        return compose(t, s)

    def streaming(self: locate.Locator) -> object:
        calls["locate"] += 1
        return stream(self)

    path = tmp_path / "routes.yaml"
    path.write_text(text)
    monkeypatch.setattr(edit, "_compose", composing)
    monkeypatch.setattr(locate.Locator, "locate", streaming)
    assert run_set(str(path), [], "workos", io.StringIO(), io.StringIO(), organization="org_big") == 0
    assert calls == {"compose": 0, "locate": 1}
    assert parse_routemap(path.read_text()).counts_by_state() == {"legacy": 0, "shadow": 0, "workos": 500}


@pytest.mark.parametrize(
    ("by", "login", "expected"),
    [
        ("ann", "bob", "ann"),  # --by wins
        (None, "bob", "bob"),  # $USER, $LOGNAME or the password database
        (None, "", "unknown"),  # a uid without a passwd entry and no $USER
        ("a\nb\tc", "", "a b c"),  # one line
        ("x" * 300, "", "x" * 100),
    ],
)
def test_who_is(by: str | None, login: str, expected: str) -> None:
    from proxy.migrate.edit import who_is

    assert who_is(by, lambda: login) == expected


def test_the_login_name_without_user_or_logname_comes_from_the_password_database() -> None:
    import pwd
    import subprocess
    import sys

    code = "from proxy.migrate.edit import login_name; print(login_name())"
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == pwd.getpwuid(os.getuid()).pw_name


# --- connections shared by organizations -------------------------------------------------------

SHARED_ORGS = """\
version: 1
defaults: {unknown: workos, mode: normal}
connections:
  one-a: {protocol: saml, state: legacy, organization: org_A}
  shared-ab:
    protocol: oidc
    state: legacy
    organizations: [org_A, org_B]
  shared-abc: {protocol: saml, state: legacy, organizations: [org_A, org_B, org_C]}
  one-b: {protocol: saml, state: legacy, organization: org_B}
  none: {protocol: saml, state: legacy}
"""


@pytest.mark.parametrize(
    ("named", "chosen", "left"),
    [
        (["org_A"], ["one-a"], [("shared-ab", ("org_B",)), ("shared-abc", ("org_B", "org_C"))]),
        (["org_B"], ["one-b"], [("shared-ab", ("org_A",)), ("shared-abc", ("org_A", "org_C"))]),
        (["org_A", "org_B"], ["one-a", "one-b", "shared-ab"], [("shared-abc", ("org_C",))]),
        (["org_B", "org_A", "org_B"], ["one-a", "one-b", "shared-ab"], [("shared-abc", ("org_C",))]),
        (["org_A", "org_B", "org_C"], ["one-a", "one-b", "shared-ab", "shared-abc"], []),
        (["org_C"], None, "no connection selected; shared-abc left as it is: shared with org_A, org_B too"),
        (["org_A", "org_Z"], None, "no connection has organization 'org_Z' (known: org_A, org_B, org_C)"),
    ],
)
def test_select_by_organizations(
    named: list[str], chosen: list[str] | None, left: list[tuple[str, tuple[str, ...]]] | str
) -> None:
    from proxy.migrate.edit import select_by_organizations

    route_map = parse_routemap(SHARED_ORGS)
    if chosen is None:
        with pytest.raises(EditError) as info:
            select_by_organizations(route_map, named)
        assert str(left) in str(info.value)
        return
    selection = select_by_organizations(route_map, named)
    assert (list(selection.names), list(selection.left)) == (chosen, left)


INITECH, INITRODE = "org_Q2xV9kLm3PzR7tWc", "org_8HnB4sYd1GfJ6eKa"


def test_run_set_by_organizations_with_the_real_export(tmp_path: Path) -> None:
    """The real exporter's package: initech-group-oidc is shared by Initech and Initrode."""
    export = Path(__file__).resolve().parent / "fixtures" / "auth0-export" / "redacted"
    path = tmp_path / "routes.yaml"
    assert run_import(str(export), str(path), io.StringIO(), io.StringIO()) == 0
    out, err = io.StringIO(), io.StringIO()
    assert run_set(str(path), [], "workos", out, err, organization=[INITECH], by="ann") == 0
    assert out.getvalue().startswith(f"{path}: organization {INITECH}: initech-okta legacy -> workos (by ann")
    assert f"note: initech-group-oidc left as it is: shared with {INITRODE} too" in err.getvalue()
    assert parse_routemap(path.read_text()).connections["initech-group-oidc"].state == "legacy"
    out = io.StringIO()
    assert run_set(str(path), [], "workos", out, io.StringIO(), organization=[INITECH, INITRODE], by="ann") == 0
    assert out.getvalue().startswith(
        f"{path}: organizations {INITECH}, {INITRODE}: initech-group-oidc, initrode-google legacy -> workos; "
        "initech-okta already workos"
    )
    states = {n: c.state for n, c in parse_routemap(path.read_text()).connections.items()}
    assert states["initech-group-oidc"] == states["initrode-google"] == "workos"


# --- dry runs say what the real run would; the audit line says --force (issue 22) ------------------


@pytest.mark.parametrize("dry_run", [True, False])
def test_dry_run_warns_as_the_real_run_does(tmp_path: Path, dry_run: bool) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)  # unknown: auth0; b is OIDC
    out, err = io.StringIO(), io.StringIO()
    assert run_set(str(path), ["b"], "workos", out, err, dry_run=dry_run, by="ann") == 0
    assert "warning: connection b (oidc) is on workos but defaults.unknown is auth0" in err.getvalue()
    assert (path.read_text() == ORGS) is dry_run


@pytest.mark.parametrize("dry_run", [True, False])
def test_dry_run_refuses_as_the_real_run_does(tmp_path: Path, dry_run: bool) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    out, err = io.StringIO(), io.StringIO()

    def gate(route_map: object, changes: list[object]) -> list[str]:
        return ["a: WorkOS says inactive"]

    assert run_set(str(path), ["a"], "workos", out, err, dry_run=dry_run, gate=gate) == 1
    assert "refused: a: WorkOS says inactive" in err.getvalue()
    assert out.getvalue() == "" and path.read_text() == ORGS


@pytest.mark.parametrize(
    ("force", "dry_run", "says"),
    [
        (True, False, "(by ann, --force, sha256 "),
        (True, True, "(dry run, nothing written; by ann, --force, sha256 "),
        (False, False, "(by ann, sha256 "),
    ],
)
def test_the_audit_line_records_force(tmp_path: Path, force: bool, dry_run: bool, says: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    out = io.StringIO()
    assert run_set(str(path), ["a"], "workos", out, io.StringIO(), by="ann", force=force, dry_run=dry_run) == 0
    assert says in out.getvalue().splitlines()[-1]


# --- when a state changed (issue 22) -----------------------------------------------------------------

WHEN = "2026-12-07T19:50:00Z"


@pytest.mark.parametrize(
    ("body", "state", "expected"),
    [
        # block: the stamp goes right after the state line, comments kept
        (
            "  a:\n    protocol: saml\n    state: legacy  # w1\n    notes: x\n",
            "workos",
            f"  a:\n    protocol: saml\n    state: workos  # w1\n    state_changed: {WHEN}\n    notes: x\n",
        ),
        # an earlier stamp is replaced in place, quoted or not
        (
            "  a:\n    protocol: saml\n    state: workos\n    state_changed: '2026-01-01T00:00:00Z'\n",
            "legacy",
            f"  a:\n    protocol: saml\n    state: legacy\n    state_changed: {WHEN}\n",
        ),
        # no state line yet: both after protocol
        (
            "  a:\n    protocol: saml\n    notes: x\n",
            "workos",
            f"  a:\n    protocol: saml\n    state: workos\n    state_changed: {WHEN}\n    notes: x\n",
        ),
        # flow mapping
        (
            "  a: {protocol: oidc, state: legacy}\n",
            "workos",
            f"  a: {{state_changed: {WHEN}, protocol: oidc, state: workos}}\n",
        ),
        # unchanged state: no stamp, nothing written
        (
            "  a:\n    protocol: saml\n    state: workos\n    state_changed: 2026-01-01T00:00:00Z\n",
            "workos",
            "  a:\n    protocol: saml\n    state: workos\n    state_changed: 2026-01-01T00:00:00Z\n",
        ),
    ],
)
def test_plan_states_records_when_the_state_changed(body: str, state: str, expected: str) -> None:
    from proxy.migrate.edit import plan_states

    head = "version: 1\nconnections:\n"
    text, _ = plan_states(head + body, ["a"], state, when=WHEN)
    assert text == head + expected
    conn = parse_routemap(text).connections["a"]
    assert conn.state == state
    assert conn.state_changed == (WHEN if body != expected else conn.state_changed)


def test_run_set_by_organization_stamps_only_what_moved(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ORGS)
    assert run_set(str(path), [], "workos", io.StringIO(), io.StringIO(), organization="org_1", now=lambda: T1) == 0
    conns = parse_routemap(path.read_text()).connections
    assert {n: c.state_changed for n, c in conns.items()} == {"a": WHEN, "b": WHEN, "c": None, "d": None}
