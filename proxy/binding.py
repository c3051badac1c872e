"""Binding logins to whoever started them: a signed cookie of MACs, and what to bind.

The callback path decides by connection, but Auth0 (and WorkOS) refuse a ``state`` they did not
issue, so a login must come back to whoever started it (issue 10). Every login Auth0 starts sends
the browser to the identity provider through a response this proxy passes on; when it does, a
cookie is added holding an HMAC-SHA256 of the login's ``state`` / ``RelayState`` (and a SAML
AuthnRequest's ``ID``, which the IdP echoes as ``InResponseTo``). On ``/login/callback`` a value
whose MAC is in the cookie was started by Auth0. Nothing is stored server-side: any replica with
the same keys decides. The same cookie format marks the callbacks this proxy itself sent to WorkOS,
so a ``fallback=auth0`` can be told apart as solicited.

Everything here is pure (the keys and the clock are passed in) and never raises on bad input:

- cookie: ``<name>=<base64url(records || tag)>``; a record is 4 bytes of expiry (Unix seconds) and
  two 16-byte MAC slots (a login with one value repeats its MAC); ``tag`` is a 16-byte HMAC of the
  records under the first key (all keys verify, so keys rotate without breaking a login in flight).
  At most :data:`MAX_ENTRIES` logins, oldest dropped; a cookie longer than :data:`MAX_COOKIE_CHARS`,
  with a bad tag, or malformed, holds no bindings; an expired record never matches. MACs are
  compared in constant time (``hmac.compare_digest``).
- what to bind (OIDC/OAuth2 per RFC 6749 section 4.1.1; SAML bindings sections 3.4 and 3.5): a 3xx
  to another host whose query has ``state`` and a ``redirect_uri`` on this service's
  ``/login/callback``; a 3xx with ``SAMLRequest`` (+ ``RelayState``), the request inflated with a
  cap to read its ``ID``; a 200 ``text/html`` page whose form posts ``SAMLRequest`` (+
  ``RelayState``), read only when small enough (:data:`MAX_PAGE_BYTES`) and in an encoding the
  standard library can read (identity, gzip, deflate).

Every parser is linear: tag scans use patterns that cannot backtrack across the input, inflation
and decompression are capped, XML is read by expat with DTDs refused.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import zlib
from dataclasses import dataclass, field
from html import unescape
from typing import Any, Callable, Iterable, NamedTuple

from proxy.callback import (
    Callback,
    callback_digest,
    in_response_to,
    query_value,
    root_element,
    saml_document,
    transaction_values,
)

# Cookie names. Not __Host- prefixed: that prefix requires Path=/, and these ride only on the callback.
AUTH0_COOKIE = "sso_proxy_tx"  # logins Auth0 started
WORKOS_COOKIE = "sso_proxy_wx"  # callbacks this proxy sent to WorkOS (a fallback=auth0 is then solicited)
COOKIE_PATH = "/login/callback"

# MAC domain separation: a MAC made for one purpose never verifies for another.
AUTH0_PURPOSE = b"sso-proxy auth0 transaction v1"
WORKOS_PURPOSE = b"sso-proxy workos redirect v1"

MAC_BYTES = 16
MAX_ENTRIES = 8  # logins in flight per browser (tabs); the oldest is dropped beyond this
MAX_TAGS = 2  # SAML: RelayState and the AuthnRequest ID
MAX_COOKIE_CHARS = 512  # 8 records of 36 bytes and a 16-byte tag: 406 base64url characters
MAX_LOCATION_CHARS = 16 << 10
MAX_INFLATED_REQUEST = 64 << 10  # an AuthnRequest is a few KB
MAX_PAGE_BYTES = 128 << 10  # an auto-post page is a few KB; larger pages are never buffered
MAX_VALUE_CHARS = 2048  # a state/RelayState longer than this is not bound (SAML caps RelayState at 80 bytes)
WORKOS_TTL = 120  # a WorkOS round trip takes seconds

OIDC_STATE = "oidc_state"
SAML_RELAYSTATE = "saml_relaystate"
_CALLBACK_PATHS = ("/login/callback", "/login/callback/")
_PAGE_ENCODINGS = frozenset((b"", b"identity", b"gzip", b"x-gzip", b"deflate"))


class Entry(NamedTuple):
    """One login in flight: when it expires and the MACs of its values."""

    expires: int
    tags: tuple[bytes, ...]


class Login(NamedTuple):
    """A login an upstream response starts: its kind and the values the callback will carry."""

    kind: str  # oidc_state | saml_relaystate
    values: tuple[str, ...]


def _pads(key: bytes) -> tuple[Any, Any]:
    """HMAC's inner and outer hash states for ``key`` (RFC 2104), computed once per key."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\x00")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@dataclass(frozen=True, slots=True)
class Keys:
    """The MAC keys: the first signs, all verify. Never printed (``repr`` hides them).

    HMAC-SHA256 is computed from per-key inner/outer hash states prepared once (RFC 2104): the
    one-shot ``hmac.digest`` sets the key up on every call, which costs more than the hashing of a
    short value (bench/micro_binding.py).
    """

    secrets: tuple[bytes, ...] = field(repr=False)
    _pads: tuple[tuple[Any, Any], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("at least one key is needed")
        object.__setattr__(self, "_pads", tuple(_pads(key) for key in self.secrets))

    def digest(self, index: int, data: bytes) -> bytes:
        """The truncated HMAC-SHA256 of ``data`` under key ``index``."""
        inner, outer = self._pads[index]
        i = inner.copy()
        i.update(data)
        o = outer.copy()
        o.update(i.digest())
        return bytes(o.digest()[:MAC_BYTES])


def _message(purpose: bytes, value: str) -> bytes:
    return purpose + b"\x00" + value.encode("utf-8", "surrogatepass")


def mac(key: bytes, purpose: bytes, value: str) -> bytes:
    """The truncated HMAC-SHA256 of one value for one purpose (the reference the fast path is tested against)."""
    return hmac.digest(key, _message(purpose, value), hashlib.sha256)[:MAC_BYTES]


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii").replace("+", "-").replace("/", "_").rstrip("=")


def _b64decode(text: str) -> bytes:
    return binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), strict_mode=True)


# A record: 4 bytes of expiry (Unix seconds, big-endian) and two MAC slots; an entry with one value
# repeats its MAC. Fixed-size records let the hot check compare tags by offset, building no objects.
RECORD = 4 + 2 * MAC_BYTES


def _pack(entries: Iterable[Entry]) -> bytes:
    return b"".join(
        e.expires.to_bytes(4, "big") + e.tags[0] + (e.tags[1] if len(e.tags) > 1 else e.tags[0]) for e in entries
    )


def make_record(values: tuple[str, ...], keys: Keys, purpose: bytes, expires: int) -> bytes:
    """One record for a login's values (at most two), MACed with the first key."""
    first = keys.digest(0, _message(purpose, values[0]))
    second = keys.digest(0, _message(purpose, values[1])) if len(values) > 1 else first
    return expires.to_bytes(4, "big") + first + second


def sign_payload(payload: bytes, keys: Keys, purpose: bytes) -> str:
    """The cookie value for records: the records and their tag under the first key."""
    return _b64encode(payload + keys.digest(0, purpose + payload))


def encode_cookie(entries: tuple[Entry, ...], keys: Keys, purpose: bytes) -> str:
    """The cookie value for ``entries`` (at most the last MAX_ENTRIES), signed with the first key."""
    return sign_payload(_pack(entries[-MAX_ENTRIES:]), keys, purpose)


def verified_payload(value: str | bytes | None, keys: Keys, purpose: bytes) -> bytes:
    """The records of a cookie value whose tag verifies under one of ``keys``; b"" for a tampered,
    garbage or oversized value. Never raises."""
    if not value or len(value) > MAX_COOKIE_CHARS:
        return b""
    try:
        text = value.decode("ascii") if isinstance(value, bytes) else value
        raw = _b64decode(text)
    except (binascii.Error, ValueError):
        return b""
    payload, tag = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not payload or len(payload) % RECORD or len(payload) > MAX_ENTRIES * RECORD:
        return b""
    verified = False
    for index in range(len(keys.secrets)):
        verified |= hmac.compare_digest(keys.digest(index, purpose + payload), tag)
    return payload if verified else b""


def entries_of(payload: bytes, now: float) -> tuple[Entry, ...]:
    """The unexpired entries of verified records."""
    out = []
    for at in range(0, len(payload), RECORD):
        expires = int.from_bytes(payload[at : at + 4], "big")
        if expires > now:
            first, second = payload[at + 4 : at + 4 + MAC_BYTES], payload[at + 4 + MAC_BYTES : at + RECORD]
            out.append(Entry(expires, (first,) if first == second else (first, second)))
    return tuple(out)


def decode_cookie(value: str | bytes | None, keys: Keys, purpose: bytes, now: float) -> tuple[Entry, ...]:
    """The unexpired entries of a cookie value; a tampered, garbage or oversized value has none."""
    return entries_of(verified_payload(value, keys, purpose), now)


def find_record(payload: bytes, values: Iterable[str], keys: Keys, purpose: bytes, now: float) -> int | None:
    """The index of the unexpired record holding the MAC of one of ``values`` (under any key), else None.

    Each MAC is compared in constant time (``hmac.compare_digest``). The scan stops at the first
    match: which record matched is no secret (the browser holds the cookie); the MAC bytes are.
    """
    end = len(payload) // RECORD * RECORD
    for value in values:
        if not value or len(value) > MAX_VALUE_CHARS:
            continue
        message = _message(purpose, value)
        for index in range(len(keys.secrets)):
            wanted = keys.digest(index, message)
            for at in range(4, end, RECORD):
                if (
                    hmac.compare_digest(payload[at : at + MAC_BYTES], wanted)
                    or hmac.compare_digest(payload[at + MAC_BYTES : at + 2 * MAC_BYTES], wanted)
                ) and int.from_bytes(payload[at - 4 : at], "big") > now:
                    return at // RECORD
    return None


def add_entry(
    entries: tuple[Entry, ...], values: tuple[str, ...], keys: Keys, purpose: bytes, expires: int
) -> tuple[Entry, ...]:
    """``entries`` plus one for ``values`` (MACed with the first key); the oldest dropped beyond the bound.

    An entry already holding one of the values is replaced, so a retried redirect does not fill the cookie.
    """
    tags = tuple(keys.digest(0, _message(purpose, v)) for v in values[:MAX_TAGS])
    kept = tuple(e for e in entries if not any(hmac.compare_digest(t, n) for t in e.tags for n in tags))
    return (*kept, Entry(expires, tags))[-MAX_ENTRIES:]


def find_entry(entries: tuple[Entry, ...], values: Iterable[str], keys: Keys, purpose: bytes) -> int | None:
    """The index of the entry holding the MAC of one of ``values`` (under any key), else None."""
    return find_record(_pack(entries), values, keys, purpose, 0)


def remove_entry(entries: tuple[Entry, ...], index: int) -> tuple[Entry, ...]:
    return entries[:index] + entries[index + 1 :]


def without_record(payload: bytes, record: int, now: float) -> tuple[Entry, ...]:
    """The unexpired entries of ``payload`` but the one at ``record`` (used once, it is removed)."""
    return entries_of(payload[: record * RECORD] + payload[(record + 1) * RECORD :], now)


def set_cookie(name: str, value: str, max_age: int) -> bytes:
    """A Set-Cookie header value for the callback path. SameSite=None so the IdP's cross-site POST
    back carries it, which requires Secure (so it only round-trips over https)."""
    return f"{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; Secure; HttpOnly; SameSite=None".encode("ascii")


def delete_cookie(name: str) -> bytes:
    return f"{name}=; Path={COOKIE_PATH}; Max-Age=0; Secure; HttpOnly; SameSite=None".encode("ascii")


def update_cookie(name: str, entries: tuple[Entry, ...], keys: Keys, purpose: bytes, now: float) -> bytes:
    """Set-Cookie for ``entries``: the cookie lives as long as its newest entry; none left deletes it."""
    if not entries:
        return delete_cookie(name)
    max_age = max(1, max(e.expires for e in entries) - int(now))
    return set_cookie(name, encode_cookie(entries, keys, purpose), max_age)


def cookie_values(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[bytes]:
    """Every value of cookie ``name`` in the request's Cookie headers, in order (RFC 6265 section 5.4:
    a more specific path comes first). One pass; values are never decoded or logged."""
    wanted = name.encode("ascii") + b"="
    found: list[bytes] = []
    for header, value in headers:
        if header != b"cookie" or wanted not in value:
            continue
        for piece in value.split(b";"):
            piece = piece.strip()
            if piece.startswith(wanted):
                found.append(piece[len(wanted) :])
    return found


def read_payload(headers: Iterable[tuple[bytes, bytes]], name: str, keys: Keys, purpose: bytes) -> bytes:
    """The verified records of the first valid copy of cookie ``name`` (a planted copy is ignored)."""
    for value in cookie_values(headers, name)[:4]:
        payload = verified_payload(value, keys, purpose)
        if payload:
            return payload
    return b""


def read_entries(
    headers: Iterable[tuple[bytes, bytes]], name: str, keys: Keys, purpose: bytes, now: float
) -> tuple[Entry, ...]:
    """The unexpired entries of the first valid copy of cookie ``name``."""
    return entries_of(read_payload(headers, name, keys, purpose), now)


# --- what an upstream response starts -------------------------------------------------------------


def _split(url: str) -> tuple[str, str] | None:
    """(host[:port] lowercased, path) of an absolute http(s) URL, else None. One pass of finds: this
    runs on every redirect Auth0 answers, and ``urlsplit`` costs several times more."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    end = len(rest)
    for mark in "/?#":
        at = rest.find(mark, 0, end)
        if at >= 0:
            end = at
    netloc = rest[:end].lower()
    if not netloc or "@" in netloc or "\\" in netloc:
        return None  # no userinfo: never one of this service's hosts
    path_end = len(rest)
    for mark in "?#":
        at = rest.find(mark, end)
        if at >= 0 and at < path_end:
            path_end = at
    return netloc, rest[end:path_end]


def _netloc(url: str) -> str | None:
    split = _split(url)
    return split[0] if split is not None else None


def is_own_callback(url: str, own_hosts: frozenset[str]) -> bool:
    """``url`` is this service's ``/login/callback`` (on one of ``own_hosts``, host[:port] lowercased)."""
    split = _split(url)
    return split is not None and split[0] in own_hosts and split[1] in _CALLBACK_PATHS


def authn_request_facts(xml: bytes) -> tuple[str | None, str | None]:
    """(ID, AssertionConsumerServiceURL) of an AuthnRequest's root element; DTDs refused, stops at the root."""
    root = root_element(xml)
    if root is None or root[0] != "AuthnRequest":
        return None, None
    return root[1].get("ID"), root[1].get("AssertionConsumerServiceURL")


def read_saml_request(encoded: str, deflated: bool) -> tuple[str | None, str | None]:
    """(ID, ACS URL) of a base64 SAMLRequest (Redirect binding: DEFLATEd first), inflated with a cap."""
    try:
        data = binascii.a2b_base64(encoded.replace(" ", "+"))  # a '+' read from a query as a space
        if deflated:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(data, MAX_INFLATED_REQUEST)
            if inflater.unconsumed_tail:
                return None, None
    except (binascii.Error, ValueError, zlib.error):
        return None, None
    return authn_request_facts(data)


def _saml_login(saml_request: str, relay_state: str | None, deflated: bool, own_hosts: frozenset[str]) -> Login | None:
    request_id, acs = read_saml_request(saml_request, deflated)
    if acs and _netloc(acs) is not None and not is_own_callback(acs, own_hosts):
        return None  # the IdP will post to someone else
    values = tuple(v for v in (relay_state, request_id) if v and len(v) <= MAX_VALUE_CHARS)
    return Login(SAML_RELAYSTATE, values) if values else None


def inspect_location(location: str, own_hosts: frozenset[str]) -> Login | None:
    """The login a redirect to ``location`` starts, if it sends the browser to an IdP that comes back
    to this service's ``/login/callback``; else None."""
    if len(location) > MAX_LOCATION_CHARS or ("state=" not in location and "SAMLRequest=" not in location):
        return None  # the common case (Auth0's own pages, the app's callback with code+state): one scan
    netloc = _netloc(location)
    if netloc is None or netloc in own_hosts:
        return None  # relative, or to this service itself (e.g. /u/login): nothing to bind yet
    query = location.partition("?")[2].partition("#")[0].encode("utf-8", "surrogateescape")
    saml_request = query_value(query, "SAMLRequest")
    if saml_request is not None:
        return _saml_login(saml_request, query_value(query, "RelayState"), True, own_hosts)
    state = query_value(query, "state")
    redirect_uri = query_value(query, "redirect_uri")
    if state and len(state) <= MAX_VALUE_CHARS and redirect_uri and is_own_callback(redirect_uri, own_hosts):
        return Login(OIDC_STATE, (state,))
    return None


# A tag scan that cannot backtrack across the page: each match attempt stops at the next < or >.
_FORM = re.compile(rb"<form\b([^<>]*)>", re.IGNORECASE)
_INPUT = re.compile(rb"<input\b([^<>]*)>", re.IGNORECASE)
_ATTR = re.compile(rb"""([a-zA-Z_:][-\w:.]*)\s*=\s*(?:"([^"<>]*)"|'([^'<>]*)'|([^\s"'<>=`]+))""")


def _attrs(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for match in _ATTR.finditer(raw):
        name = match.group(1).decode("latin-1").lower()
        value = match.group(2) if match.group(2) is not None else match.group(3) or match.group(4) or b""
        out.setdefault(name, unescape(value.decode("utf-8", "replace")))
    return out


def inspect_page(page: bytes, own_hosts: frozenset[str]) -> Login | None:
    """The login an auto-post page starts (SAML HTTP-POST binding): its form's SAMLRequest and RelayState."""
    if b"SAMLRequest" not in page or len(page) > MAX_PAGE_BYTES:
        return None
    fields: dict[str, str] = {}
    for match in _INPUT.finditer(page):
        attrs = _attrs(match.group(1))
        name = attrs.get("name")
        if name in ("SAMLRequest", "RelayState") and name not in fields:
            fields[name] = attrs.get("value", "")
    if "SAMLRequest" not in fields:
        return None
    form = _FORM.search(page)
    action = _attrs(form.group(1)).get("action", "") if form else ""
    netloc = _netloc(action)
    if netloc is None or netloc in own_hosts:
        return None
    return _saml_login(fields["SAMLRequest"], fields.get("RelayState"), False, own_hosts)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def may_be_post_page(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a response can be an auto-post page worth buffering: 200, text/html, small, readable."""
    if status != 200:
        return False
    content_type = _header(headers, b"content-type")
    if content_type is None or not content_type[:9].lower() == b"text/html":
        return False
    encoding = (_header(headers, b"content-encoding") or b"").strip().lower()
    if encoding not in _PAGE_ENCODINGS:
        return False
    length = _header(headers, b"content-length")
    return length is None or (length.isdigit() and int(length) <= MAX_PAGE_BYTES)


def decode_page(body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The page text for inspection (the response itself is passed on unchanged), capped; None if unreadable."""
    encoding = (_header(headers, b"content-encoding") or b"").strip().lower()
    if encoding in (b"", b"identity"):
        return body
    try:
        wbits = 16 + zlib.MAX_WBITS if encoding in (b"gzip", b"x-gzip") else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits)
        data = inflater.decompress(body, MAX_PAGE_BYTES)
        if inflater.unconsumed_tail:
            return None
        return data
    except zlib.error:
        return None


def inspect_response(status: int, headers: list[tuple[bytes, bytes]], own_hosts: frozenset[str]) -> Login | None:
    """The login a 3xx response starts (from its Location), else None."""
    if not 300 <= status < 400:
        return None
    location = _header(headers, b"location")
    if location is None:
        return None
    return inspect_location(location.decode("latin-1"), own_hosts)


# --- the request path's use of the above ---------------------------------------------------------


def request_host(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    host = _header(headers, b"host")
    return host.decode("latin-1").strip().lower() if host else None


class CallbackBinding(NamedTuple):
    """What the cookies say about one callback."""

    bound: frozenset[str]  # which of state / RelayState / InResponseTo are bound to an Auth0 transaction
    payload: bytes = b""  # the cookie's verified records
    record: int = -1  # the one that matched


NOT_BOUND = CallbackBinding(frozenset())


@dataclass(frozen=True, slots=True)
class Binder:
    """The binding settings in force: keys, lifetime, this service's own hosts (besides the request's Host)."""

    keys: Keys
    ttl: int = 600
    public_hosts: frozenset[str] = frozenset()

    def own_hosts(self, request_headers: Iterable[tuple[bytes, bytes]]) -> frozenset[str]:
        host = request_host(request_headers)
        return self.public_hosts | {host} if host else self.public_hosts

    def auth0_binding(self, request_headers: list[tuple[bytes, bytes]], cb: Callback, now: float) -> CallbackBinding:
        """Whether the callback's state / RelayState / InResponseTo was bound when Auth0 started it."""
        payload = read_payload(request_headers, AUTH0_COOKIE, self.keys, AUTH0_PURPOSE)
        if not payload:
            return NOT_BOUND
        found = self._find(payload, transaction_values(cb), AUTH0_PURPOSE, now)
        if found is None:
            xml = saml_document(cb)
            reply_to = in_response_to(xml) if xml else None
            if reply_to is not None:
                found = self._find(payload, [("InResponseTo", reply_to)], AUTH0_PURPOSE, now)
        if found is None:
            return NOT_BOUND
        name, record = found
        return CallbackBinding(frozenset((name,)), payload, record)

    def used_cookie(self, found: CallbackBinding, now: float) -> bytes | None:
        """Set-Cookie for the forwarded callback: the bindings without the one it used (single use)."""
        if not found.bound:
            return None
        left = without_record(found.payload, found.record, now)
        return update_cookie(AUTH0_COOKIE, left, self.keys, AUTH0_PURPOSE, now)

    def _find(
        self, payload: bytes, candidates: list[tuple[str, str]], purpose: bytes, now: float
    ) -> tuple[str, int] | None:
        for name, value in candidates:
            record = find_record(payload, (value,), self.keys, purpose, now)
            if record is not None:
                return name, record
        return None

    def _workos_values(self, cb: Callback) -> list[tuple[str, str]]:
        values = transaction_values(cb)
        if not values:
            digest = callback_digest(cb)
            if digest is not None:
                values = [("digest", digest)]
        return values

    def solicited(
        self, request_headers: list[tuple[bytes, bytes]], cb: Callback, now: float
    ) -> tuple[bool, bytes | None]:
        """Whether a ``fallback=auth0`` callback is one this proxy sent to WorkOS; and the Set-Cookie
        removing its entry."""
        payload = read_payload(request_headers, WORKOS_COOKIE, self.keys, WORKOS_PURPOSE)
        if not payload:
            return False, None
        found = self._find(payload, self._workos_values(cb), WORKOS_PURPOSE, now)
        if found is None:
            return False, None
        left = without_record(payload, found[1], now)
        return True, update_cookie(WORKOS_COOKIE, left, self.keys, WORKOS_PURPOSE, now)

    def workos_cookie(self, request_headers: list[tuple[bytes, bytes]], cb: Callback, now: float) -> bytes | None:
        """Set-Cookie for a callback this proxy sends to WorkOS, so its fallback is known as solicited."""
        values = self._workos_values(cb)
        if not values:
            return None
        return self._append(
            request_headers, WORKOS_COOKIE, WORKOS_PURPOSE, tuple(v for _, v in values), WORKOS_TTL, now
        )

    def bind(self, request_headers: list[tuple[bytes, bytes]], login: Login, now: float) -> bytes:
        """Set-Cookie adding a login Auth0 starts to the browser's bindings."""
        return self._append(request_headers, AUTH0_COOKIE, AUTH0_PURPOSE, login.values, self.ttl, now)

    def _append(
        self,
        request_headers: list[tuple[bytes, bytes]],
        name: str,
        purpose: bytes,
        values: tuple[str, ...],
        ttl: int,
        now: float,
    ) -> bytes:
        """Set-Cookie with one record more than the request's cookie (the oldest dropped beyond the
        bound). Records are appended as bytes: expired ones are ignored by the check and pushed out
        by newer ones, so nothing is parsed here."""
        payload = read_payload(request_headers, name, self.keys, purpose)
        added = (payload + make_record(values, self.keys, purpose, int(now) + ttl))[-MAX_ENTRIES * RECORD :]
        return set_cookie(name, sign_payload(added, self.keys, purpose), ttl)


class PassthroughHook:
    """For one passthrough response: a 3xx or auto-post page starting a login gets the binding cookie.

    Satisfies ``proxy.upstream.ResponseHook``; ``counted`` is told the kind of each binding set.
    Only a 200 ``text/html`` response small enough to be an auto-post page is buffered (up to
    :data:`MAX_PAGE_BYTES`); everything else streams untouched.
    """

    __slots__ = ("binder", "counted", "now", "request_headers")

    def __init__(
        self,
        binder: Binder,
        request_headers: list[tuple[bytes, bytes]],
        now: float,
        counted: Callable[[str], None],
    ) -> None:
        self.binder = binder
        self.request_headers = request_headers
        self.now = now
        self.counted = counted

    def _cookie(self, login: Login | None) -> list[tuple[bytes, bytes]]:
        if login is None:
            return []
        self.counted(login.kind)
        return [(b"set-cookie", self.binder.bind(self.request_headers, login, self.now))]

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int]:
        if 300 <= status < 400:
            return self._cookie(inspect_response(status, headers, self.binder.own_hosts(self.request_headers))), 0
        return [], MAX_PAGE_BYTES if may_be_post_page(status, headers) else 0

    def body(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> list[tuple[bytes, bytes]]:
        page = decode_page(body, headers)
        if page is None:
            return []
        return self._cookie(inspect_page(page, self.binder.own_hosts(self.request_headers)))
