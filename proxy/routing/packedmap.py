"""A route map's connections and lookup indexes in a few large buffers, not objects per connection.

A map of 20,000 connections held as :class:`~proxy.routing.routemap.Connection` objects and dicts
is about 200,000 small Python objects (23 MB). CPython's small-object allocator keeps them in 1 MiB
arenas, and while a reload builds the next map beside the one in force, the two maps' objects share
arenas: when the old map goes, its arenas keep a few of the new map's objects each and are never
given back (bench/NOTES.md, "Reload memory": RSS rose 18 MiB on the first reload and stayed).

Here a map is a handful of ``bytes`` and ``array`` buffers (about 4 MB at 20,000): the names and
each identifier kind as UTF-8 in one buffer with a hash table of positions over it, and each
connection's fields as one ``marshal`` record. Buffers that large come straight from the C library,
so a replaced map's memory goes back to the system whole. The child that parses a route file
(:mod:`proxy.mapbuild`) builds the buffers; the server only reads them into place.

Reads cost what they are asked for: :meth:`PackedConnections.remember` and an index's ``get``, the
request path's reads, keep what they decoded (memory grows with the connections seen, not with the
map); iterating, ``get`` and ``in`` decode without keeping, for the readers that walk the whole map
in a worker thread (``GET /routes``, a reload's diff).

Lookups are linear in the key's length: one CRC-32 over it, then probes of a table at most half
full (open addressing), each comparing one stored key.
"""

from __future__ import annotations

import marshal
from array import array
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from dataclasses import fields, replace
from types import MappingProxyType
from zlib import crc32

from proxy.routing.routemap import ID_KINDS, Connection, RouteMap

_OFFSET = "I"  # positions in a buffer: unsigned 32 bits (a buffer of 4 GiB is no route map)
_SLOT = "i"  # a hash slot: the key's number, or -1 for empty
_EMPTY = -1
_FIELDS = fields(Connection)  # a record is these, in this order: Connection(*record)


def _array(typecode: str, raw: bytes) -> array[int]:
    """An ``array`` of ``typecode`` read from a buffer :meth:`array.tobytes` wrote."""
    out = array(typecode)
    out.frombytes(raw)
    return out


def _encode(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")  # any str a parser produced, lone surrogates included


class Keys:
    """Strings in one UTF-8 buffer, in the order given, found by a hash table over their numbers."""

    __slots__ = ("_at", "_blob", "_mask", "_slots")

    def __init__(self, blob: bytes, at: array[int], slots: array[int]) -> None:
        # At most half full (so a probe always meets an empty slot) and naming only keys there are.
        if len(at) < 1 or len(slots) & (len(slots) - 1) or len(slots) < 2 * (len(at) - 1) or at[-1] != len(blob):
            raise ValueError("inconsistent packed keys")
        if max(slots, default=_EMPTY) >= len(at) - 1:
            raise ValueError("inconsistent packed keys")
        self._blob = blob
        self._at = at
        self._slots = slots
        self._mask = len(slots) - 1

    @classmethod
    def build(cls, keys: Iterable[str]) -> Keys:
        """Unique ``keys`` (a repeat is refused: the caller's mapping already made them unique)."""
        raw = [_encode(key) for key in keys]
        at = array(_OFFSET, [0])
        for key in raw:
            at.append(at[-1] + len(key))
        size = 2
        while size < 2 * len(raw):
            size *= 2
        slots = array(_SLOT, [_EMPTY]) * size
        mask = size - 1
        for number, key in enumerate(raw):
            h = crc32(key) & mask
            while slots[h] != _EMPTY:
                if raw[slots[h]] == key:
                    raise ValueError(f"repeated key {key!r}")
                h = (h + 1) & mask
            slots[h] = number
        return cls(b"".join(raw), at, slots)

    def find(self, key: str) -> int:
        """The number of ``key``, or -1."""
        raw = _encode(key)
        blob, at, slots, mask = self._blob, self._at, self._slots, self._mask
        h = crc32(raw) & mask
        while True:
            number = slots[h]
            if number == _EMPTY:
                return -1
            if blob[at[number] : at[number + 1]] == raw:
                return number
            h = (h + 1) & mask

    def key(self, number: int) -> str:
        return self._blob[self._at[number] : self._at[number + 1]].decode("utf-8", "surrogatepass")

    def __len__(self) -> int:
        return len(self._at) - 1

    def __iter__(self) -> Iterator[str]:
        blob, at = self._blob, self._at
        for number in range(len(at) - 1):
            yield blob[at[number] : at[number + 1]].decode("utf-8", "surrogatepass")

    def buffers(self) -> list[bytes]:
        return [self._blob, self._at.tobytes(), self._slots.tobytes()]

    @classmethod
    def from_buffers(cls, blob: bytes, at: bytes, slots: bytes) -> Keys:
        return cls(blob, _array(_OFFSET, at), _array(_SLOT, slots))


class _Values(ValuesView[Connection]):
    """Each connection decoded in turn, none kept."""

    def __init__(self, conns: PackedConnections) -> None:
        super().__init__(conns)
        self._conns = conns

    def __iter__(self) -> Iterator[Connection]:
        for number in range(len(self._conns)):
            yield self._conns.record(number)


class _Items(ItemsView[str, Connection]):
    """Each (name, connection) decoded in turn, none kept."""

    def __init__(self, conns: PackedConnections) -> None:
        super().__init__(conns)
        self._conns = conns

    def __iter__(self) -> Iterator[tuple[str, Connection]]:
        for number, name in enumerate(self._conns.names):
            yield name, self._conns.record(number)


class PackedConnections(Mapping[str, Connection]):
    """Connection name -> :class:`Connection`, in the route file's order."""

    __slots__ = ("_at", "_records", "_remembered", "names")

    def __init__(self, names: Keys, records: bytes, at: array[int]) -> None:
        if len(at) != len(names) + 1 or at[-1] != len(records):
            raise ValueError("inconsistent packed connections")
        self.names = names
        self._records = records
        self._at = at
        self._remembered: dict[str, Connection] = {}

    @classmethod
    def build(cls, connections: Mapping[str, Connection]) -> PackedConnections:
        at = array(_OFFSET, [0])
        records = []
        for conn in connections.values():
            record = marshal.dumps(tuple(getattr(conn, f.name) for f in _FIELDS))
            records.append(record)
            at.append(at[-1] + len(record))
        return cls(Keys.build(connections), b"".join(records), at)

    def record(self, number: int) -> Connection:
        """The connection numbered ``number``, decoded (not kept)."""
        record = memoryview(self._records)[self._at[number] : self._at[number + 1]]
        return Connection(*marshal.loads(record))  # noqa: S302 - records :meth:`build` wrote (module docstring)

    def remember(self, name: str) -> Connection | None:
        """The request path's read: the connection called ``name``, kept once decoded."""
        conn = self._remembered.get(name)
        if conn is None:
            number = self.names.find(name)
            if number == _EMPTY:
                return None
            conn = self._remembered[name] = self.record(number)
        return conn

    def __getitem__(self, name: str) -> Connection:
        conn = self._remembered.get(name)
        if conn is not None:
            return conn
        number = self.names.find(name) if isinstance(name, str) else _EMPTY
        if number == _EMPTY:
            raise KeyError(name)
        return self.record(number)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._remembered or self.names.find(name) != _EMPTY)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def values(self) -> ValuesView[Connection]:
        return _Values(self)

    def items(self) -> ItemsView[str, Connection]:
        return _Items(self)

    def buffers(self) -> list[bytes]:
        return [*self.names.buffers(), self._records, self._at.tobytes()]

    @classmethod
    def from_buffers(cls, names: Keys, records: bytes, at: bytes) -> PackedConnections:
        return cls(names, records, _array(_OFFSET, at))


class PackedIndex(Mapping[str, str]):
    """Identifier -> the name of the one connection it identifies; ``get`` keeps what it found."""

    __slots__ = ("_found", "_keys", "_names", "_owners")

    def __init__(self, keys: Keys, owners: array[int], names: Keys) -> None:
        if len(owners) != len(keys) or (len(owners) and max(owners) >= len(names)):
            raise ValueError("inconsistent packed index")
        self._keys = keys
        self._owners = owners
        self._names = names
        self._found: dict[str, str] = {}

    @classmethod
    def build(cls, table: Mapping[str, str], names: Keys) -> PackedIndex:
        owners = array(_OFFSET, (names.find(owner) for owner in table.values()))
        return cls(Keys.build(table), owners, names)

    def get(self, value: str, default: str | None = None) -> str | None:  # type: ignore[override]
        found = self._found.get(value)
        if found is None:
            number = self._keys.find(value) if isinstance(value, str) else _EMPTY
            if number == _EMPTY:
                return default  # an unknown identifier is not kept: a request may send any
            found = self._found[value] = self._names.key(self._owners[number])
        return found

    def __getitem__(self, value: str) -> str:
        found = self.get(value)
        if found is None:
            raise KeyError(value)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def buffers(self) -> list[bytes]:
        return [*self._keys.buffers(), self._owners.tobytes()]

    @classmethod
    def from_buffers(cls, blob: bytes, at: bytes, slots: bytes, owners: bytes, names: Keys) -> PackedIndex:
        return cls(Keys.from_buffers(blob, at, slots), _array(_OFFSET, owners), names)


# Buffers per part, in the order :func:`pack` lists them: names (3), records (2), then per ID kind (4).
_NAMES, _RECORDS, _PER_KIND = 3, 2, 4
BUFFERS = _NAMES + _RECORDS + _PER_KIND * len(ID_KINDS)


def pack(connections: Mapping[str, Connection], index: Mapping[str, Mapping[str, str]]) -> list[bytes]:
    """A map's connections and indexes as :data:`BUFFERS` buffers (what :func:`unpack` reads)."""
    packed = PackedConnections.build(connections)
    out = packed.buffers()
    for kind in ID_KINDS:
        out += PackedIndex.build(index.get(kind, {}), packed.names).buffers()
    return out


def unpack(buffers: list[bytes]) -> tuple[PackedConnections, dict[str, PackedIndex]]:
    """The connections and the indexes of :func:`pack`'s buffers (ValueError if they do not fit)."""
    if len(buffers) != BUFFERS:
        raise ValueError(f"a packed map is {BUFFERS} buffers, not {len(buffers)}")
    names = Keys.from_buffers(*buffers[:_NAMES])
    connections = PackedConnections.from_buffers(names, *buffers[_NAMES : _NAMES + _RECORDS])
    index = {}
    at = _NAMES + _RECORDS
    for kind in ID_KINDS:
        blob, offsets, slots, owners = buffers[at : at + _PER_KIND]
        index[kind] = PackedIndex.from_buffers(blob, offsets, slots, owners, names)
        at += _PER_KIND
    return connections, index


def packed(route_map: RouteMap) -> RouteMap:
    """``route_map`` with its connections and indexes packed (the ambiguous identifiers stay a dict:
    a handful in a sound map, each one warned about)."""
    connections, index = unpack(pack(route_map.connections, route_map.index))
    return replace(route_map, connections=connections, index=MappingProxyType(index))
