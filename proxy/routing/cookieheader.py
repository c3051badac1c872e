"""Reading Cookie headers and writing Set-Cookie headers: where a cookie starts, its value, the
callback path's attributes. Pure, linear in the header; values are never decoded or logged.

RFC 6265 section 5.4 joins cookies with "; ", and only ";" separates them (section 4.2.1's
cookie-string): a name counts only at the header's start or after ";" and optional whitespace,
never after a space inside another cookie's value.
"""

from __future__ import annotations

from typing import Iterable

COOKIE_PATH = "/login/callback"
_COOKIE_PATH = COOKIE_PATH.encode("ascii")
_OWS_WINDOW = 16  # whitespace looked back over before a cookie name (a browser sends one space)


def cookie_starts(line: bytes, key: bytes) -> list[int]:
    """Where the cookies that ``key`` names (``b"name="``) start in one Cookie header.

    RFC 6265 section 5.4 joins cookies with "; ", and only ";" separates them (section 4.2.1's
    cookie-string): ``key`` counts only at the header's start or after ";" and optional whitespace,
    never after a space inside another cookie's value (``sib=1 name=...``). One find per occurrence
    and a bounded look back: linear in the header."""
    starts: list[int] = []
    at = line.find(key)
    while at >= 0:
        before = line[max(0, at - _OWS_WINDOW) : at].rstrip(b" \t")
        if before.endswith(b";") or (not before and at <= _OWS_WINDOW):
            starts.append(at)
        at = line.find(key, at + len(key))
    return starts


def cookie_value(line: bytes, begin: int) -> bytes:
    """The value of the cookie whose value starts at ``begin``: up to the next ";", without the
    whitespace around it (RFC 6265 section 5.2's trimming)."""
    end = line.find(b";", begin)
    return line[begin : end if end >= 0 else len(line)].strip(b" \t")


def cookie_lines(headers: Iterable[tuple[bytes, bytes]], prefix: bytes) -> list[bytes]:
    """The request's Cookie headers that mention ``prefix``."""
    # find, not `prefix in line`: `bytes in bytes` first tries the operand as an int, and raising
    # and clearing that TypeError costs more than the search (bench/NOTES.md "Fifth round").
    return [line for header, line in headers if header == b"cookie" and line.find(prefix) >= 0]


def has_cookie(lines: list[bytes], prefix: bytes) -> bool:
    """Whether a cookie whose name starts with ``prefix`` is among ``lines`` (``explain``)."""
    return any(cookie_starts(line, prefix) for line in lines)


def cookie_values(headers: Iterable[tuple[bytes, bytes]], name: str, limit: int = 4) -> list[bytes]:
    """The first ``limit`` values of cookie ``name`` in the request's Cookie headers, in order (RFC
    6265 section 5.4: a more specific path comes first). Values are never decoded or logged."""
    wanted = name.encode("ascii") + b"="
    found: list[bytes] = []
    for header, value in headers:
        if header != b"cookie":
            continue
        for at in cookie_starts(value, wanted):
            if len(found) >= limit:
                return found
            found.append(cookie_value(value, at + len(wanted)))
    return found


def set_cookie(name: str, value: str | bytes, max_age: int) -> bytes:
    """A Set-Cookie header value for the callback path. SameSite=None so the IdP's cross-site POST
    back carries it, which requires Secure (so it only round-trips over https)."""
    if isinstance(value, str):
        value = value.encode("ascii")
    return raw_set_cookie(name.encode("ascii"), value, max_age)


def raw_set_cookie(name: bytes, value: bytes, max_age: int) -> bytes:
    return b"%s=%s; Path=%s; Max-Age=%d; Secure; HttpOnly; SameSite=None" % (name, value, _COOKIE_PATH, max_age)


def delete_cookie(name: str | bytes) -> bytes:
    return raw_set_cookie(name.encode("ascii") if isinstance(name, str) else name, b"", 0)
