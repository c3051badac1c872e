"""The SSO export package, read: its folder located, its CSVs as rows with located errors, the tenant
of ``manifest.json``, and what the exporter said about it (``warnings.jsonl``) as notes the import shows
and keeps. ``export.py`` builds the route map from what is read here.

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

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from proxy.errors import ProxyError
from proxy.routing.routemap import WSFED_STRATEGIES

ROUTES_CSV = "proxy_routes.csv"


SAML_CSV = "saml_connections.csv"


OIDC_CSV = "oidc_connections.csv"


MANIFEST = "manifest.json"


TENANT_HOST = re.compile(r"^([a-z0-9][a-z0-9-]*)(?:\.[a-z0-9-]+)?\.auth0\.com$")


_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# manifest.json is a few hundred bytes; only sourceTenant is read from it.
MAX_MANIFEST_BYTES = 1 << 20


class ExportError(ProxyError):
    """The export package cannot be read at all (missing folder, unreadable file, bad manifest)."""


class SkippedRow(NamedTuple):
    """A CSV row left out of the route map: file (relative to the package), 1-based line, why."""

    file: str
    line: int
    reason: str


class Row(NamedTuple):
    line: int
    values: dict[str, str]


def locate_package(path: str) -> tuple[Path, Path]:
    """(package root, sso folder) for a path that is either of them."""
    given = Path(path)
    if not given.is_dir():
        raise ExportError(f"{path}: not a directory (expected an SSO export package or its sso/ folder)")
    if (given / "sso").is_dir():
        return given, given / "sso"
    if any((given / name).is_file() for name in (ROUTES_CSV, SAML_CSV, OIDC_CSV)):
        return given.parent, given
    raise ExportError(f"{path}: no sso/ folder and none of {ROUTES_CSV}, {SAML_CSV}, {OIDC_CSV}")


def tenant_from_host(value: str) -> str | None:
    """``globex-prod.eu.auth0.com`` (or a URL on it, or a bare ``globex-prod``) -> ``globex-prod``."""
    text = value.strip().lower()
    host = urlsplit(text).hostname if "://" in text else text.rstrip("/")
    if not host:
        return None
    match = TENANT_HOST.match(host)
    if match:
        return match.group(1)
    return host if _TENANT_NAME.match(host) else None


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line of a byte offset."""
    return data.count(b"\n", 0, offset) + 1


def read_csv(path: Path, label: str, skipped: list[SkippedRow]) -> Iterator[Row]:
    """Rows of a CSV as header -> stripped value, with the 1-based line each row starts on.

    Handles a UTF-8 BOM, CRLF, quoted fields with commas and newlines, columns in any order and
    unknown extra columns (kept, never read). Rows whose field count differs from the header's are
    skipped: their columns cannot be trusted. Anything that makes the file unreadable as a whole
    (not UTF-8, malformed CSV, a field over the csv module's 128 KiB limit, a column named twice)
    is an :class:`ExportError` naming the file and line. Streamed: time is linear in the file and
    memory bounded by its longest row (a 200,000-connection export was read whole, three
    copies at once).
    """
    try:
        fh = path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise ExportError(f"{label}: cannot read: {exc.strerror or exc}") from exc
    with fh:
        yield from _rows(_utf8_lines(fh, label), label, skipped)


# A byte that is not UTF-8 decodes, under surrogateescape, to one of these (valid UTF-8 never does).
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _utf8_lines(fh: Iterable[str], label: str) -> Iterator[str]:
    """The file's lines; ExportError at the first line holding a byte that is not UTF-8."""
    try:
        for number, line in enumerate(fh, start=1):
            bad = _NOT_UTF8.search(line)
            if bad is not None:
                byte = ord(bad.group()) - 0xDC00
                raise ExportError(f"{label}:{number}: not UTF-8 (invalid byte 0x{byte:02x})")
            yield line
    except OSError as exc:
        raise ExportError(f"{label}: cannot read: {exc.strerror or exc}") from exc


def _rows(lines: Iterator[str], label: str, skipped: list[SkippedRow]) -> Iterator[Row]:
    reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    next_line = 1
    try:
        for fields in reader:
            line, next_line = next_line, reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header = [name.strip() for name in fields]
                named = [name for name in header if name]
                if len(set(named)) != len(named):
                    twice = sorted({name for name in named if named.count(name) > 1})
                    raise ExportError(f"{label}:{line}: column named more than once: {', '.join(map(repr, twice))}")
                continue
            if len(fields) != len(header):
                skipped.append(SkippedRow(label, line, f"{len(fields)} fields where the header has {len(header)}"))
                continue
            yield Row(line, {name: value.strip() for name, value in zip(header, fields, strict=False) if name})
    except csv.Error as exc:
        raise ExportError(f"{label}:{reader.line_num}: malformed CSV: {exc}") from exc


def read_tenant(root: Path, warnings: list[str]) -> str | None:
    """``sourceTenant`` from ``manifest.json``; ExportError (located) when the file is not JSON.

    Bounded: at most :data:`MAX_MANIFEST_BYTES` are read; hostile JSON (nesting deeper than the
    parser's recursion limit, integers longer than Python converts) is an error, not a traceback.
    """
    manifest = root / MANIFEST
    if not manifest.is_file():
        return None
    try:
        with manifest.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ExportError(f"{MANIFEST}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ExportError(f"{MANIFEST}: larger than {MAX_MANIFEST_BYTES} bytes; not an export manifest")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ExportError(
            f"{MANIFEST}:{_line_of(raw, exc.start)}: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ExportError(f"{MANIFEST}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise ExportError(f"{MANIFEST}: not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer beyond sys.get_int_max_str_digits()
        raise ExportError(f"{MANIFEST}: not valid JSON: {exc}") from exc
    source = data.get("sourceTenant") if isinstance(data, dict) else None
    if not isinstance(source, str) or not source.strip():
        warnings.append(f"{MANIFEST}: no sourceTenant")
        return None
    tenant = tenant_from_host(source)
    if tenant is None:
        warnings.append(f"{MANIFEST}: sourceTenant {source!r} is not an Auth0 tenant domain")
    return tenant


# --- warnings.jsonl --------------------------------------------------------------------------------

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
    strategy: str | None = None  # skipped: the Auth0 strategy where it matters (adfs: WS-Federation)
    organizations: tuple[str, ...] = ()  # multi_org_connection_consolidated: the organizations sharing it


@dataclass(frozen=True, slots=True)
class PackageNotes:
    """The exporter's warnings, sorted for the import: per connection, and for the package."""

    skipped: tuple[Note, ...] = ()  # enterprise connections the exporter left out
    stay_on_auth0: tuple[Note, ...] = ()  # database and social connections
    remarks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # connection -> remarks
    encrypted: frozenset[str] = frozenset()  # connections with encrypted assertions
    # connection -> the organizations that share it (the exporter's organization column then holds a con_ id)
    organizations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
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
    if code == "unsupported_connection_protocol" and name and strategy in WSFED_STRATEGIES:
        # An enterprise connection speaking WS-Federation whose options carry no SAML data the exporter
        # reads: its logins return to /login/callback, so it goes in the map, legacy and marked.
        return Note(
            "skipped",
            code,
            f"skipped by the exporter (strategy {strategy}: WS-Federation, outside its SAML/OIDC handoff): "
            "WorkOS will not have it; it stays legacy",
            name,
            "saml",
            strategy=strategy,
        )
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
            strategy=strategy if strategy in WSFED_STRATEGIES else None,
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
            organizations=tuple(dict.fromkeys(orgs)),
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
    organizations: dict[str, tuple[str, ...]] = {}
    other: dict[str, int] = {}
    for note in notes:
        if note.organizations and note.connection:
            organizations[note.connection] = note.organizations
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
        organizations=organizations,
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


# --- raw/auth0-connections.jsonl -------------------------------------------------------------------

RAW_CONNECTIONS = "raw/auth0-connections.jsonl"
_MAX_RAW_LINE = 4 * 1024 * 1024  # a connection with inline metadata XML; far above a real one
_STRATEGY = re.compile(r"[a-z0-9-]{1,40}")


def read_strategies(root: Path) -> dict[str, str]:
    """Auth0 connection name -> its ``strategy`` (``samlp``, ``oidc``, ``adfs`` ...), from the raw
    connections the exporter writes beside the CSVs (absent or unreadable: {}). The CSVs do not say
    it: the exporter writes an ADFS connection (WS-Federation) as a SAML one, or skips it."""
    path = root / RAW_CONNECTIONS
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    try:
        with path.open("rb") as fh:
            for raw in iter(lambda: fh.readline(_MAX_RAW_LINE), b""):
                try:
                    record = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(record, dict):
                    continue
                name, strategy = record.get("name"), record.get("strategy")
                if isinstance(name, str) and isinstance(strategy, str) and _STRATEGY.fullmatch(strategy.lower()):
                    out[name] = strategy.lower()
    except OSError:
        return out
    return out
