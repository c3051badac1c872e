"""Pure parsing of a ``/login/callback`` request into routing hints. Never raises on bad input.

This is the hot path: a callback whose query names its connection is decided without touching the
body, and a SAML body is read with a find-and-slice of the form field, a base64 decode and an expat
parse that stops once the Audience is read, instead of a full form parse and DOM.

XML safety: expat is created with DOCTYPE declarations refused outright (so no entity can be
declared: no billion laughs, no external entities, no DTD retrieval), the same policy as
defusedxml's ``forbid_dtd=True``. Redirect-binding payloads are inflated with an output cap.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import zlib
from codecs import escape_decode
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import parse_qsl
from xml.parsers import expat

from proxy.routing.fields import EMPTY, Fields
from proxy.routing.txcookie import MAX_VALUE_CHARS

# Cap on an id_token (a real one is a few KB).
MAX_ID_TOKEN_BYTES = 64 << 10
# Work bounds for hostile documents (one request must never hold the event loop).
# A schema-valid SAML response names its Destination on the root, its Issuer first, and closes the
# first AudienceRestriction within a few dozen elements and a few KB (Response: Issuer, Signature,
# Status, Assertion: Issuer, Signature, Subject, Conditions; the attribute statements come after),
# so the scan and the parser read only the first PARSE_WINDOW bytes, and the parser stops after
# MAX_ELEMENTS elements, keeping what it has read. expat's cost per byte depends on the markup
# (about 3,700 instructions per distinct element name, measured with callgrind), so the window
# bounds the worst case, not only the typical one.
PARSE_WINDOW = 32 << 10
MAX_ELEMENTS = 1000
# Only the start of a long SAMLResponse field is decoded: enough base64 for PARSE_WINDOW bytes of XML
# with room for the escapes and line breaks a real one carries (decoding a whole 1 MB field was half
# the cost of identifying a hostile body, measured with callgrind). Inflating stops there as well, so
# a DEFLATE bomb costs no more than a real response.
RAW_WINDOW = 2 * PARSE_WINDOW
# Above this many escapes a base64 field is unescaped by C-speed replaces of the escapes a base64
# value can carry, not by unquote_to_bytes's per-escape Python loop (a 1 MB field of "%41" took 0.7 s).
_MANY_ESCAPES = 512
_BASE64_ESCAPES = ((b"%2B", b"+"), (b"%2F", b"/"), (b"%3D", b"="), (b"%0D", b"\r"), (b"%0A", b"\n"), (b"%20", b" "))


@dataclass(frozen=True, slots=True)
class SamlFacts:
    """What a SAMLResponse says about where it is going; ``ok`` is False when it could not be read."""

    ok: bool
    audiences: tuple[str, ...] = ()
    issuer: str | None = None
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class OidcFacts:
    """An id_token's unverified ``aud`` and ``iss``: routing hints only, never trusted."""

    ok: bool
    audiences: tuple[str, ...] = ()
    issuer: str | None = None


class _Unread:
    """The value of a per-callback cache not read yet (None is a result: no SAMLResponse)."""


UNREAD = _Unread()


class Callback:
    """The raw facts of one callback request; hints are derived on demand by the functions below.

    The query and a form body are indexed once (:class:`proxy.routing.fields.Fields`): every function
    below reads its fields from the index, so a 10 KB SAML form is walked once per callback.
    Never changed once made. A plain slotted class, not a frozen dataclass: one is made per
    callback, and the dataclass's ``__post_init__`` setting the indexes cost a microsecond more.
    """

    __slots__ = ("_document", "_transaction", "body", "body_fields", "form", "query", "query_fields")

    def __init__(self, query: bytes = b"", body: bytes = b"", form: bool = False) -> None:
        self.query = query
        self.body = body
        self.form = form  # body is application/x-www-form-urlencoded
        self.query_fields = Fields(query) if query else EMPTY
        self.body_fields = Fields(body) if form and body else EMPTY
        self._transaction: tuple[tuple[str, str], ...] | None = None  # transaction_values, once read
        self._document: bytes | _Unread | None = UNREAD  # saml_document, once decoded

    def __repr__(self) -> str:
        return f"Callback(query={self.query!r}, body={self.body!r}, form={self.form!r})"

    def field(self, name: bytes) -> bytes | None:
        """The raw first value of ``name``: the form body's, else the query's."""
        found = self.body_fields.first(name)
        return found if found is not None else self.query_fields.first(name)

    def has(self, name: bytes) -> bool:
        return self.body_fields.has(name) or self.query_fields.has(name)


def parse_query(query: bytes) -> list[tuple[str, str]]:
    """Query parameters in order, repetition kept; undecodable bytes replaced, never an error."""
    return parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace")


def _raw_values(data: bytes, name: bytes) -> Iterator[bytes]:
    """Every raw (still percent-encoded) value of ``name`` in a query or form, in order.

    A find-and-slice instead of a full parse: the callback path reads two or three names out of a
    query or a 10 KB form, and parsing everything costs more than the decision itself. Names are
    matched as written (IdPs, Auth0 and WorkOS never percent-encode ``connection`` or ``fallback``).
    """
    key = name + b"="
    # Only the name at the start or right after "&" counts. Finding "&name=" (not "name=" and then
    # looking back) keeps a body of "xname=xname=..." from costing a Python step per false match.
    at = 0 if data.startswith(key) else data.find(b"&" + key)
    while at >= 0:
        begin = at + len(key) + (data[at] == 0x26)  # b"&"
        end = data.find(b"&", begin)
        if end < 0:
            yield data[begin:]
            return
        yield data[begin:end]
        at = data.find(b"&" + key, end)


# A "%" that starts no escape: unquote_to_bytes keeps it as it is, so it is written as "%25" first.
_LONE_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# The regex's cost is per "%" (about 0.15 us each): past this many, a value with a malformed escape,
# which no IdP, Auth0 or WorkOS writes, is left as it came rather than decoded.
_MAX_LENIENT_ESCAPES = 8192
# A credential longer than this (raw) is digested as it came, not decoded first: no real one is.
_MAX_DIGESTED = 256 << 10


def unquote_bytes(raw: bytes) -> bytes:
    """``unquote_to_bytes(raw)``, in C passes whatever the input: no Python step per escape.

    Each ``%`` becomes ``\\x`` (backslashes doubled first, so no other escape can appear) and
    ``codecs.escape_decode`` reads ``\\xHH`` in C: three to four times cheaper than
    ``unquote_to_bytes``'s split and per-chunk lookups on a redirect's ``redirect_uri``
    (bench/micro_binding.py). A ``%`` not followed by two hex digits makes ``escape_decode`` refuse;
    then such a ``%`` is first written as ``%25`` by one regex substitution with a literal
    replacement (done in C), and the rest is the same, for up to :data:`_MAX_LENIENT_ESCAPES`
    escapes; a longer malformed value is returned as it came (the only way this differs from
    ``unquote_to_bytes``). ``unquote_to_bytes`` itself loops in Python once per ``%``: 1 MiB of
    ``%%%%`` cost 1.4 s of event loop through it. Bytes outside ASCII pass through as they are."""
    if raw.find(b"%") < 0:  # find: `bytes in bytes` first tries an int and raises
        return raw
    escaped = raw.replace(b"\\", b"\\\\")
    try:
        return escape_decode(escaped.replace(b"%", b"\\x"))[0]
    except ValueError:
        if raw.count(b"%") > _MAX_LENIENT_ESCAPES:
            return raw
        return escape_decode(_LONE_PERCENT.sub(b"%25", escaped).replace(b"%", b"\\x"))[0]


def decode_value(raw: bytes) -> str:
    """A raw query or form value decoded: ``+`` is a space, then percent-decoding, then UTF-8 with
    undecodable bytes replaced (``unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8",
    "replace")``; for ASCII, every real value, the same as ``unquote_plus``). A byte outside ASCII
    sent unescaped is read as the byte it is, as if it had been percent-encoded: a raw UTF-8 value
    decodes to its text. Linear, in C passes (:func:`unquote_bytes`); callers bound the length."""
    if raw.find(b"%") < 0 and raw.find(b"+") < 0:
        return raw.decode("utf-8", errors="replace")
    return unquote_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")


def query_value(query: bytes, name: str) -> str | None:
    """The first value of ``name`` in a raw query, or None."""
    for raw in _raw_values(query, name.encode()):
        return decode_value(raw)
    return None


def named_connection(cb: Callback) -> str | None:
    """The callback query's ``connection`` parameter (Auth0 adds it to a SAML connection's ACS URL)."""
    raw = cb.query_fields.first(b"connection")
    return None if raw is None else decode_value(raw)


def is_fallback(query: bytes) -> bool:
    """WorkOS sends the browser back with ``fallback=auth0`` when it cannot handle a callback."""
    if query.find(b"fallback=") < 0:  # nearly every callback: one C search, no generator
        return False
    return any(decode_value(raw) == "auth0" for raw in _raw_values(query, b"fallback"))


def strip_fallback(query: bytes) -> bytes:
    """The raw query without its ``fallback`` parameters; every other byte kept as it came."""
    kept = []
    for piece in query.split(b"&"):  # the query is bounded by the head limit
        name = piece.split(b"=", 1)[0]
        if name == b"fallback" or (name.find(b"%") >= 0 and unquote_bytes(name) == b"fallback"):
            continue
        kept.append(piece)
    return b"&".join(kept)


def form_field(body: bytes, name: bytes) -> bytes | None:
    """The raw (still percent-encoded) value of a form field, found without parsing the whole form."""
    for raw in _raw_values(body, name):
        return raw
    return None


def unescape_base64_field(raw: bytes) -> bytes:
    """Form-decode a base64 field value. In a form, ``+`` means space, which base64 ignores.

    ``unquote_to_bytes`` splits on ``%`` only, so the handful of escapes a base64 value carries
    (``%2B %2F %3D``) cost less than repeated ``bytes.replace`` copies (bench/micro_identify.py).
    """
    if raw.find(b"+") >= 0:
        raw = raw.replace(b"+", b"")
    escapes = raw.count(b"%")
    if escapes == 0:
        return raw
    if escapes <= _MANY_ESCAPES:
        return unquote_bytes(raw)
    for escaped, plain in _BASE64_ESCAPES:
        raw = raw.replace(escaped, plain)
        if escaped != escaped.lower():
            raw = raw.replace(escaped.lower(), plain)
    return raw  # any other escape is no base64: its "%" is dropped by the decoder and the XML fails


def _local(name: str) -> str:
    return name.rpartition(":")[2]


class _Stop(Exception):
    """Raised from an expat handler once everything needed has been read."""


class _Forbidden(Exception):
    """The document declares a DTD or entity: refused."""


def _refuse(*_args: Any) -> None:
    raise _Forbidden


# What a hostile document can make expat raise; each means "unreadable". LookupError: an XML
# declaration naming an unknown encoding (encoding="U4F-8", found by make fuzz).
PARSE_ERRORS = (_Forbidden, expat.ExpatError, ValueError, LookupError)


def safe_parser() -> expat.XMLParserType:
    """expat with DOCTYPE declarations and entities refused outright (defusedxml's forbid_dtd
    policy): no entity can be declared, so no billion laughs, no external entities, no DTD retrieval."""
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse  # type: ignore[assignment]
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


def parse_window(parser: expat.XMLParserType, xml: bytes) -> None:
    """Feed the first PARSE_WINDOW bytes; past the window the document is not final, so expat reports
    what it read instead of "unclosed token"."""
    parser.Parse(xml[:PARSE_WINDOW], len(xml) <= PARSE_WINDOW)


def root_element(xml: bytes) -> tuple[str, dict[str, str]] | None:
    """The root element's local name and attributes by expat (it stops there), or None if unreadable:
    an AuthnRequest's ID, a Response's InResponseTo (the transaction binding, on the request path).
    expat costs less here than a regex scan of the root tag did (bench/NOTES.md, sixth round)."""
    found: list[tuple[str, dict[str, str]]] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        found.append((_local(name), attrs))
        raise _Stop

    parser = safe_parser()
    parser.StartElementHandler = start
    try:
        parse_window(parser, xml)
    except _Stop:
        pass
    except PARSE_ERRORS:
        return None
    return found[0] if found else None


def read_saml_xml(xml: bytes) -> SamlFacts:
    """Destination, first Issuer and the first AudienceRestriction's Audiences of a SAML response."""
    audiences: list[str] = []
    issuer: list[str] = []
    destination: list[str] = []
    text: list[str] = []
    capture: list[str] = []  # local name of the element whose text is being read

    elements = [0]

    def start(name: str, attrs: dict[str, str]) -> None:
        elements[0] += 1
        if elements[0] > MAX_ELEMENTS:
            raise _Stop  # keep what was read; a valid response has said it all by now (see above)
        local = _local(name)
        if not destination and local == "Response" and "Destination" in attrs:
            destination.append(attrs["Destination"])
        if local == "Audience" or (local == "Issuer" and not issuer):
            capture.append(local)
            text.clear()

    def end(name: str) -> None:
        local = _local(name)
        if capture and local == capture[-1]:
            capture.pop()
            value = "".join(text).strip()
            if value:
                (audiences if local == "Audience" else issuer).append(value)
        elif local == "AudienceRestriction" and audiences:
            raise _Stop

    def chars(data: str) -> None:
        if capture:
            text.append(data)

    parser = safe_parser()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    try:
        parse_window(parser, xml)
    except _Stop:
        pass
    except PARSE_ERRORS:
        return SamlFacts(ok=False)
    if not (audiences or issuer or destination):
        return SamlFacts(ok=False)
    return SamlFacts(True, tuple(audiences), issuer[0] if issuer else None, destination[0] if destination else None)


def _inflate(data: bytes) -> bytes:
    """The first PARSE_WINDOW + 1 bytes a DEFLATE stream inflates to: all the parser will read."""
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, PARSE_WINDOW + 1)


def _decode_base64_field(raw: bytes) -> bytes:
    """The bytes of a base64 form value, or of its first RAW_WINDOW bytes when it is longer."""
    if len(raw) <= RAW_WINDOW:
        return binascii.a2b_base64(unescape_base64_field(raw))
    raw = raw[:RAW_WINDOW]
    cut = raw.find(b"%", RAW_WINDOW - 2)  # an escape cut in two is dropped whole
    b64 = unescape_base64_field(raw if cut < 0 else raw[:cut]).translate(None, b" \t\r\n")
    return binascii.a2b_base64(b64[: len(b64) - len(b64) % 4])


def saml_response(cb: Callback) -> bytes | None:
    """The raw SAMLResponse field (POST binding in the form, else Redirect binding in the query)."""
    return cb.field(b"SAMLResponse")


def saml_document(cb: Callback) -> bytes | None:
    """The SAMLResponse XML of a callback; None without one, b"" when it cannot be decoded.
    Decoded once per callback (the binding check and the identification both read it)."""
    if isinstance(cb._document, _Unread):
        cb._document = _decode_document(cb)
    return cb._document


def _decode_document(cb: Callback) -> bytes | None:
    raw = saml_response(cb)
    if raw is None:
        return None
    try:
        data = _decode_base64_field(raw)
    except (binascii.Error, ValueError):
        return b""
    if not data.lstrip().startswith(b"<"):
        # Redirect binding: DEFLATE then base64 (SAML bindings 3.4.4.1).
        try:
            data = _inflate(data)
        except (zlib.error, ValueError):
            return b""
    return data


# The fast path: the first Audience found by a tag scan, for documents a scan reads exactly as a
# parser would. Nothing is parsed or expanded, so no DTD or entity can act; anything a scan could
# misread before the Audience (comments, CDATA, processing instructions, DTDs, entity references)
# sends the callback to the expat path instead. bench/micro_identify.py measures both.
#
# Bounded work: a regex *search* tried a match at every "<" (quadratic with
# "[^>]*" on "<Audience " repeated; about 640 instructions per "<" even when linear). Here C-speed
# finds locate the name "Audience", and an anchored match is tried at the "<" that opens its tag, for
# at most MAX_AUDIENCE_CANDIDATES occurrences (a real response has two: AudienceRestriction, Audience).
# The match stops at the next "<", which XML forbids inside a tag and its attribute values; attribute
# values are read as quoted strings, so a ">" inside one is not taken for the tag's end.
_AUDIENCE_TAG = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?Audience"
    rb"""(?:[ \t\r\n]+[^\s=<>/"']+[ \t\r\n]*=[ \t\r\n]*(?:"[^"<]*"|'[^'<]*'))*[ \t\r\n]*>([^<]*)</"""
)
MAX_AUDIENCE_CANDIDATES = 8


def _scan_barrier(xml: bytes, end: int) -> int:
    """Where a scan stops being exact: the first "<!" or "<?" (the XML declaration excepted)."""
    found = [
        at for at in (xml.find(b"<!", 0, end), xml.find(b"<?", 1 if xml.startswith(b"<?xml") else 0, end)) if at >= 0
    ]
    return min(found) if found else end


def scan_audience(xml: bytes) -> str | None:
    """The first Audience by a tag scan, or None when only a parser can say (see above)."""
    end = min(len(xml), PARSE_WINDOW)
    barrier = _scan_barrier(xml, end)
    at = xml.find(b"Audience", 0, barrier)
    for _ in range(MAX_AUDIENCE_CANDIDATES):
        if at < 0:
            return None
        opening = xml.rfind(b"<", 0, at)
        found = _AUDIENCE_TAG.match(xml, opening, end) if opening >= 0 else None
        if found is not None:
            text = found.group(1)
            if text.find(b"&") >= 0:
                return None
            try:
                return text.decode("utf-8").strip() or None
            except UnicodeDecodeError:
                return None
        at = xml.find(b"Audience", at + 8, barrier)
    return None


def read_saml(cb: Callback) -> SamlFacts | None:
    """SAML facts of a callback by the parser, None when it carries no SAMLResponse."""
    xml = saml_document(cb)
    return None if xml is None else read_saml_xml(xml)


def _b64url(segment: str) -> bytes:
    return binascii.a2b_base64(segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4))


def read_oidc(cb: Callback) -> OidcFacts | None:
    """The unverified payload of a form_post ``id_token``; None when there is none."""
    raw = cb.field(b"id_token")
    if raw is None:
        return None
    if len(raw) > 3 * MAX_ID_TOKEN_BYTES:  # longer than any encoding of a token under the cap: not decoded
        return OidcFacts(ok=False)
    token = unquote_bytes(raw.replace(b"+", b" ")).decode("latin-1")
    parts = token.split(".")
    if len(token) > MAX_ID_TOKEN_BYTES or len(parts) != 3:
        return OidcFacts(ok=False)
    try:
        payload = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..."
        return OidcFacts(ok=False)
    if not isinstance(payload, dict):
        return OidcFacts(ok=False)
    aud = payload.get("aud")
    auds = (
        (aud,) if isinstance(aud, str) else tuple(a for a in aud if isinstance(a, str)) if isinstance(aud, list) else ()
    )
    iss = payload.get("iss") if isinstance(payload.get("iss"), str) else None
    return OidcFacts(ok=bool(auds or iss), audiences=auds, issuer=iss)


def guess_protocol(cb: Callback) -> str:
    """saml, oidc or unknown, from the fields present (used when no connection is identified)."""
    if cb.has(b"SAMLResponse"):
        return "saml"
    if cb.has(b"id_token") or cb.query_fields.has(b"code"):
        return "oidc"
    return "unknown"


def in_response_to(xml: bytes) -> str | None:
    """The ``InResponseTo`` of a SAML response's root element (the AuthnRequest it answers)."""
    root = root_element(xml)
    return (root[1].get("InResponseTo") or None) if root is not None else None


def transaction_values(cb: Callback) -> tuple[tuple[str, str], ...]:
    """The values a login's starter issued and the callback echoes: ``state`` (query, form_post
    body) and ``RelayState`` (POST body, Redirect-binding query), as (name, value), in that order:
    the form body's value first, then the query's. Read once per callback (the binding check, the
    solicited-fallback cookie and the unbound count all ask)."""
    if cb._transaction is None:
        out = []
        places = (cb.query_fields,) if cb.body_fields is EMPTY else (cb.body_fields, cb.query_fields)
        for name, key in _TRANSACTION_NAMES:
            for fields in places:
                raw = fields.first(key)
                if raw is not None:
                    # A value longer than any encoding of one that can be bound (MAX_VALUE_CHARS) is
                    # not decoded: it stays a value (never bound, never found), at no cost.
                    out.append((name, decode_value(raw) if len(raw) <= _MAX_RAW_VALUE else raw.decode("latin-1")))
        cb._transaction = tuple(out)
    return cb._transaction


_TRANSACTION_NAMES = (("state", b"state"), ("RelayState", b"RelayState"))
_MAX_RAW_VALUE = 3 * MAX_VALUE_CHARS  # each character of a bindable value is at most one "%XX" escape


def callback_digest(cb: Callback) -> str | None:
    """A digest naming this callback's credential (SAMLResponse, id_token or code), the same however
    the browser re-encodes the form; None when it carries none."""
    for name in (b"SAMLResponse", b"id_token", b"code"):
        raw = cb.field(name)
        if raw is not None:
            # Over the decoded bytes (C passes, linear; no str round trip), so every re-encoding of
            # the same credential has the same digest; over the raw bytes past a real one's size.
            if len(raw) > _MAX_DIGESTED:
                value = raw
            elif name == b"SAMLResponse":
                value = unescape_base64_field(raw)
            else:
                value = unquote_bytes(raw.replace(b"+", b" "))
            return name.decode() + ":" + hashlib.sha256(value).hexdigest()
    return None


def is_auth0_only(cb: Callback) -> bool:
    """A WS-Federation sign-in response (``wresult``/``wctx``): Auth0's classic-login database logins
    and WS-Fed/ADFS connections post these; WorkOS takes none of them."""
    return cb.has(b"wresult") or cb.has(b"wctx")
