"""What an upstream response starts: the logins Auth0 sends to an identity provider. Pure; never raises.

Every login Auth0 starts sends the browser to the IdP through a response this proxy passes on.
These functions say which responses do, and which values the callback will echo:

- OIDC/OAuth2 (RFC 6749 section 4.1.1, social included): a 3xx to another host whose query has
  ``state`` and a ``redirect_uri`` on this service's ``/login/callback``;
- SAML HTTP-Redirect binding (SAML bindings section 3.4): a 3xx with ``SAMLRequest`` (+
  ``RelayState``), the request inflated with a cap to read its ``ID`` (echoed as ``InResponseTo``);
- SAML HTTP-POST binding (section 3.5): a 200 ``text/html`` page whose form posts ``SAMLRequest``
  (+ ``RelayState``), read only when small enough (:data:`MAX_PAGE_BYTES`) and in an encoding a
  browser accepts (identity, gzip, deflate, br, zstd: Auth0's edge compresses pages as the browser
  allows, and browsers ask for br and zstd).

Every parser is linear: tag scans use patterns that cannot backtrack across the input, inflation
and decompression are capped, the AuthnRequest's root is read by expat with DTDs refused.
"""

from __future__ import annotations

import binascii
import re
import threading
import zlib
from html import unescape
from typing import Callable, Collection, Iterable, NamedTuple

import brotli
import zstandard

from proxy.routing.callback import decode_value, root_element
from proxy.routing.txcookie import MAX_VALUE_CHARS

MAX_LOCATION_CHARS = 16 << 10
MAX_INFLATED_REQUEST = 64 << 10  # an AuthnRequest is a few KB
# An auto-post page is a few KB (a form, two fields, a script; a signed AuthnRequest with its
# certificate is about 6 KB of base64). Larger pages are never buffered, and no page is decoded past
# this: Auth0's own login pages are tens of KB, and decoding one whole cost 140-170 µs (br, gzip; 60 KB).
MAX_PAGE_BYTES = 32 << 10

OIDC_STATE = "oidc_state"
SAML_RELAYSTATE = "saml_relaystate"
_CALLBACK_PATHS = ("/login/callback", "/login/callback/")
_IDENTITY = (b"", b"identity")
_BROTLI_STEP = 4 << 10  # compressed bytes per call: a page's text is 3-5 times that
_BROTLI_MAX_WBITS = 16  # a 64 KiB window: the ring buffer filled before any output costs about a page
# An auto-post page has one form and a few inputs (SAMLRequest, RelayState, a submit button) of a few
# attributes each: past these bounds a page is not an auto-post page, and reading on would cost
# one regex match and decode per attribute (8,000 attributes in 32 KB: 41 ms).
MAX_PAGE_INPUTS = 16
MAX_TAG_ATTRS = 8
_WANTED_ATTRS = (b"name", b"value", b"action")
_ZSTD_WINDOW = 8 << 20  # RFC 9659: a zstd content coding's window is at most 8 MB; larger frames are refused
# A zstd decoder costs more to make (13 µs) than to run on a page (1 µs); each one is reset when it
# starts a page, and is used by one thread at a time (the event loop's).
_decoders = threading.local()


def _zstd() -> zstandard.ZstdDecompressor:
    decoder: zstandard.ZstdDecompressor | None = getattr(_decoders, "zstd", None)
    if decoder is None:
        decoder = _decoders.zstd = zstandard.ZstdDecompressor(max_window_size=_ZSTD_WINDOW)
    return decoder


class Login(NamedTuple):
    """A login an upstream response starts: its kind and the values the callback will carry."""

    kind: str  # oidc_state | saml_relaystate
    values: tuple[str, ...]


# scheme://netloc then the path: one anchored match (no backtracking: each part stops at the first
# character the next one starts with). ``urlsplit`` costs several times more, and this runs on
# every redirect Auth0 answers.
_URL = re.compile(r"(?i:https?)://([^/?#]*)([^?#]*)")


def _host(found: re.Match[str]) -> str | None:
    """The host[:port] of a ``_URL`` match, lowercased; None for none or one with userinfo (never
    one of this service's hosts)."""
    netloc = found.group(1).lower()
    return netloc if netloc and "@" not in netloc and "\\" not in netloc else None


def _split(url: str) -> tuple[str, str] | None:
    """(host[:port] lowercased, path) of an absolute http(s) URL, else None."""
    found = _URL.match(url)
    if found is None:
        return None
    netloc = _host(found)
    return None if netloc is None else (netloc, found.group(2))


def _netloc(url: str) -> str | None:
    found = _URL.match(url)
    return _host(found) if found is not None else None


# A redirect's raw redirect_uri -> whether it is this service's /login/callback, per set of own
# hosts: Auth0 sends the same few values on every login, and decoding and splitting one costs
# more than the rest of the inspection. Bounded: cleared when full (the hosts come from requests).
_OWN_CALLBACKS: dict[tuple[str, frozenset[str]], bool] = {}
_OWN_CALLBACKS_MAX = 256


def _is_own_raw_callback(raw: str, own_hosts: frozenset[str]) -> bool:
    key = (raw, own_hosts)
    known = _OWN_CALLBACKS.get(key)
    if known is None:
        known = is_own_callback(_decode(raw), own_hosts)
        if len(_OWN_CALLBACKS) >= _OWN_CALLBACKS_MAX:
            _OWN_CALLBACKS.clear()
        _OWN_CALLBACKS[key] = known
    return known


def is_own_callback(url: str, own_hosts: Collection[str]) -> bool:
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
    split = _split(acs) if acs else None  # None: no ACS URL or a relative one (the IdP's own setting)
    if split is not None and not (split[0] in own_hosts and split[1] in _CALLBACK_PATHS):
        return None  # the IdP will post to someone else
    values = [v for v in (relay_state, request_id) if v and len(v) <= MAX_VALUE_CHARS]
    return Login(SAML_RELAYSTATE, tuple(values)) if values else None


def _param(query: str, key: str, amp_key: str) -> str | None:
    """The raw first value of a query parameter (``key`` is ``name=``, ``amp_key`` is ``&name=``):
    at the query's start or right after ``&``, as :class:`proxy.routing.fields.Fields` reads it. Two finds;
    a redirect's query is read for three names, which costs less than indexing all of it."""
    if query.startswith(key):
        begin = len(key)
    else:
        at = query.find(amp_key)
        if at < 0:
            return None
        begin = at + len(amp_key)
    end = query.find("&", begin)
    return query[begin:] if end < 0 else query[begin:end]


def _decode(raw: str) -> str:
    if "%" not in raw and "+" not in raw and raw.isascii():
        return raw  # nothing to decode: what decode_value gives
    return decode_value(raw.encode("utf-8", "surrogateescape"))


def inspect_location(location: str, own_hosts: frozenset[str]) -> Login | None:
    """The login a redirect to ``location`` starts, if it sends the browser to an IdP that comes back
    to this service's ``/login/callback``; else None."""
    saml = "SAMLRequest=" in location
    if len(location) > MAX_LOCATION_CHARS or not (saml or "state=" in location):
        return None  # the common case (Auth0's own pages, the app's callback with code+state): two scans
    netloc = _netloc(location)
    if netloc is None or netloc in own_hosts:
        return None  # relative, or to this service itself (e.g. /u/login): nothing to bind yet
    query = location.partition("?")[2].partition("#")[0]
    saml_request = _param(query, "SAMLRequest=", "&SAMLRequest=") if saml else None
    if saml_request is not None:
        relay_state = _param(query, "RelayState=", "&RelayState=")
        return _saml_login(
            _decode(saml_request), None if relay_state is None else _decode(relay_state), True, own_hosts
        )
    state = _param(query, "state=", "&state=")
    redirect_uri = _param(query, "redirect_uri=", "&redirect_uri=")
    if not state or not redirect_uri or not _is_own_raw_callback(redirect_uri, own_hosts):
        return None
    value = _decode(state)
    return Login(OIDC_STATE, (value,)) if len(value) <= MAX_VALUE_CHARS else None


# A tag scan that cannot backtrack across the page: each match attempt stops at the next < or >.
_FORM = re.compile(rb"<form\b([^<>]*)>", re.IGNORECASE)
_INPUT = re.compile(rb"<input\b([^<>]*)>", re.IGNORECASE)
_ATTR = re.compile(rb"""([a-zA-Z_:][-\w:.]*)\s*=\s*(?:"([^"<>]*)"|'([^'<>]*)'|([^\s"'<>=`]+))""")


def _attrs(raw: bytes) -> dict[str, str]:
    """The name, value and action attributes among a tag's first :data:`MAX_TAG_ATTRS` (only
    those are decoded)."""
    out: dict[str, str] = {}
    for count, match in enumerate(_ATTR.finditer(raw)):
        if count >= MAX_TAG_ATTRS:
            break
        key = match.group(1).lower()
        if key not in _WANTED_ATTRS:
            continue
        value = match.group(2) if match.group(2) is not None else match.group(3) or match.group(4) or b""
        out.setdefault(key.decode("ascii"), unescape(value.decode("utf-8", "replace")))
    return out


def inspect_page(page: bytes, own_hosts: frozenset[str]) -> Login | None:
    """The login an auto-post page starts (SAML HTTP-POST binding): its form's SAMLRequest and RelayState."""
    if page.find(b"SAMLRequest") < 0 or len(page) > MAX_PAGE_BYTES:
        return None
    fields: dict[str, str] = {}
    for count, match in enumerate(_INPUT.finditer(page)):
        if count >= MAX_PAGE_INPUTS:
            break
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


def header_value(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def may_be_post_page(status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a response can be an auto-post page worth buffering: 200, text/html, small, readable."""
    if status != 200:
        return False
    content_type = header_value(headers, b"content-type")
    if content_type is None or not content_type[:9].lower() == b"text/html":
        return False
    encoding = _content_encoding(headers)
    if encoding not in _IDENTITY and encoding not in _PAGE_DECODERS:
        return False
    length = header_value(headers, b"content-length")
    return length is None or (length.isdigit() and int(length) <= MAX_PAGE_BYTES)


def _content_encoding(headers: list[tuple[bytes, bytes]]) -> bytes:
    return (header_value(headers, b"content-encoding") or b"").strip().lower()


def _brotli_bounded(body: bytes, limit: int) -> bool:
    """Whether decoding ``body`` up to ``limit`` costs about a page, from its first bits (RFC 7932
    sections 9.1 and 9.2, read least significant bit first).

    Measured with brotli 1.2.1: the decoder fills its ring buffer before it
    returns any output, whatever ``output_buffer_limit`` and however small the input pieces, and the
    ring buffer grows to the stream's window (up to 16 MiB) or to the output of the last
    meta-block, whichever is smaller. A 52-byte body with a 16 MiB window cost 24 ms in one call
    (4 MiB: 6 ms, 256 KiB: 0.4 ms, 64 KiB: 0.2 ms). So a body is decoded only when its window is at
    most :data:`_BROTLI_MAX_WBITS`, or when its first meta-block is its last and holds at most
    ``limit`` bytes (what a one-shot encoder writes for a page, whatever its window); other bodies
    are not read (the page is passed on, not bound)."""
    bits = int.from_bytes(body[:8], "little")
    if not bits & 1:
        wbits, at = 16, 1
    elif (bits >> 1) & 7:
        wbits, at = 17 + ((bits >> 1) & 7), 4
    else:
        m = (bits >> 4) & 7
        if m == 1:
            return False  # a large window (RFC 9841): browsers refuse it too
        wbits, at = (8 + m if m else 17), 7
    if wbits <= _BROTLI_MAX_WBITS:
        return True
    if not (bits >> at) & 1:  # ISLAST: the first meta-block is not the last one
        return False
    if (bits >> (at + 1)) & 1:  # ISLASTEMPTY: an empty stream
        return True
    nibbles = (bits >> (at + 2)) & 3
    if nibbles == 3:  # a metadata block
        return False
    nibbles += 4
    mlen = ((bits >> (at + 4)) & ((1 << (4 * nibbles)) - 1)) + 1
    return mlen <= limit


def _unbrotli(body: bytes, limit: int) -> bytes:
    """At least ``limit`` bytes of a Brotli body, or all of it if less (b"" for a body whose
    decoding could cost more than a page: :func:`_brotli_bounded`). brotli (>= 1.2) stops growing
    its output past ``output_buffer_limit`` but grows it by doubling, so one call may decode twice
    the limit: the body is fed a step at a time and decoding stops once the limit is passed."""
    if not _brotli_bounded(body, limit - 1):
        raise brotli.error("not read: its window could cost more than a page")
    decoder = brotli.Decompressor()
    parts: list[bytes] = []
    size = 0
    for at in range(0, len(body), _BROTLI_STEP):
        part = decoder.process(body[at : at + _BROTLI_STEP], output_buffer_limit=limit)
        parts.append(part)
        size += len(part)
        if size >= limit:  # else this call stopped short of the limit, so the decoder takes more input
            break
    return b"".join(parts)


def _unzstd(body: bytes, limit: int) -> bytes:
    return _zstd().stream_reader(body, read_across_frames=True).read(limit)


def _inflate(wbits: int) -> Callable[[bytes, int], bytes]:
    return lambda body, limit: zlib.decompressobj(wbits).decompress(body, limit)


# Each decoder returns at least ``limit`` bytes of the page, or all of it if less.
_PAGE_DECODERS: dict[bytes, Callable[[bytes, int], bytes]] = {
    b"gzip": _inflate(16 + zlib.MAX_WBITS),
    b"x-gzip": _inflate(16 + zlib.MAX_WBITS),
    b"deflate": _inflate(zlib.MAX_WBITS),
    b"br": _unbrotli,
    b"zstd": _unzstd,
}


def decode_page(body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The page text for inspection (the response itself is passed on unchanged); None if
    unreadable or if it decodes to more than :data:`MAX_PAGE_BYTES` (each decoder stops about
    there: a small body that expands without end costs no more than a page)."""
    encoding = _content_encoding(headers)
    decoder = _PAGE_DECODERS.get(encoding)
    if decoder is None:
        return body if encoding in _IDENTITY else None
    try:
        data = decoder(body, MAX_PAGE_BYTES + 1)
    except (zlib.error, brotli.error, zstandard.ZstdError):
        return None
    return data if len(data) <= MAX_PAGE_BYTES else None


def inspect_response(status: int, headers: list[tuple[bytes, bytes]], own_hosts: frozenset[str]) -> Login | None:
    """The login a 3xx response starts (from its Location), else None."""
    if not 300 <= status < 400:
        return None
    location = header_value(headers, b"location")
    if location is None:
        return None
    return inspect_location(location.decode("latin-1"), own_hosts)
