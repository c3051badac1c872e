"""``sso-proxy routes import``, streamed: memory bounded whatever the size of the export.

The package's CSVs are read a row at a time into drafts kept on disk (:mod:`proxy.migrate.spill`);
a route map being re-imported is read a connection at a time into the same file, its comments
from the lines that hold a ``#`` (:mod:`proxy.migrate.routestream`). Then one pass in name order
finishes each draft, merges it with the existing connection, applies the WorkOS ID mapping, writes
its lines and records its identifiers; the identifiers several connections claim, which the
header names, are found on disk once all are written. The result goes to a temp file beside the
target, is read back by the streaming parser (every connection as built, compared by digest), and
only then renamed over the target. The output is byte for byte what rendering the whole map in
memory gives (:func:`proxy.migrate.export.render`, which the tests compare it with).

What stays in memory grows only with what is printed: warnings, skipped rows, remarks, the names
listed in the summary, and the WorkOS ID mapping's rows when one is given.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from proxy.errors import RouteMapError
from proxy.migrate import mapping, merge
from proxy.migrate.drafts import Draft, DraftWarning, Package, draft_warnings, finish, read_package
from proxy.migrate.importtext import KEPT_REMARK, Said, Tally, ambiguity_lines, header_lines, own_remarks, summary
from proxy.migrate.package import ExportError, locate_package
from proxy.migrate.routefile import write_atomic
from proxy.migrate.routestream import read_comments_file, scan_routemap
from proxy.migrate.spill import Spill
from proxy.routing.routemap import Connection, RouteMap


class _Refused(Exception):
    """The written map did not read back; the message says why."""


@dataclass(slots=True)
class _Mapping:
    """The WorkOS ID mapping's rows by the connection they name, and what applying them said."""

    rows: dict[str, list[tuple[int, mapping.MappingRow]]] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    applied: list[tuple[int, str]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)

    def apply(self, conn: Connection) -> Connection:
        rows = self.rows.get(conn.name)
        if not rows:
            if not conn.workos_connection_id:
                self.unmapped.append(conn.name)
            return conn
        for index, row in rows:
            conn, said = mapping.apply_row(conn, row)
            if said is not None:
                self.applied.append((index, said))
        return conn

    def lines(self) -> list[str]:
        result = mapping.MappingResult(
            route_map=RouteMap(),  # summary_lines reads only the lists
            applied=[text for _, text in sorted(self.applied)],
            unmatched=self.unmatched,
            unmapped=self.unmapped,
        )
        return mapping.summary_lines(result, self.bad)


@dataclass(slots=True)
class _Pass:
    """What the pass over every connection collects for the header and the summary."""

    tally: Tally = field(default_factory=Tally)
    said: list[DraftWarning] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the merge's
    own: dict[str, list[str]] = field(default_factory=dict)
    unconfirmed: list[str] = field(default_factory=list)
    kept_absent: list[tuple[str, str]] = field(default_factory=list)
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)  # of the connections as built
    count: int = 0


def _union(
    drafts: Iterator[Draft], existing: Iterator[tuple[str, Connection]]
) -> Iterator[tuple[str, Draft | None, Connection | None]]:
    """Both streams (each in name order) joined by name, in name order."""
    draft, old = next(drafts, None), next(existing, None)
    while draft is not None or old is not None:
        if old is None or (draft is not None and draft.name < old[0]):
            assert draft is not None
            yield draft.name, draft, None
            draft = next(drafts, None)
        elif draft is None or old[0] < draft.name:
            yield old[0], None, old[1]
            old = next(existing, None)
        else:
            yield draft.name, draft, old[1]
            draft, old = next(drafts, None), next(existing, None)


def _by_name(comments: merge.Comments) -> dict[str, merge.Comments]:
    """The kept comments split per connection (rendering one looks only at its own)."""
    out: dict[str, merge.Comments] = {}
    for name, lines in comments.lines.items():
        out[name] = merge.Comments(lines=({name: lines}))
    for anchor, text in comments.inline.items():
        kept = out.setdefault(anchor[0], merge.Comments())
        out[anchor[0]] = merge.Comments(lines=kept.lines, inline={**kept.inline, anchor: text})
    return out


def _connections(
    spill: Spill,
    package: Package,
    body: BinaryIO,
    *,
    domain: str | None,
    merging: bool,
    prune: bool,
    checked_reach: bool,
    comments: merge.Comments,
    ids_map: _Mapping | None,
) -> _Pass:
    """Every connection, in name order: finished, merged, mapped, written to ``body``, counted."""
    done = _Pass()
    per_connection = _by_name(comments)
    existing = spill.existing() if merging else iter(())
    for name, draft, old in _union(spill.drafts.in_order(), existing):
        new: Connection | None = None
        remarks: list[str] = []
        if draft is not None:
            new, warned = finish(draft, package, domain)
            done.said.extend(warned)
            remarks = list(draft.remarks)
            own = own_remarks(remarks, package.notes)
            if own:
                done.own[name] = own
            spill.add_ids(0, new)
        conn = new
        if merging:
            conn, notes = merge.merge_connection(new, old, prune, checked_reach)
            done.notes.extend(notes)
            if conn is None:
                continue
            if new is None:
                done.kept_absent.append((name, conn.state))
                remarks.insert(0, KEPT_REMARK)
        assert conn is not None
        if ids_map is not None:
            conn = ids_map.apply(conn)
        if merging:
            spill.add_ids(1, conn)
        if domain and conn.reachability == "unconfirmed":
            done.unconfirmed.append(name)
        done.tally.count(conn)
        done.count += 1
        done.digest.update(repr(conn).encode())
        lines = merge.render_connection(conn, remarks, per_connection.get(name))
        body.write(("\n".join(lines) + "\n").encode("utf-8"))
    return done


def _read_mapping(path: str, export_dir: str, spill: Spill, prune: bool) -> _Mapping:
    """The mapping's rows, each resolved to a connection of the map being written (or unmatched)."""
    rows, bad = mapping.read_mapping(path)
    auth0_ids = mapping.read_auth0_ids(locate_package(export_dir)[0])
    out = _Mapping(bad=bad)

    def is_connection(name: str) -> bool:
        return name in spill.drafts or (not prune and spill.has_existing(name))

    for index, row in enumerate(rows):
        name = mapping.resolve(row.auth0, is_connection, auth0_ids)
        if name is None:
            out.unmatched.append(mapping.unmatched_line(row))
        else:
            out.rows.setdefault(name, []).append((index, row))
    return out


class _Hashing:
    """A binary file that hashes what is written to it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.fh.write(data)


def run_import(
    export_dir: str,
    output: str,
    stdout: TextIO,
    stderr: TextIO,
    workos_domain: str | None = None,
    *,
    prune: bool = False,
    custom_domain: str | None = None,
    workos_mapping: str | None = None,
) -> int:
    """``sso-proxy routes import EXPORT_DIR [-o PATH] [--prune] [--custom-domain HOST]``; ``-`` writes to stdout.

    The summary goes to stdout, or to stderr when the YAML does. When PATH already holds a valid
    route map, it is merged (:func:`proxy.migrate.merge.merge_connection`: states, defaults, hand-set
    fields and identifiers, comments and connections absent from the export are kept; ``prune`` drops
    the latter); an invalid one is not overwritten. ``workos_domain`` (``WORKOS_CUSTOM_DOMAIN``) lets
    hand-set ``workos_acs_url`` values on the WorkOS custom domain validate.
    """
    with Spill() as spill:
        return _run(spill, export_dir, output, stdout, stderr, workos_domain, prune, custom_domain, workos_mapping)


def _run(
    spill: Spill,
    export_dir: str,
    output: str,
    stdout: TextIO,
    stderr: TextIO,
    workos_domain: str | None,
    prune: bool,
    custom_domain: str | None,
    workos_mapping: str | None,
) -> int:
    try:
        package = read_package(export_dir, spill.drafts)
    except ExportError as exc:
        stderr.write(f"error: {exc}\n")
        return 1
    merging = output != "-" and os.path.exists(output)
    unknown, mode, comments = "auth0", "normal", merge.Comments()
    if merging:
        try:
            comments = read_comments_file(output)
            with open(output, "rb") as fh:
                unknown, mode = scan_routemap(fh, spill.add_existing, output, workos_domain)
        except (OSError, UnicodeDecodeError) as exc:
            stderr.write(f"error: {output} exists and cannot be read: {exc}\n")
            return 1
        except RouteMapError as exc:
            stderr.write(f"error: {output} exists and is not a valid route map; fix or remove it first\n{exc}\n")
            return 1
    ids_map = None
    if workos_mapping is not None:
        try:
            ids_map = _read_mapping(workos_mapping, export_dir, spill, prune)
        except mapping.MappingError as exc:
            stderr.write(f"error: --workos-mapping: {exc}\n")
            return 1
    domain = custom_domain.strip().lower() if custom_domain else None
    body_path = os.path.join(spill.directory, "body.yaml")
    with open(body_path, "wb") as body:
        done = _connections(
            spill,
            package,
            body,
            domain=domain,
            merging=merging,
            prune=prune,
            checked_reach=custom_domain is not None,
            comments=comments,
            ids_map=ids_map,
        )
    spill.index_ids()
    final = 1 if merging else 0
    ambiguous = ambiguity_lines(spill.ambiguous(final))
    for kind, table in spill.ambiguous(final).items():
        done.tally.shared[kind] = len(table)
    done.tally.ids.update(spill.id_counts(final))
    exported_ambiguous = ambiguity_lines(spill.ambiguous(0)) if merging else ambiguous
    head = merge.render_head(
        unknown, mode, header_lines(package.tenant, ambiguous, package.notes), comments, empty=done.count == 0
    )
    said = Said(
        tenant=package.tenant,
        skipped=package.builder.skipped,
        notes=package.notes,
        own=done.own,
        custom_domain=domain,
        unconfirmed=done.unconfirmed if domain is not None else [],
        kept_absent=done.kept_absent,
        mapping_lines=ids_map.lines() if ids_map is not None else [],
        ambiguous=ambiguous,
        warnings=draft_warnings(package, done.said) + exported_ambiguous + done.notes,
    )
    written = _Hashing(None)  # type: ignore[arg-type]  # set by write()

    def write(fh: BinaryIO) -> None:
        written.fh = fh
        written.write(("\n".join(head) + "\n").encode("utf-8"))
        with open(body_path, "rb") as lines:
            for chunk in iter(lambda: lines.read(1 << 16), b""):
                written.write(chunk)

    def check(path: str) -> None:
        read_back = hashlib.sha256()
        with open(path, "rb") as fh:
            scan_routemap(fh, lambda conn: read_back.update(repr(conn).encode()), output, workos_domain)
        if read_back.digest() != done.digest.digest():  # the YAML round trip lost something
            raise _Refused("error: the generated route map does not read back as built; nothing written\n")

    try:
        if output == "-":
            staged = os.path.join(spill.directory, "routes.yaml")
            with open(staged, "wb") as out:
                write(out)
            check(staged)
            with open(staged, encoding="utf-8") as text:
                shutil.copyfileobj(text, stdout)
            stderr.write(summary(done.tally, said))
            return 0
        write_atomic(output, write, check)
    except RouteMapError as exc:  # a bug here, never the operator's: refuse to write it
        stderr.write(f"error: the generated route map does not validate\n{exc}\n")
        return 1
    except _Refused as exc:
        stderr.write(str(exc))
        return 1
    except OSError as exc:
        stderr.write(f"error: cannot write {output}: {exc.strerror or exc}\n")
        return 1
    stdout.write(summary(done.tally, said))
    stdout.write(f"wrote {output} (sha256 {written.sha256.hexdigest()})\n")
    return 0
