"""Where each field of a query or form starts: one pass, so a callback's body is read once, not once per name.

A callback is read for a handful of names (``connection``, ``SAMLResponse``, ``RelayState``,
``state``, ``id_token``, ``code``, ``wresult``, ``wctx``, ``fallback``). Finding each by a scan of
a 10 KB SAML form cost a whole-body search per name and place, eleven per callback (the
benchmark). :class:`Fields` reads the data once, recording the first value of each of its first
:data:`MAX_INDEXED` fields (a query split in one C call; a form as the span of each value, sliced
only when asked for, so a SAMLResponse is not copied); a real callback has two or three. A name
not among them is looked for in the rest with one C-speed find, so the answer is the same as a
scan of the whole data and the work stays linear (at most :data:`MAX_INDEXED` Python steps, then
finds) whatever the input.

Matching is on the raw, still percent-encoded bytes, as written: ``name=`` at the start or right
after ``&`` (IdPs, Auth0 and WorkOS never percent-encode these names). A piece without ``=`` names
nothing. Values are returned raw; decoding is the caller's.
"""

from __future__ import annotations

from typing import Any

MAX_INDEXED = 64
# Data up to this size is split in one C call (cheaper for a query); a larger one, a form, is indexed
# by spans.
_SPLIT_BELOW = 1024


class Fields:
    """The first value of each field of ``data`` (a raw query or form body). Pure; never raises."""

    __slots__ = ("_data", "_first", "_rest", "_spans")

    def __init__(self, data: bytes) -> None:
        self._data = data
        first: dict[bytes, Any] = {}
        rest = -1  # where the unindexed rest starts (at its "&"), or -1 when everything is indexed
        if len(data) <= _SPLIT_BELOW:
            pieces = data.split(b"&", MAX_INDEXED)  # C-speed; the last piece holds any unindexed rest
            if len(pieces) > MAX_INDEXED:
                rest = len(data) - len(pieces.pop()) - 1
            for piece in pieces:
                name, equals, value = piece.partition(b"=")
                if equals and name not in first:
                    first[name] = value
            self._spans = False
        else:
            # A form: where each value starts and ends, sliced when asked for. Splitting copied the
            # 10 KB SAMLResponse, which most callbacks never read (6.5 µs against 1.2 µs by timeit).
            find = data.find
            size = len(data)
            pos = 0
            for _ in range(MAX_INDEXED):
                end = find(b"&", pos)
                if end < 0:
                    end = size
                equals_at = find(b"=", pos, end)
                if equals_at >= 0:
                    name = data[pos:equals_at]
                    if name not in first:
                        first[name] = (equals_at + 1, end)
                if end >= size:
                    break
                pos = end + 1
            else:
                rest = pos - 1
            self._spans = True
        self._first = first
        self._rest = rest

    def first(self, name: bytes) -> bytes | None:
        """The raw first value of ``name``, or None when no field has that name."""
        found = self._first.get(name)
        if found is not None:
            return self._data[found[0] : found[1]] if self._spans else found
        if self._rest < 0:
            return None
        key = b"&" + name + b"="
        at = self._data.find(key, self._rest)
        if at < 0:
            return None
        begin = at + len(key)
        end = self._data.find(b"&", begin)
        return self._data[begin:] if end < 0 else self._data[begin:end]

    def has(self, name: bytes) -> bool:
        return name in self._first or (self._rest >= 0 and self._data.find(b"&" + name + b"=", self._rest) >= 0)


EMPTY = Fields(b"")
