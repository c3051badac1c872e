"""Tests for proxy.edit: ``sso-proxy routes set`` edits one state in place and keeps everything else."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from proxy.edit import EditError, run_set, set_state
from proxy.errors import RouteMapError
from proxy.export import run_import
from proxy.routemap import parse_routemap

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
        (VALID, "initech-okta", "auth0", "state must be one of legacy, workos (got 'auth0')"),
        (VALID, "initech-okta", "", "state must be one of legacy, workos (got '')"),
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
    assert "connections.hooli.state: must be one of legacy, workos (got missing)" in str(info.value)


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
    assert run_set(str(path), "initech-okta", "workos", out, err) == 0
    data = path.read_bytes()
    assert data.decode() == VALID.replace("state: legacy   # flip", "state: workos   # flip")
    assert out.getvalue() == f"connection initech-okta: legacy -> workos (sha256 {hashlib.sha256(data).hexdigest()})\n"
    assert parse_routemap(data).sha256 == hashlib.sha256(data).hexdigest()
    assert err.getvalue() == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["routes.yaml"]


def test_run_set_back_and_forth_restores_the_original_bytes(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(VALID)
    assert run_set(str(path), "initech-okta", "workos", io.StringIO(), io.StringIO()) == 0
    out = io.StringIO()
    assert run_set(str(path), "initech-okta", "legacy", out, io.StringIO()) == 0
    assert out.getvalue().startswith("connection initech-okta: workos -> legacy (sha256 ")
    assert path.read_text() == VALID


def test_run_set_to_the_current_state_does_not_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(VALID)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    out = io.StringIO()
    assert run_set(str(path), "umbrella-entra", "workos", out, io.StringIO()) == 0
    digest = hashlib.sha256(VALID.encode()).hexdigest()
    assert out.getvalue() == f"connection umbrella-entra: already workos, file unchanged (sha256 {digest})\n"
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


@pytest.mark.parametrize(
    ("content", "connection", "state", "message"),
    [
        (VALID, "nope", "workos", "error: "),
        (VALID, "initech-okta", "on", "error: state must be one of legacy, workos (got 'on')"),
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
    assert rm.counts_by_state() == {"legacy": 5, "workos": 1}
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [("    state: legacy", "    state: workos")]
    assert after.startswith("# sso-proxy route map")  # the header comments survive
