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
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import parse_qsl, unquote_plus, unquote_to_bytes
from xml.parsers import expat

# Cap on the inflated size of a Redirect-binding SAMLResponse and on an id_token (defence against
# decompression bombs; a real SAML response is a few tens of KB).
MAX_INFLATED_BYTES = 1 << 20
MAX_ID_TOKEN_BYTES = 64 << 10


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


@dataclass(frozen=True, slots=True)
class Callback:
    """The raw facts of one callback request; hints are derived on demand by the functions below."""

    query: bytes = b""
    body: bytes = b""
    form: bool = False  # body is application/x-www-form-urlencoded


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
    start = 0
    while True:
        at = data.find(key, start)
        if at < 0:
            return
        if at == 0 or data[at - 1] == 0x26:  # b"&"
            begin = at + len(key)
            end = data.find(b"&", begin)
            yield data[begin:] if end < 0 else data[begin:end]
            start = begin
        else:
            start = at + 1


def _decode_value(raw: bytes) -> str:
    if b"%" in raw or b"+" in raw:
        return unquote_plus(raw.decode("latin-1"), encoding="utf-8", errors="replace")
    return raw.decode("utf-8", errors="replace")


def query_value(query: bytes, name: str) -> str | None:
    """The first value of ``name`` in a raw query, or None."""
    for raw in _raw_values(query, name.encode()):
        return _decode_value(raw)
    return None


def is_fallback(query: bytes) -> bool:
    """WorkOS sends the browser back with ``fallback=auth0`` when it cannot handle a callback."""
    return any(_decode_value(raw) == "auth0" for raw in _raw_values(query, b"fallback"))


def strip_fallback(query: bytes) -> bytes:
    """The raw query without its ``fallback`` parameters; every other byte kept as it came."""
    kept = []
    for piece in query.split(b"&"):
        name = piece.split(b"=", 1)[0]
        if unquote_to_bytes(name.replace(b"+", b" ")) == b"fallback":
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
    if b"+" in raw:
        raw = raw.replace(b"+", b"")
    return unquote_to_bytes(raw) if b"%" in raw else raw


def _local(name: str) -> str:
    return name.rpartition(":")[2]


class _Stop(Exception):
    """Raised from an expat handler once everything needed has been read."""


class _Forbidden(Exception):
    """The document declares a DTD or entity: refused."""


def _refuse(*_args: Any) -> None:
    raise _Forbidden


def read_saml_xml(xml: bytes) -> SamlFacts:
    """Destination, first Issuer and the first AudienceRestriction's Audiences of a SAML response."""
    audiences: list[str] = []
    issuer: list[str] = []
    destination: list[str] = []
    text: list[str] = []
    capture: list[str] = []  # local name of the element whose text is being read

    def start(name: str, attrs: dict[str, str]) -> None:
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

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse  # type: ignore[assignment]
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    try:
        parser.Parse(xml, True)
    except _Stop:
        pass
    except (_Forbidden, expat.ExpatError, ValueError):
        return SamlFacts(ok=False)
    if not (audiences or issuer or destination):
        return SamlFacts(ok=False)
    return SamlFacts(True, tuple(audiences), issuer[0] if issuer else None, destination[0] if destination else None)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_INFLATED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("inflated SAMLResponse too large")
    return out


def saml_response(cb: Callback) -> bytes | None:
    """The raw SAMLResponse field (POST binding in the form, else Redirect binding in the query)."""
    if cb.form and b"SAMLResponse=" in cb.body:
        found = form_field(cb.body, b"SAMLResponse")
        if found is not None:
            return found
    if b"SAMLResponse=" in cb.query:
        return form_field(cb.query, b"SAMLResponse")
    return None


def saml_document(cb: Callback) -> bytes | None:
    """The SAMLResponse XML of a callback; None without one, b"" when it cannot be decoded."""
    raw = saml_response(cb)
    if raw is None:
        return None
    try:
        data = binascii.a2b_base64(unescape_base64_field(raw))
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
# One pass finds whichever comes first: a "<!" (comment, CDATA, DTD, entity declaration), a "<?"
# (processing instruction), or the Audience element.
_SCAN = re.compile(rb"<[!?]|<(?:[A-Za-z_][\w.-]*:)?Audience(?:[ \t\r\n][^>]*)?>([^<]*)</")


def scan_audience(xml: bytes) -> str | None:
    """The first Audience by a tag scan, or None when only a parser can say (see above)."""
    found = _SCAN.search(xml)
    if found is not None and found.start() == 0 and xml.startswith(b"<?xml"):  # the XML declaration
        found = _SCAN.search(xml, 1)
    if found is None or found.group(1) is None:
        return None
    text = found.group(1)
    if b"&" in text:
        return None
    try:
        return text.decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return None


def read_saml(cb: Callback) -> SamlFacts | None:
    """SAML facts of a callback by the parser, None when it carries no SAMLResponse."""
    xml = saml_document(cb)
    return None if xml is None else read_saml_xml(xml)


def _b64url(segment: str) -> bytes:
    return binascii.a2b_base64(segment.replace("-", "+").replace("_", "/") + "=" * (-len(segment) % 4))


def read_oidc(cb: Callback) -> OidcFacts | None:
    """The unverified payload of a form_post ``id_token``; None when there is none."""
    raw = form_field(cb.body, b"id_token") if cb.form else None
    if raw is None:
        raw = form_field(cb.query, b"id_token")
    if raw is None:
        return None
    token = unquote_to_bytes(raw.replace(b"+", b" ")).decode("latin-1")
    parts = token.split(".")
    if len(token) > MAX_ID_TOKEN_BYTES or len(parts) != 3:
        return OidcFacts(ok=False)
    try:
        payload = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a deeply nested payload ([[[[...) within the size bound (issue 11, finding 8)
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
    if b"SAMLResponse=" in cb.body or b"SAMLResponse=" in cb.query:
        return "saml"
    if b"id_token=" in cb.body or b"code=" in cb.query or b"id_token=" in cb.query:
        return "oidc"
    return "unknown"
