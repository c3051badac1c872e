"""What the exporter said about the package: ``warnings.jsonl`` -> notes the import shows and keeps.

The WorkOS migration exporter writes one JSON object per line to ``warnings.jsonl`` (also listed in
``manifest.json``'s ``files.warnings``): ``code``, ``message``, ``connection_name``, ``protocol`` and a
``details`` object. For routing, four kinds matter:

- ``unsupported_connection_protocol``: an Auth0 connection left out because it is not a SAML/OIDC
  enterprise connection (database ``auth0``, social ``google-oauth2`` ...). It stays on Auth0 for
  good, and its logins also come back to ``/login/callback`` (with ``code``/``state`` and nothing the
  map can identify), so they follow ``defaults.unknown``.
- ``incomplete_connection_configuration``: an enterprise connection the exporter skipped (a missing
  certificate, ...). WorkOS will not have it, so it is imported as a ``legacy`` connection with a
  remark, identified by its name, and ``sso-proxy serve`` without Auth0 names it.
- ``multi_org_connection_consolidated``: one connection attached to several organizations, merged
  into one WorkOS connection; the exporter asks for customer confirmation before activation.
- ``secrets_redacted`` naming ``assertionEncryptionKey``: the connection uses encrypted assertions, so
  the ``<Audience>`` is inside the encrypted part and only the Issuer, the Destination or
  ``?connection=`` can identify its callbacks.

Everything else is counted by code. The reader is linear and bounded: lines longer than
:data:`MAX_LINE` or nested deeper than JSON's recursion limit are reported, located, and skipped;
every text that reaches the summary or a YAML comment is one printable line of bounded length.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WARNINGS_FILE = "warnings.jsonl"
MAX_LINE = 64 * 1024
MAX_TEXT = 300
# Exporter protocols/strategies of connections that are not enterprise SSO and stay on Auth0.
DATABASE_STRATEGIES = frozenset(("auth0",))
ENTERPRISE_PROTOCOLS = frozenset(("saml", "oidc"))


def one_line(value: object, limit: int = MAX_TEXT) -> str:
    """Printable single-line text: control characters, line and paragraph separators become spaces."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    cleaned = "".join(c if c.isprintable() else " " for c in text[: limit * 4])
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Note:
    """One exporter warning, classified. ``kind``: skipped, stays_on_auth0, remark, other."""

    kind: str
    code: str
    text: str
    connection: str | None = None
    protocol: str | None = None
    encrypted: bool = False


@dataclass(frozen=True, slots=True)
class PackageNotes:
    """The exporter's warnings, sorted for the import: per connection, and for the package."""

    skipped: tuple[Note, ...] = ()  # enterprise connections the exporter left out
    stay_on_auth0: tuple[Note, ...] = ()  # database and social connections
    remarks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # connection -> remarks
    encrypted: frozenset[str] = frozenset()  # connections with encrypted assertions
    other: Mapping[str, int] = field(default_factory=dict)  # code -> count (not about routing)
    problems: tuple[str, ...] = ()  # located lines that could not be read
    found: bool = False  # warnings.jsonl was there


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return one_line(value, 200) if isinstance(value, str) and value.strip() else None


def _strings(value: Any, limit: int = 20) -> list[str]:
    if not isinstance(value, list):
        return []
    return [one_line(v, 100) for v in value[:limit] if isinstance(v, str) and v.strip()]


def classify(record: Mapping[str, Any]) -> Note:
    """One parsed ``warnings.jsonl`` record -> a :class:`Note` (pure; never raises on odd shapes)."""
    code = _text(record, "code") or "(no code)"
    name = _text(record, "connection_name")
    protocol = (_text(record, "protocol") or "").lower() or None
    details = record.get("details") if isinstance(record.get("details"), Mapping) else {}
    assert isinstance(details, Mapping)
    message = _text(record, "message") or code
    strategy = (_text(details, "strategy") or protocol or "").lower()
    if code == "unsupported_connection_protocol" and name:
        kind = "database" if strategy in DATABASE_STRATEGIES else "social or other"
        return Note(
            "stays_on_auth0",
            code,
            f"{name} ({kind}, strategy {strategy or 'unknown'}) stays on Auth0: not an enterprise SSO connection",
            name,
            protocol,
        )
    if code == "incomplete_connection_configuration" and name:
        missing = _strings(details.get("missingFields"))
        why = f"missing {', '.join(missing)}" if missing else "required handoff configuration was not available"
        return Note(
            "skipped",
            code,
            f"skipped by the exporter ({why}): WorkOS will not have it; keep it legacy until it is set up in WorkOS",
            name,
            protocol,
        )
    if code == "multi_org_connection_consolidated" and name:
        orgs = _strings(details.get("sourceOrganizationIds"))
        domains = _strings(details.get("domains"))
        parts = [f"organizations {', '.join(orgs)}" if orgs else "", f"domains {', '.join(domains)}" if domains else ""]
        listed = "; ".join(p for p in parts if p)
        return Note(
            "remark",
            code,
            "attached to several organizations"
            + (f" ({listed})" if listed else "")
            + ", consolidated into one WorkOS connection: customer confirmation required before activation",
            name,
            protocol,
        )
    if code == "secrets_redacted" and name:
        fields = _strings(details.get("fields"))
        if "assertionEncryptionKey" in fields:
            return Note("remark", code, ENCRYPTED_REMARK, name, protocol, encrypted=True)
        return Note("other", code, message, name, protocol)
    if name:
        return Note("remark", code, f"exporter: {message}", name, protocol)
    return Note("other", code, message)


ENCRYPTED_REMARK = (
    "uses encrypted assertions: the Audience is inside the encrypted part, so only ?connection=, "
    "the response's Issuer or its Destination can identify its callbacks"
)


def collect(notes: Iterable[Note], problems: Iterable[str] = (), found: bool = True) -> PackageNotes:
    """Sort classified notes into a :class:`PackageNotes` (duplicates once, order kept)."""
    skipped: dict[str, Note] = {}
    stay: dict[str, Note] = {}
    remarks: dict[str, list[str]] = {}
    encrypted: set[str] = set()
    other: dict[str, int] = {}
    for note in notes:
        if note.kind == "skipped" and note.connection:
            skipped.setdefault(note.connection, note)
        elif note.kind == "stays_on_auth0" and note.connection:
            stay.setdefault(note.connection, note)
        elif note.kind == "remark" and note.connection:
            bucket = remarks.setdefault(note.connection, [])
            if note.text not in bucket:
                bucket.append(note.text)
            if note.encrypted:
                encrypted.add(note.connection)
        else:
            other[note.code] = other.get(note.code, 0) + 1
    for name, note in skipped.items():
        remarks.setdefault(name, []).insert(0, note.text)
    return PackageNotes(
        skipped=tuple(skipped.values()),
        stay_on_auth0=tuple(stay.values()),
        remarks={name: tuple(texts) for name, texts in remarks.items()},
        encrypted=frozenset(encrypted),
        other=dict(sorted(other.items())),
        problems=tuple(problems),
        found=found,
    )


def read_notes(root: Path) -> PackageNotes:
    """Read ``<root>/warnings.jsonl`` (absent: empty notes); bad lines are reported, never raised."""
    path = root / WARNINGS_FILE
    if not path.is_file():
        return PackageNotes(found=False)
    notes: list[Note] = []
    problems: list[str] = []
    try:
        with path.open("rb") as fh:
            for number, raw in enumerate(iter(lambda: fh.readline(MAX_LINE + 1), b""), start=1):
                where = f"{WARNINGS_FILE}:{number}"
                if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                    problems.append(f"{where}: line longer than {MAX_LINE} bytes; skipped")
                    while raw and not raw.endswith(b"\n"):  # skip the rest of the line in bounded reads
                        raw = fh.readline(MAX_LINE + 1)
                    continue
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8-sig"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    problems.append(f"{where}: not a JSON object; skipped")
                    continue
                if not isinstance(record, dict):
                    problems.append(f"{where}: not a JSON object; skipped")
                    continue
                notes.append(classify(record))
    except OSError as exc:
        problems.append(f"{WARNINGS_FILE}: cannot read: {exc.strerror or exc}")
    return collect(notes, problems)


def summary_lines(notes: PackageNotes) -> list[str]:
    """The exporter's notes for ``routes import``'s summary."""
    if not notes.found:
        return [f"exporter notes: none ({WARNINGS_FILE} not in the package)"]
    lines: list[str] = []
    if notes.skipped:
        lines.append(f"connections the exporter skipped (imported as legacy, not in WorkOS): {len(notes.skipped)}")
        lines.extend(f"  {n.connection}: {n.text}" for n in notes.skipped)
    if notes.stay_on_auth0:
        lines.append(
            f"Auth0 connections that stay on Auth0: {len(notes.stay_on_auth0)} "
            "(their logins also return to /login/callback and follow defaults.unknown)"
        )
        lines.extend(f"  {n.text}" for n in notes.stay_on_auth0)
    skipped = {n.connection for n in notes.skipped}
    remarks = {name: texts for name, texts in notes.remarks.items() if name not in skipped or len(texts) > 1}
    if remarks:
        lines.append(f"exporter remarks on connections: {sum(len(t) for t in remarks.values())}")
        for name, texts in sorted(remarks.items()):
            lines.extend(f"  {name}: {text}" for text in texts if name not in skipped or text != texts[0])
    if notes.other:
        lines.append(
            "other exporter warnings (not about routing): " + ", ".join(f"{c} {n}" for c, n in notes.other.items())
        )
    if notes.problems:
        lines.append(f"{WARNINGS_FILE} lines not read: {len(notes.problems)}")
        lines.extend(f"  {p}" for p in notes.problems)
    return lines or ["exporter notes: none"]
