"""An import's working set on disk: a SQLite file in a private temporary directory.

``routes import`` of a large export (hundreds of thousands of connections) keeps here what would
otherwise grow with the export: the connection drafts assembled from the package's CSVs, the
connections of the route map being re-imported, and every identifier written (to find the ones
several connections claim). Memory stays at SQLite's page cache (:data:`CACHE_KIB`) plus
:data:`CACHED_DRAFTS` drafts, whatever the size of the export; time stays linear but for the
B-tree's logarithm. Nothing here is durable: the file is deleted when the import ends.

Values are pickled: only this process writes and reads them, inside a directory only it can open.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import tempfile
from collections.abc import Iterator, MutableMapping
from typing import Any

from proxy.migrate.drafts import Draft
from proxy.routing.routemap import ID_KINDS, Connection

CACHE_KIB = 8 * 1024  # SQLite's page cache
CACHED_DRAFTS = 2048  # drafts kept in memory between writes (rows of one connection tend to be near)
_SCHEMA = (
    "CREATE TABLE drafts (name TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID",
    "CREATE TABLE existing (name TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID",
    # source 0: the connections as exported, 1: as written (after a merge); kind: index in ID_KINDS
    "CREATE TABLE ids (source INTEGER, kind INTEGER, value TEXT, name TEXT)",
)


def _load(blob: bytes) -> Any:
    return pickle.loads(blob)  # noqa: S301 - written by this process, in its own private directory


def _dump(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class Spill:
    """The SQLite file of one import; :meth:`close` deletes it."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="sso-proxy-import-")
        self.directory = self._dir.name  # the import's other scratch files go here too
        self.db = sqlite3.connect(os.path.join(self.directory, "import.db"), isolation_level=None)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE", f"cache_size = -{CACHE_KIB}"):
            self.db.execute(f"PRAGMA {pragma}")
        for statement in _SCHEMA:
            self.db.execute(statement)
        self.db.execute("BEGIN")
        self.drafts = DraftStore(self.db)

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the existing map's connections ---

    def add_existing(self, conn: Connection) -> None:
        self.db.execute("INSERT OR REPLACE INTO existing VALUES (?, ?)", (conn.name, _dump(conn)))

    def existing(self) -> Iterator[tuple[str, Connection]]:
        """The existing map's connections by name (code point order, as ``sorted`` gives)."""
        for name, blob in self.db.execute("SELECT name, value FROM existing ORDER BY name"):
            yield name, _load(blob)

    def has_existing(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM existing WHERE name = ?", (name,)).fetchone() is not None

    # --- identifiers ---

    def add_ids(self, source: int, conn: Connection) -> None:
        rows = [(source, k, value, conn.name) for k, kind in enumerate(ID_KINDS) for value in getattr(conn, kind)]
        if rows:
            self.db.executemany("INSERT INTO ids VALUES (?, ?, ?, ?)", rows)

    def index_ids(self) -> None:
        self.db.execute("CREATE INDEX ids_by_value ON ids (source, kind, value)")

    def id_counts(self, source: int) -> dict[str, int]:
        """Distinct identifiers per kind."""
        counts = dict.fromkeys(ID_KINDS, 0)
        query = "SELECT kind, COUNT(DISTINCT value) FROM ids WHERE source = ? GROUP BY kind"
        for kind, count in self.db.execute(query, (source,)):
            counts[ID_KINDS[kind]] = count
        return counts

    def ambiguous(self, source: int) -> dict[str, dict[str, tuple[str, ...]]]:
        """kind -> identifier -> the connections (sorted) that all claim it, as ``build_index`` gives."""
        out: dict[str, dict[str, tuple[str, ...]]] = {kind: {} for kind in ID_KINDS}
        query = (
            "SELECT DISTINCT i.kind, i.value, i.name FROM ids AS i JOIN "
            "(SELECT kind, value FROM ids WHERE source = ?1 GROUP BY kind, value HAVING COUNT(DISTINCT name) > 1) "
            "AS shared ON i.kind = shared.kind AND i.value = shared.value WHERE i.source = ?1 "
            "ORDER BY i.kind, i.value, i.name"
        )
        for kind, value, name in self.db.execute(query, (source,)):
            table = out[ID_KINDS[kind]]
            table[value] = (*table.get(value, ()), name)
        return out


class DraftStore(MutableMapping[str, Draft]):
    """name -> :class:`Draft` on disk; the drafts last used stay in memory and are written back.

    A draft taken from here may be changed in place (the builder does): it stays in the cache, and
    the cache is written out whole when it fills and before the drafts are read back in order.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.cache: dict[str, Draft] = {}
        self.written = 0

    def flush(self) -> None:
        rows = [(name, _dump(draft)) for name, draft in self.cache.items()]
        self.db.executemany("INSERT OR REPLACE INTO drafts VALUES (?, ?)", rows)
        self.cache.clear()

    def _keep(self, draft: Draft) -> Draft:
        if len(self.cache) >= CACHED_DRAFTS:
            self.flush()
        self.cache[draft.name] = draft
        return draft

    def __getitem__(self, name: str) -> Draft:
        draft = self.cache.get(name)
        if draft is not None:
            return draft
        row = self.db.execute("SELECT value FROM drafts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        return self._keep(_load(row[0]))

    def __setitem__(self, name: str, draft: Draft) -> None:
        if name not in self.cache and name not in self:
            self.written += 1
        self._keep(draft)

    def __delitem__(self, name: str) -> None:  # pragma: no cover - the builder never removes a draft
        raise NotImplementedError

    def __contains__(self, name: object) -> bool:
        if name in self.cache:
            return True
        return self.db.execute("SELECT 1 FROM drafts WHERE name = ?", (name,)).fetchone() is not None

    def __len__(self) -> int:
        return self.written

    def __iter__(self) -> Iterator[str]:
        for draft in self.in_order():
            yield draft.name

    def in_order(self) -> Iterator[Draft]:
        """Every draft, by name (code point order, as ``sorted`` gives)."""
        self.flush()
        for (blob,) in self.db.execute("SELECT value FROM drafts ORDER BY name"):
            yield _load(blob)
