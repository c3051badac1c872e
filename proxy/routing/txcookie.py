"""The binding cookies: MACs of the values a login's starter issued. Pure; never raises on bad input.

Two formats, for two uses:

- **One cookie per login** (format 4, the Auth0 bindings; "one cookie per login" below): a login
  Auth0 starts gets a cookie of its own, set on the response that sends the browser to the IdP
  and deleted by its callback. A browser sends these (``Path=/login/callback``) only to the
  callback, so a response starting a login never sees the others in flight and must not replace
  them. Found by name (:func:`find_login_by_name`) or through the signed list of logins in
  flight (:func:`find_listed_login`), never re-issued; a tag covers its id and every byte.
- **Records and a tag** (format 2, the callbacks this proxy sent to WorkOS): one cookie set and read
  on ``/login/callback``, re-issued with a record more or less. ``<name>=<base64url(records ||
  tag)>``; a record is 4 bytes of expiry (Unix seconds, big-endian) and two 8-byte MAC slots; the
  tag is a 16-byte HMAC of the records under the first key. At most :data:`MAX_ENTRIES` records,
  oldest dropped; a value longer than :data:`MAX_COOKIE_CHARS` or malformed holds no records.

Cookies are split on ";" only (RFC 6265 section 5.4, :func:`cookie_starts`), and every cookie this
service issues carries a tag over all of its bytes. MACs are HMAC-SHA256 of
``purpose || 0 || value``, truncated to 8 bytes (a MAC made for one purpose
never matches for another; a login with one value repeats its MAC in both slots). Every key matches
and verifies, so keys rotate without breaking a login in flight; an expired record never matches.

What each part is for. A MAC is what binds a callback to a login: nobody without the keys can make
one, so a match means this service MACed that very value. A login cookie's tag and the list's tag
say the rest (expiry, format, the ids) is as this service wrote it. The WorkOS records' tag says the
records are the ones this service issued: they are re-issued and a fallback counts as solicited (an
alert's input) only from a copy whose tag verifies (:func:`verify`).

Why 8-byte MACs: a value matching another login's MAC by chance (2^-64 per slot) could only send a
callback to Auth0, and shorter records make every per-byte step cheaper.

Cost (targets: the check and a bind at most 10 µs, bench/micro_binding.py): one HMAC per
key and value, from per-key inner and outer hash states with the purpose absorbed, prepared once
(:class:`Keys`); an Auth0 binding found by one find per key, its MAC compared with
``hmac.compare_digest``; where every record must be searched (the AuthnRequest ID, the WorkOS
records), a handful of integer operations over all MAC slots at once, not a Python step per slot,
every slot always compared.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from proxy.routing.cookieheader import (
    cookie_starts,
    cookie_value,
    cookie_values,
    delete_cookie,
    raw_set_cookie,
    set_cookie,
)

MAC_BYTES = 8  # a record's MAC slot
TAG_BYTES = 16  # the cookie's tag
MAX_ENTRIES = 8  # records per cookie of records (callbacks sent to WorkOS); the oldest is dropped beyond this
MAX_TAGS = 2  # SAML: RelayState and the AuthnRequest ID
MAX_COOKIE_CHARS = 256  # 8 records of 20 bytes and a 16-byte tag: 235 base64url characters
MAX_VALUE_CHARS = 2048  # a state/RelayState longer than this is not bound (SAML caps RelayState at 80 bytes)
RECORD = 4 + 2 * MAC_BYTES

_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _pads(key: bytes) -> tuple[Any, Any]:
    """HMAC's inner and outer hash states for ``key`` (RFC 2104), computed once per key."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\x00")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def key_id(secret: bytes) -> str:
    """A short public name of a key (HMAC of a constant under it): which key a replica signs and
    verifies with can be compared across replicas without revealing the key."""
    return hmac.new(secret, b"sso-proxy transaction key id", hashlib.sha256).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Keys:
    """The MAC keys: the first signs, all verify. Never printed (``repr`` hides them).

    HMAC-SHA256 is computed from per-key inner/outer hash states prepared once (RFC 2104): the
    one-shot ``hmac.digest`` sets the key up on every call, which costs more than the hashing of a
    short value (bench/micro_binding.py). A message always starts with a purpose; the inner states
    with each purpose already absorbed are kept too (:meth:`prefixed`), so a MAC hashes only the value.
    """

    secrets: tuple[bytes, ...] = field(repr=False)
    _pads: tuple[tuple[Any, Any], ...] = field(init=False, repr=False, compare=False)
    _prefixed: dict[bytes, tuple[tuple[Any, Any], ...]] = field(init=False, repr=False, compare=False)
    _values: dict[bytes, tuple[tuple[Any, Any], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("at least one key is needed")
        object.__setattr__(self, "_pads", tuple(_pads(key) for key in self.secrets))
        object.__setattr__(self, "_prefixed", {})
        object.__setattr__(self, "_values", {})

    def prefixed(self, prefix: bytes) -> tuple[tuple[Any, Any], ...]:
        """Each key's (inner, outer) states with ``prefix`` absorbed. Prefixes are this module's
        constants (a purpose, for a tag), so the cache holds a handful of entries."""
        states = self._prefixed.get(prefix)
        if states is None:
            states = tuple(_absorbed(inner, prefix, outer) for inner, outer in self._pads)
            self._prefixed[prefix] = states
        return states

    def for_values(self, purpose: bytes) -> tuple[tuple[Any, Any], ...]:
        """:meth:`prefixed` for a value's MAC: ``purpose || 0`` absorbed (see :func:`message`)."""
        states = self._values.get(purpose)
        if states is None:
            states = self._values[purpose] = self.prefixed(purpose + b"\x00")
        return states

    def digest(self, index: int, data: bytes, prefix: bytes = b"") -> bytes:
        """The HMAC-SHA256 of ``prefix + data`` under key ``index`` (32 bytes; callers truncate)."""
        inner, outer = self.prefixed(prefix)[index] if prefix else self._pads[index]
        return _finish(inner, outer, data)


def _absorbed(inner: Any, prefix: bytes, outer: Any) -> tuple[Any, Any]:
    state = inner.copy()
    state.update(prefix)
    return state, outer


def _finish(inner: Any, outer: Any, data: bytes) -> bytes:
    i = inner.copy()
    i.update(data)
    o = outer.copy()
    o.update(i.digest())
    return o.digest()  # type: ignore[no-any-return]


def message(purpose: bytes, value: str) -> bytes:
    return b"%s\x00%s" % (purpose, value.encode("utf-8", "surrogatepass"))


def value_macs(value: str, keys: Keys, purpose: bytes) -> list[bytes]:
    """The MAC of ``value`` under each key (a record made before a rotation holds an older key's)."""
    if not value or len(value) > MAX_VALUE_CHARS:
        return []
    data = value.encode("utf-8", "surrogatepass")
    states = keys.for_values(purpose)
    if len(states) == 1:  # no rotation under way: no loop
        return [_finish(states[0][0], states[0][1], data)[:MAC_BYTES]]
    return [_finish(inner, outer, data)[:MAC_BYTES] for inner, outer in states]


def _signing_macs(values: tuple[str, ...], keys: Keys, purpose: bytes) -> tuple[bytes, bytes]:
    """Under the first key: the first value's whole HMAC (its MAC and a login cookie's id come from
    it), and the second value's MAC (the first's, with one value). ``values`` is not empty."""
    inner, outer = keys.for_values(purpose)[0]
    digest = _finish(inner, outer, values[0].encode("utf-8", "surrogatepass"))
    if len(values) == 1:
        return digest, digest[:MAC_BYTES]
    return digest, _finish(inner, outer, values[1].encode("utf-8", "surrogatepass"))[:MAC_BYTES]


def sign(payload: bytes, keys: Keys, purpose: bytes) -> bytes:
    """The records' tag under the first key."""
    inner, outer = keys.prefixed(purpose)[0]
    return _finish(inner, outer, payload)[:TAG_BYTES]


# --- base64url without padding ------------------------------------------------------------------

_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"===", b"==", b"=")  # by length mod 4 (1 is no base64 at all; a2b_base64 refuses it)


def encoded(payload: bytes, keys: Keys, purpose: bytes) -> bytes:
    """The cookie value for records: the records and their tag under the first key."""
    raw = payload + sign(payload, keys, purpose)
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def encode(payload: bytes, keys: Keys, purpose: bytes) -> str:
    return encoded(payload, keys, purpose).decode("ascii")


def decode(value: str | bytes | None) -> tuple[bytes, bytes] | None:
    """(records, tag) of a well-formed cookie value, NOT yet verified; None for garbage. Never raises."""
    if not value or len(value) > MAX_COOKIE_CHARS:
        return None
    try:
        raw = _unb64url(value.encode("ascii") if isinstance(value, str) else value)
    except UnicodeEncodeError:
        return None
    if raw is None:  # strict and canonical: no other value decodes to the same records and tag
        return None
    size = len(raw) - TAG_BYTES
    if size <= 0 or size % RECORD or size > MAX_ENTRIES * RECORD:
        return None
    return raw[:size], raw[size:]


def verify(payload: bytes, tag: bytes, keys: Keys, purpose: bytes) -> bool:
    """Whether ``tag`` is the records' tag under one of ``keys`` (each comparison constant-time;
    which key verified is no secret)."""
    for inner, outer in keys.prefixed(purpose):
        if hmac.compare_digest(_finish(inner, outer, payload)[:TAG_BYTES], tag):
            return True
    return False


def verified_payload(value: str | bytes | None, keys: Keys, purpose: bytes) -> bytes:
    """The records of a cookie value whose tag verifies under one of ``keys``; b"" for a tampered,
    garbage or oversized value. Never raises."""
    decoded = decode(value)
    return decoded[0] if decoded is not None and verify(*decoded, keys, purpose) else b""


# --- searching the records: every MAC slot at once ---------------------------------------------
#
# The payload is read as one big-endian integer P. For a wanted MAC w, X = P xor (w in every slot);
# a slot equals w exactly when its 64 bits of X are zero. With LOW the low 63 bits of every slot
# and HIGH the top bit of every slot, (X & LOW) + LOW carries into a slot's top bit exactly when
# its low 63 bits are not all zero (no carry leaves a slot: (2^63 - 1) * 2 < 2^64), so
# (X | ((X & LOW) + LOW)) & HIGH has a slot's top bit set exactly when the slot is non-zero. The
# expiry bytes are outside every mask. A few big-integer operations over all slots, whatever matches.


class _Masks(NamedTuple):
    low: int
    high: int
    spread: int  # w * spread puts w in every slot
    bits: int  # the payload's size in bits


_LANE = MAC_BYTES * 8
_RECORD_BITS = RECORD * 8


def _masks(count: int, record_size: int = RECORD, first_slot: int = 4) -> _Masks:
    size = count * record_size
    low = high = spread = 0
    for record in range(count):
        for slot in (first_slot, first_slot + MAC_BYTES):
            shift = (size - record * record_size - slot - MAC_BYTES) * 8
            low |= ((1 << (_LANE - 1)) - 1) << shift
            high |= 1 << (shift + _LANE - 1)
            spread |= 1 << shift
    return _Masks(low, high, spread, size * 8)


_MASKS = tuple(_masks(count) for count in range(MAX_ENTRIES + 1))


def expiry(payload: bytes, record: int) -> int:
    at = record * RECORD
    return int.from_bytes(payload[at : at + 4], "big")


def matching_records(payload: bytes, wanted: bytes) -> list[int]:
    """The records (in order) with ``wanted`` in a MAC slot, whatever their expiry. Every slot is
    compared by the same integer operations, wherever (and whether) one matches."""
    low, high, spread, bits = _MASKS[len(payload) // RECORD]
    x = int.from_bytes(payload, "big") ^ (int.from_bytes(wanted, "big") * spread)
    zero = high ^ ((x | ((x & low) + low)) & high)
    found: list[int] = []
    while zero:
        top = zero.bit_length() - 1
        record = (bits - 1 - top) // _RECORD_BITS
        if not found or found[-1] != record:
            found.append(record)
        zero ^= 1 << top
    return found


def live_match(payload: bytes, macs: list[bytes], now: float) -> int | None:
    """The first unexpired record holding one of ``macs``, else None: :func:`matching_records`'
    integer operations, then only the matching records' expiries read (usually one)."""
    return _live_match(payload, macs, now, _MASKS, RECORD, 0)


def _live_match(
    payload: bytes, macs: list[bytes], now: float, table: tuple[_Masks, ...], size: int, expiry_at: int
) -> int | None:
    """:func:`live_match` for records of ``size`` bytes, 4 bytes of expiry at ``expiry_at``."""
    low, high, spread, bits = table[len(payload) // size]
    whole = int.from_bytes(payload, "big")
    for wanted in macs:
        x = whole ^ (int.from_bytes(wanted, "big") * spread)
        zero = high ^ ((x | ((x & low) + low)) & high)
        while zero:
            record = (bits - zero.bit_length()) // (size * 8)
            at = record * size + expiry_at
            if int.from_bytes(payload[at : at + 4], "big") > now:
                return record
            zero &= (1 << (bits - (record + 1) * size * 8)) - 1  # the later records' bits
    return None


def copies(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[tuple[bytes, bytes]]:
    """(records, tag) of each well-formed copy of cookie ``name`` (at most four), NOT yet verified."""
    out = []
    for value in cookie_values(headers, name):
        decoded = decode(value)
        if decoded is not None:
            out.append(decoded)
    return out


def find_copy(
    found: list[tuple[bytes, bytes]], value: str, keys: Keys, purpose: bytes, now: float
) -> tuple[bytes, bytes, int] | None:
    """The first copy (its records and tag, not yet verified) and the record in it holding the MAC
    of ``value`` in an unexpired record.

    The tag is not checked here, so a check costs one HMAC per key and value: a match is evidence
    enough to route. A record's MAC cannot be made without the key, so a match means this service
    MACed that very value when Auth0 started the login; what a forged or planted copy can add is a
    stretched expiry or a replayed record, which only sends a callback carrying a value Auth0 issued
    to Auth0, which refuses a stale state anyway. The tag matters where records are re-issued
    (:func:`verify` before signing): a planted copy never displaces the browser's own bindings.
    """
    macs = value_macs(value, keys, purpose)
    for payload, tag in found:
        record = live_match(payload, macs, now)
        if record is not None:
            return payload, tag, record
    return None


# --- changing the records ------------------------------------------------------------------------


# Every record's expiry in one C call: ">I" and the two MAC slots skipped, per record.
_EXPIRIES = tuple(struct.Struct(">" + f"I{2 * MAC_BYTES}x" * count) for count in range(MAX_ENTRIES + 1))


def expiries(payload: bytes) -> tuple[int, ...]:
    return _EXPIRIES[len(payload) // RECORD].unpack(payload)


def live(payload: bytes, now: float, skip: int = -1) -> bytes:
    """The unexpired records of ``payload``, but the one at ``skip``."""
    keep = [record for record, expires in enumerate(expiries(payload)) if expires > now and record != skip]
    if len(keep) * RECORD == len(payload):
        return payload
    return b"".join(payload[record * RECORD : (record + 1) * RECORD] for record in keep)


def add_record(payload: bytes, values: tuple[str, ...], keys: Keys, purpose: bytes, expires: int, now: float) -> bytes:
    """``payload`` with one record for ``values`` (the first MAX_TAGS, MACed with the first key)
    appended; expired records, and any already holding one of the values (a retried redirect),
    are dropped; the oldest go beyond MAX_ENTRIES."""
    if not values:
        return live(payload, now)
    digest, second = _signing_macs(values, keys, purpose)
    first = digest[:MAC_BYTES]
    added = expires.to_bytes(4, "big") + first + second
    tags = (first,) if second == first else (first, second)
    if not payload:
        return added  # the common case: no other login in flight
    kept = payload
    for tag in tags:
        for record in reversed(matching_records(kept, tag)):
            kept = kept[: record * RECORD] + kept[(record + 1) * RECORD :]
    return (live(kept, now) + added)[-MAX_ENTRIES * RECORD :]


# --- one cookie per login (format 4: the Auth0 bindings) -----------------------------------------
#
# A browser sends a cookie with Path=/login/callback only to the callback, never to /authorize or
# /u/login where a login starts, so a response starting a login cannot see the logins already in
# flight: one cookie holding them all would be replaced by each new login (another tab's binding
# lost). So each login gets its own cookie, ``<prefix><id>``, and nothing is ever re-issued: a
# login adds a cookie, its callback deletes that one. ``id`` is 11 base64url characters of the
# first value's HMAC (see :func:`_login_id`; a retried redirect of the same login replaces its own
# cookie). The value is base64url of a format byte (4), 4 bytes of expiry, two MAC slots and a
# 12-byte tag: the HMAC of the name's id and every byte before it (no byte of the
# name or value can change and still verify). 33 bytes, 44 characters: whole base64 quanta, so no
# two values decode alike.
#
# A callback's state or RelayState finds its cookie by name (one find per key). An InResponseTo is
# looked for in the cookies the list of logins in flight names (below), never by scanning the
# header for every name with the prefix: a sibling domain can plant any number of those, but not
# the ``__Host-`` list.
#
# Format 3 (no tag, 28 characters; issued before this format) is still read by name for a login's
# lifetime after a replica starts (``legacy_until``): a rolling deploy's logins in flight keep their
# binding. Its MAC slot still proves this service MACed the value; what it does not cover (the
# format byte, the expiry, the second slot) can only send a callback carrying a value Auth0 issued
# to Auth0, for at most that window.

LOGIN_PREFIX_CHARS = 13
LOGIN_FORMAT = b"\x04"
LEGACY_FORMAT = b"\x03"
LOGIN_TAG_BYTES = 12
LOGIN_RECORD = 1 + 4 + 2 * MAC_BYTES + LOGIN_TAG_BYTES
_SIGNED = LOGIN_RECORD - LOGIN_TAG_BYTES  # the bytes the tag covers (after the id)
_LEGACY_RECORD = 1 + 4 + 2 * MAC_BYTES
_NAME_CHARS = LOGIN_PREFIX_CHARS + 11
_VALUE_CHARS = LOGIN_RECORD * 4 // 3
_LEGACY_CHARS = _LEGACY_RECORD * 4 // 3


def _b64url(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _unb64url(data: bytes) -> bytes | None:
    """The bytes of canonical base64url without padding, else None: strict, and re-encoded to check
    it is the one value that decodes to those bytes (``a2b_base64`` ignores the unused low bits of
    the last character even when strict, and the translation also lets "+" and "/" through)."""
    try:
        raw = binascii.a2b_base64(data.translate(_FROM_URLSAFE) + _PADDING[len(data) % 4], strict_mode=True)
    except binascii.Error:
        return None
    return raw if _b64url(raw) == data else None


def _tag_states(keys: Keys, purpose: bytes) -> tuple[tuple[Any, Any], ...]:
    """Each key's states for a cookie's tag: ``purpose || 1`` absorbed (a value's MAC has ``|| 0``)."""
    return keys.prefixed(purpose + b"\x01")


def login_cookie(
    prefix: bytes, values: tuple[str, ...], keys: Keys, purpose: bytes, expires: int, max_age: int
) -> tuple[bytes, bytes] | None:
    """(id, Set-Cookie) for one login: the MACs of its first two ``values`` and the tag (first
    key), None without values. ``prefix`` is :data:`LOGIN_PREFIX_CHARS` characters."""
    if not values:
        return None
    digest, second = _signing_macs(values, keys, purpose)
    login_id = _login_id(digest)
    signed = LOGIN_FORMAT + expires.to_bytes(4, "big") + digest[:MAC_BYTES] + second
    inner, outer = _tag_states(keys, purpose)[0]
    record = signed + _finish(inner, outer, login_id + signed)[:LOGIN_TAG_BYTES]
    return login_id, raw_set_cookie(prefix + login_id, _b64url(record), max_age)


def _login_record(value: bytes, now: float, form: bytes = LOGIN_FORMAT) -> bytes | None:
    """The record of a login cookie's value if it is canonical base64url of format ``form`` and
    has not expired, else None. Its tag is not checked here (:func:`_tagged`)."""
    record = _unb64url(value)
    if record is None or record[:1] != form or int.from_bytes(record[1:5], "big") <= now:
        return None
    return record


def _tagged(record: bytes, login_id: bytes, index: int, keys: Keys, purpose: bytes) -> bool:
    """Whether a format 4 record's tag is the HMAC, under key ``index``, of its cookie's id and
    every byte before the tag."""
    inner, outer = _tag_states(keys, purpose)[index]
    tag = _finish(inner, outer, login_id + record[:_SIGNED])[:LOGIN_TAG_BYTES]
    return hmac.compare_digest(tag, record[_SIGNED:])


# --- the list of logins in flight (Path=/) -------------------------------------------------------
#
# Login cookies ride only on /login/callback, so a login starting cannot see them, and without a
# bound a browser could be made to hold any number (a page loading /authorize many times): a Cookie
# header too large for the callback, or the domain's other cookies evicted by the browser. So a
# small cookie on every path lists the ids of the newest MAX_IN_FLIGHT logins; a login starting
# reads it, adds its own id and deletes the login cookies that fall off the list (oldest dropped).
# The callback reads it too, to find the login cookie an InResponseTo names. Its value is the ids
# joined by "." and a 12-byte tag of them (16 base64url characters after a last "."): a list this
# service did not write (planted, smuggled in another cookie's value, or altered) is no list.

MAX_IN_FLIGHT = 8
_ID_CHARS = 11
_LIST_TAG_CHARS = LOGIN_TAG_BYTES * 4 // 3
_LIST_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."  # base64url and "."
_LIST_CHARS = (_ID_CHARS + 1) * MAX_IN_FLIGHT + _LIST_TAG_CHARS


def _list_tag(listed: bytes, keys: Keys, purpose: bytes, index: int) -> bytes:
    inner, outer = keys.prefixed(purpose + b"\x02")[index]
    return _b64url(_finish(inner, outer, listed)[:LOGIN_TAG_BYTES])


def listed_logins(headers: Iterable[tuple[bytes, bytes]], name: str, keys: Keys, purpose: bytes) -> bytes:
    """The ids (joined by ".") of the first copy of the list cookie ``name`` whose tag verifies
    under one of ``keys``: b"" for none, a value too long, or one with a character no id has.
    Never raises."""
    for value in cookie_values(headers, name):
        if len(value) > _LIST_CHARS or value.translate(None, _LIST_ALPHABET):
            continue
        listed, dot, tag = value.rpartition(b".")
        if not dot or not listed or len(tag) != _LIST_TAG_CHARS:
            continue
        for index in range(len(keys.secrets)):
            if hmac.compare_digest(_list_tag(listed, keys, purpose, index), tag):
                return listed
    return b""


def with_login(listed: bytes, login_id: bytes) -> tuple[bytes, list[bytes]]:
    """The list with ``login_id`` added as the newest (moved there if listed: a retried redirect of
    the same login), and the ids that fall off it (the oldest beyond :data:`MAX_IN_FLIGHT`)."""
    if not listed:
        return login_id, []
    if listed.count(b".") < MAX_IN_FLIGHT - 1 and listed.find(login_id) < 0:
        return listed + b"." + login_id, []  # the usual case: room left, not listed yet
    ids = listed.split(b".")[-MAX_IN_FLIGHT:]
    if login_id in ids:
        ids.remove(login_id)
    ids.append(login_id)
    return b".".join(ids[-MAX_IN_FLIGHT:]), [gone for gone in ids[:-MAX_IN_FLIGHT] if gone]


def list_cookie(name: bytes, listed: bytes, max_age: int, keys: Keys, purpose: bytes) -> bytes:
    """Set-Cookie for the list (``name`` is ``b"name="``, ``listed`` from :func:`with_login`), with
    its tag under the first key: every path (it must reach /authorize), SameSite=None (a login
    started from another site's page must see it too, or it would not bound that page's logins)."""
    tag = _list_tag(listed, keys, purpose, 0)
    return b"%s%s.%s; Path=/; Max-Age=%d; Secure; HttpOnly; SameSite=None" % (name, listed, tag, max_age)


def _login_id(digest: bytes) -> bytes:
    """A login cookie's id: 8 bytes of the first value's HMAC after the 8 its MAC slot holds, so
    finding a cookie by name tells nothing of the MAC it must then hold."""
    return _b64url(digest[MAC_BYTES : 2 * MAC_BYTES])


def find_login_by_name(
    lines: list[bytes],
    prefix: bytes,
    value: str,
    keys: Keys,
    purpose: bytes,
    now: float,
    legacy_until: float = 0.0,
) -> bytes | None:
    """The name of the unexpired login cookie made for ``value`` (a login's first value), found by
    the name the value's HMAC gives it (one find per key, however many logins are in flight), and
    kept only if its tag verifies and its first slot holds the value's MAC. Format 3 cookies are
    read too while ``now`` is before ``legacy_until``. None otherwise."""
    if not value or len(value) > MAX_VALUE_CHARS:
        return None
    data = value.encode("utf-8", "surrogatepass")
    for index, (inner, outer) in enumerate(keys.for_values(purpose)):
        digest = _finish(inner, outer, data)
        login_id = _login_id(digest)
        key = prefix + login_id + b"="
        for line in lines:
            for at in cookie_starts(line, key):  # each a copy of this very name: linear all the same
                raw = cookie_value(line, at + len(key))
                legacy = len(raw) == _LEGACY_CHARS and now < legacy_until
                if len(raw) != _VALUE_CHARS and not legacy:
                    continue
                record = _login_record(raw, now, LEGACY_FORMAT if legacy else LOGIN_FORMAT)
                if (
                    record is not None
                    and hmac.compare_digest(record[5 : 5 + MAC_BYTES], digest[:MAC_BYTES])
                    and (legacy or _tagged(record, login_id, index, keys, purpose))
                ):
                    return key[:-1]
    return None


def find_listed_login(
    lines: list[bytes], prefix: bytes, listed: bytes, value: str, keys: Keys, purpose: bytes, now: float
) -> bytes | None:
    """The name of the login cookie, among those ``listed`` names (ids joined by "."), whose second
    slot holds the MAC of ``value`` (a SAML AuthnRequest's ID) and whose tag verifies; None
    otherwise. At most :data:`MAX_IN_FLIGHT` names, one find each: a header full of other
    ``prefix`` names costs nothing more."""
    macs = value_macs(value, keys, purpose)
    if not macs or not listed:
        return None
    for login_id in listed.split(b".")[-MAX_IN_FLIGHT:]:
        key = prefix + login_id + b"="
        for line in lines:
            for at in cookie_starts(line, key):
                raw = cookie_value(line, at + len(key))
                record = _login_record(raw, now) if len(raw) == _VALUE_CHARS else None
                if record is None:
                    continue
                for index, wanted in enumerate(macs):
                    if hmac.compare_digest(record[5 + MAC_BYTES : _SIGNED], wanted) and _tagged(
                        record, login_id, index, keys, purpose
                    ):
                        return key[:-1]
    return None


# --- headers ------------------------------------------------------------------------------------


def cookie_header(name: str, payload: bytes, keys: Keys, purpose: bytes, now: float) -> bytes:
    """Set-Cookie for ``payload``: the cookie lives as long as its newest record; none left deletes it."""
    if not payload:
        return delete_cookie(name)
    newest = max(expiries(payload))
    return set_cookie(name, encoded(payload, keys, purpose), max(1, newest - int(now)))


def read_payload(headers: Iterable[tuple[bytes, bytes]], name: str, keys: Keys, purpose: bytes) -> bytes:
    """The verified records of the first valid copy of cookie ``name`` (a planted copy is ignored)."""
    for value in cookie_values(headers, name):
        payload = verified_payload(value, keys, purpose)
        if payload:
            return payload
    return b""
