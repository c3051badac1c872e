"""Tests for proxy.migrate.package: the exporter's warnings.jsonl, classified for the import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.migrate.package import (
    ENCRYPTED_REMARK,
    MAX_LINE,
    Note,
    PackageNotes,
    classify,
    collect,
    one_line,
    read_notes,
    summary_lines,
)


@pytest.mark.parametrize(
    ("record", "kind", "connection", "text_has"),
    [
        (
            {
                "code": "unsupported_connection_protocol",
                "connection_name": "Username-Password-Authentication",
                "protocol": "auth0",
                "details": {"strategy": "auth0"},
            },
            "stays_on_auth0",
            "Username-Password-Authentication",
            "(database, strategy auth0) stays on Auth0",
        ),
        (
            {
                "code": "unsupported_connection_protocol",
                "connection_name": "google-oauth2",
                "protocol": "google-oauth2",
            },
            "stays_on_auth0",
            "google-oauth2",
            "(social or other, strategy google-oauth2)",
        ),
        (
            {
                "code": "unsupported_connection_protocol",
                "connection_name": "initrode-adfs",
                "protocol": "adfs",
                "details": {"strategy": "adfs"},
            },
            "skipped",  # WS-Federation: its logins come back to the proxy; imported, marked adfs
            "initrode-adfs",
            "skipped by the exporter (strategy adfs: WS-Federation",
        ),
        (
            {"code": "unsupported_connection_protocol", "connection_name": "w", "protocol": "ADFS"},
            "skipped",  # no details: the protocol is the strategy, as the exporter writes it
            "w",
            "(strategy adfs: WS-Federation",
        ),
        (
            {
                "code": "incomplete_connection_configuration",
                "connection_name": "hooli-okta-sandbox",
                "protocol": "saml",
                "details": {"missingFields": ["x509Cert"]},
            },
            "skipped",
            "hooli-okta-sandbox",
            "skipped by the exporter (missing x509Cert)",
        ),
        (
            {"code": "incomplete_connection_configuration", "connection_name": "x", "details": "not a mapping"},
            "skipped",
            "x",
            "required handoff configuration was not available",
        ),
        (
            {
                "code": "multi_org_connection_consolidated",
                "connection_name": "initech-group-oidc",
                "details": {"sourceOrganizationIds": ["org_1", "org_2"], "domains": ["a.com", 7]},
            },
            "remark",
            "initech-group-oidc",
            "(organizations org_1, org_2; domains a.com), consolidated into one WorkOS connection",
        ),
        (
            {"code": "multi_org_connection_consolidated", "connection_name": "c", "details": {}},
            "remark",
            "c",
            "attached to several organizations, consolidated",
        ),
        (
            {
                "code": "secrets_redacted",
                "connection_name": "umbrella-onelogin",
                "details": {"fields": ["requestSigningKey", "assertionEncryptionKey"]},
            },
            "remark",
            "umbrella-onelogin",
            "uses encrypted assertions",
        ),
        (
            {"code": "secrets_redacted", "connection_name": "c", "details": {"fields": ["clientSecret"]}},
            "other",
            "c",
            "",
        ),
        (
            {"code": "something_new", "connection_name": "c", "message": "a new remark"},
            "remark",
            "c",
            "exporter: a new",
        ),
        ({"code": "blocked_user_metadata_only", "message": "Blocked user"}, "other", None, "Blocked user"),
        ({}, "other", None, "(no code)"),
        ({"code": 5, "connection_name": ["x"], "message": {"a": 1}}, "other", None, "(no code)"),
    ],
)
def test_classify(record: dict[str, Any], kind: str, connection: str | None, text_has: str) -> None:
    note = classify(record)
    assert (note.kind, note.connection) == (kind, connection)
    assert text_has in note.text


def test_one_line_removes_line_breaks_and_separators_and_bounds_length() -> None:
    assert one_line("a\nb\r\u2028c\u0085d\x00e") == "a b c d e"
    assert len(one_line("x" * 10_000)) == 300
    assert one_line({"a": 1}) == '{"a": 1}'


def test_collect_sorts_and_deduplicates() -> None:
    notes = [
        Note("skipped", "incomplete_connection_configuration", "skipped", "s", "saml"),
        Note("skipped", "incomplete_connection_configuration", "skipped", "s", "saml"),
        Note("remark", "secrets_redacted", ENCRYPTED_REMARK, "e", "saml", encrypted=True),
        Note("remark", "secrets_redacted", ENCRYPTED_REMARK, "e", "saml", encrypted=True),
        Note("remark", "x", "more on s", "s"),
        Note("stays_on_auth0", "unsupported_connection_protocol", "g stays", "g"),
        Note("other", "secrets_redacted", "m", "c"),
        Note("other", "secrets_redacted", "m", "d"),
    ]
    got = collect(notes)
    assert [n.connection for n in got.skipped] == ["s"]
    assert got.remarks == {"s": ("skipped", "more on s"), "e": (ENCRYPTED_REMARK,)}
    assert got.encrypted == frozenset({"e"})
    assert got.other == {"secrets_redacted": 2}
    lines = summary_lines(got)
    assert "connections the exporter skipped (imported as legacy, not in WorkOS): 1" in lines
    assert "  s: more on s" in lines and "  s: skipped" in lines


def test_missing_file_says_so(tmp_path: Path) -> None:
    notes = read_notes(tmp_path)
    assert notes == PackageNotes(found=False)
    assert summary_lines(notes) == ["exporter notes: none (warnings.jsonl not in the package)"]
    (tmp_path / "warnings.jsonl").write_text("")
    assert summary_lines(read_notes(tmp_path)) == ["exporter notes: none"]


def test_hostile_lines_are_located_and_skipped(tmp_path: Path) -> None:
    good = json.dumps({"code": "multi_org_connection_consolidated", "connection_name": "c"})
    lines = [
        b"not json",
        b"[1, 2]",
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the recursion limit, and longer than a line may be
        b"[" * 5_000 + b"]" * 5_000,  # deep but short: RecursionError, answered as not JSON
        b"\xff\xfe",
        b"",
        good.encode(),
    ]
    (tmp_path / "warnings.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    notes = read_notes(tmp_path)
    assert notes.problems == (
        "warnings.jsonl:1: not a JSON object; skipped",
        "warnings.jsonl:2: not a JSON object; skipped",
        f"warnings.jsonl:3: line longer than {MAX_LINE} bytes; skipped",
        "warnings.jsonl:4: not a JSON object; skipped",
        "warnings.jsonl:5: not a JSON object; skipped",
    )
    assert list(notes.remarks) == ["c"]  # the line after the long one is still read
    assert "warnings.jsonl lines not read: 5" in summary_lines(notes)


def test_a_long_last_line_without_newline(tmp_path: Path) -> None:
    (tmp_path / "warnings.jsonl").write_bytes(b"x" * (3 * MAX_LINE + 7))
    assert read_notes(tmp_path).problems == (f"warnings.jsonl:1: line longer than {MAX_LINE} bytes; skipped",)


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "warnings.jsonl").mkdir()  # is_file() is false: treated as absent
    assert read_notes(tmp_path).found is False


def test_read_is_linear(tmp_path: Path) -> None:
    """Many records: every one read once (a count, not a time)."""
    record = json.dumps({"code": "secrets_redacted", "connection_name": "c", "details": {"fields": ["x"]}})
    (tmp_path / "warnings.jsonl").write_text((record + "\n") * 20_000)
    assert read_notes(tmp_path).other == {"secrets_redacted": 20_000}
