"""Micro-benchmark: identify the connection from a ~10 KB SAML POST form body.

Three steps, each with candidates:

1. form field extraction: ``urllib.parse.parse_qs`` of the whole body, or find-and-slice of the
   raw bytes (``SAMLResponse=`` at the start or after ``&``, up to the next ``&``) with the
   percent escapes base64 can contain (``%2B %2F %3D``) replaced by ``bytes.replace``
   (``unquote_to_bytes`` only when another escape remains);
2. base64: ``binascii.a2b_base64`` of the whole value, or chunk by chunk while (3) consumes it;
3. XML: defusedxml ElementTree (full parse), or pyexpat with handlers that stop at the end of the
   first ``Audience`` (namespace-aware), with a DOCTYPE forbidden outright (no DTD, so no entity
   expansion or external entities).

Then, when it exists, the service's own ``proxy.routing.callback`` on the same body.

    python bench/micro_identify.py [--number N]

Every candidate is checked for the right answer first, and the expat ones for refusing XXE and
billion-laughs payloads.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import statistics
import sys
import timeit
import urllib.parse
from typing import Any, Callable
from xml.parsers import expat

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from samlgen import saml_form_body

SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
AUDIENCE = SAML_NS + " Audience"
ISSUER = SAML_NS + " Issuer"
EXPECTED = "urn:auth0:globex-prod:acme-okta"


# ---- 1. form field extraction ---------------------------------------------------------------


def field_parse_qs(body: bytes) -> bytes | None:
    values = urllib.parse.parse_qs(body.decode("latin-1")).get("SAMLResponse")
    return values[0].encode("latin-1") if values else None


def field_slice(body: bytes, name: bytes = b"SAMLResponse=") -> bytes | None:
    """The raw (still url-encoded) value of the first ``name`` field, by find-and-slice."""
    start = 0
    while True:
        i = body.find(name, start)
        if i < 0:
            return None
        if i == 0 or body[i - 1] == 0x26:  # '&'
            break
        start = i + 1
    i += len(name)
    j = body.find(b"&", i)
    return body[i:] if j < 0 else body[i:j]


def unescape_b64(value: bytes) -> bytes:
    """Undo form encoding for a base64 value: '+' is a space (dropped), %2B %2F %3D are the
    only escapes base64 needs; anything else falls back to the general decoder."""
    if b"+" in value:
        value = value.replace(b"+", b"")
    if b"%" in value:
        value = (
            value.replace(b"%2B", b"+")
            .replace(b"%2F", b"/")
            .replace(b"%3D", b"=")
            .replace(b"%2b", b"+")
            .replace(b"%2f", b"/")
            .replace(b"%3d", b"=")
        )
        if b"%" in value:
            value = urllib.parse.unquote_to_bytes(value)
    return value


def unescape_general(value: bytes) -> bytes:
    return urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))


def unescape_unquote(value: bytes) -> bytes:
    """'+' (a space) dropped, then one pass of unquote_to_bytes: it splits on '%' with memchr,
    where each multi-byte bytes.replace scans the whole 10 KB again (about 9 µs apiece here)."""
    if b"+" in value:
        value = value.replace(b"+", b"")
    return urllib.parse.unquote_to_bytes(value) if b"%" in value else value


# ---- 3. XML --------------------------------------------------------------------------------


class _Found(Exception):
    pass


class _Forbidden(Exception):
    pass


def _forbid(*_: Any) -> None:
    raise _Forbidden("DTD/entities forbidden")


def _new_parser() -> Any:
    p = expat.ParserCreate(namespace_separator=" ")
    # No DOCTYPE at all: no internal entities (billion laughs), no external ones (XXE).
    p.StartDoctypeDeclHandler = _forbid
    p.EntityDeclHandler = _forbid
    p.UnparsedEntityDeclHandler = _forbid
    p.ExternalEntityRefHandler = _forbid
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return p


def saml_facts_expat(xml: bytes) -> dict[str, str]:
    """Destination, first Issuer, first Audience; stops parsing at the end of that Audience."""
    facts: dict[str, str] = {}
    text: list[str] = []
    capture = [False]

    def start(name: str, attrs: dict[str, str]) -> None:
        if not facts and "Destination" in attrs:
            facts["destination"] = attrs["Destination"]
        if name == AUDIENCE or (name == ISSUER and "issuer" not in facts):
            capture[0] = True
            text.clear()

    def data(chunk: str) -> None:
        if capture[0]:
            text.append(chunk)

    def end(name: str) -> None:
        if capture[0]:
            capture[0] = False
            if name == AUDIENCE:
                facts["audience"] = "".join(text).strip()
                raise _Found
            facts["issuer"] = "".join(text).strip()

    p = _new_parser()
    p.StartElementHandler = start
    p.CharacterDataHandler = data
    p.EndElementHandler = end
    try:
        p.Parse(xml, True)
    except _Found:
        pass
    except (_Forbidden, expat.ExpatError):
        return {}
    return facts


def saml_facts_expat_plain(xml: bytes) -> dict[str, str]:
    """No namespace processing (local names by suffix), the root's attributes read once, and
    the character-data handler installed only while inside Issuer/Audience."""
    facts: dict[str, str] = {}
    text: list[str] = []
    p = _new_parser_plain()

    def first(name: str, attrs: dict[str, str]) -> None:
        dest = attrs.get("Destination")
        if dest is not None:
            facts["destination"] = dest
        p.StartElementHandler = start

    def start(name: str, attrs: dict[str, str]) -> None:
        if name.endswith("Audience") or (name.endswith("Issuer") and "issuer" not in facts):
            text.clear()
            p.CharacterDataHandler = text.append

    def end(name: str) -> None:
        if p.CharacterDataHandler is not None:
            p.CharacterDataHandler = None
            if name.endswith("Audience") and (len(name) == 8 or name[-9] == ":"):
                facts["audience"] = "".join(text).strip()
                raise _Found
            if name.endswith("Issuer") and (len(name) == 6 or name[-7] == ":"):
                facts["issuer"] = "".join(text).strip()

    p.StartElementHandler = first
    p.EndElementHandler = end
    try:
        p.Parse(xml, True)
    except _Found:
        pass
    except (_Forbidden, expat.ExpatError):
        return {}
    return facts


def _new_parser_plain() -> Any:
    p = expat.ParserCreate()
    p.StartDoctypeDeclHandler = _forbid
    p.EntityDeclHandler = _forbid
    p.UnparsedEntityDeclHandler = _forbid
    p.ExternalEntityRefHandler = _forbid
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.buffer_text = True
    return p


def saml_facts_expat_chunked(b64: bytes, chunk: int = 2048) -> dict[str, str]:
    """As above, decoding base64 chunk by chunk so the tail after the Audience is never decoded."""
    facts: dict[str, str] = {}
    text: list[str] = []
    capture = [False]

    def start(name: str, attrs: dict[str, str]) -> None:
        if not facts and "Destination" in attrs:
            facts["destination"] = attrs["Destination"]
        if name == AUDIENCE or (name == ISSUER and "issuer" not in facts):
            capture[0] = True
            text.clear()

    def data(c: str) -> None:
        if capture[0]:
            text.append(c)

    def end(name: str) -> None:
        if capture[0]:
            capture[0] = False
            if name == AUDIENCE:
                facts["audience"] = "".join(text).strip()
                raise _Found
            facts["issuer"] = "".join(text).strip()

    p = _new_parser()
    p.StartElementHandler = start
    p.CharacterDataHandler = data
    p.EndElementHandler = end
    # Chunks are cut at multiples of 4 characters; base64 with embedded whitespace (wrapped
    # lines) breaks that alignment, so such input is decoded whole.
    if b"\n" in b64 or b" " in b64 or b"\r" in b64:
        b64 = b64.translate(None, b" \r\n\t")
    try:
        n = len(b64)
        for i in range(0, n, chunk):
            p.Parse(binascii.a2b_base64(b64[i : i + chunk]), i + chunk >= n)
    except _Found:
        pass
    except (_Forbidden, expat.ExpatError, binascii.Error):
        return {}
    return facts


def saml_facts_expat_prefix(b64: bytes, first: int = 8192) -> dict[str, str]:
    """Lean expat (as ``saml_facts_expat_plain``) fed a decoded prefix first: the Audience of a real
    response sits in its first 6 KB, so the rest of the base64 is decoded only when it is not found
    there. Encoding forced to UTF-8 (a UTF-16 document cannot hide a DOCTYPE from the handlers)."""
    facts: dict[str, str] = {}
    text: list[str] = []
    p = expat.ParserCreate(encoding="utf-8")
    p.StartDoctypeDeclHandler = _forbid
    p.EntityDeclHandler = _forbid
    p.UnparsedEntityDeclHandler = _forbid
    p.ExternalEntityRefHandler = _forbid
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.buffer_text = True

    def root(name: str, attrs: dict[str, str]) -> None:
        dest = attrs.get("Destination")
        if dest is not None:
            facts["destination"] = dest
        p.StartElementHandler = start

    def start(name: str, attrs: dict[str, str]) -> None:
        if name.endswith("Audience") or (name.endswith("Issuer") and "issuer" not in facts):
            text.clear()
            p.CharacterDataHandler = text.append

    def end(name: str) -> None:
        if p.CharacterDataHandler is not None:
            p.CharacterDataHandler = None
            if name.endswith("Audience") and (len(name) == 8 or name[-9] == ":"):
                facts["audience"] = "".join(text).strip()
                raise _Found
            if name.endswith("Issuer") and (len(name) == 6 or name[-7] == ":"):
                facts["issuer"] = "".join(text).strip()

    p.StartElementHandler = root
    p.EndElementHandler = end
    try:
        if len(b64) > first and not (b"\n" in b64 or b"\r" in b64 or b" " in b64 or b"\t" in b64):
            p.Parse(binascii.a2b_base64(b64[:first]), False)
            p.Parse(binascii.a2b_base64(b64[first:]), True)
        else:
            p.Parse(binascii.a2b_base64(b64), True)
    except _Found:
        pass
    except (_Forbidden, expat.ExpatError, binascii.Error, ValueError):
        return {}
    return facts


_AUDIENCE_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Audience(?:\s[^>]*)?>([^<]*)</")


def saml_audience_scan(xml: bytes) -> dict[str, str]:
    """No parser at all: refuse any DOCTYPE, then the first <...Audience> text by regex. Cannot expand
    entities (it expands nothing) but is fooled by an Audience in a comment or CDATA; a routing hint
    only, since WorkOS and Auth0 verify the signed Audience themselves. Shown for scale."""
    if b"<!DOCTYPE" in xml or not xml.lstrip()[:1] == b"<":
        return {}
    m = _AUDIENCE_RE.search(xml)
    return {"audience": m.group(1).decode("utf-8", "replace").strip()} if m else {}


_WS = b" \t\r\n"
_AUDIENCE_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?Audience(?:[ \t\r\n][^>]*)?>([^<]*)</")
# Constructs before the Audience that a scan cannot read the way a parser does: comments, CDATA,
# processing instructions (after the XML declaration), DTDs; any of them -> the expat path.
_NOT_SCANNABLE = (b"<!--", b"<![CDATA[", b"<!DOCTYPE", b"<!ENTITY")


def decoded_chunks(raw: bytes, step: int = 4096) -> Any:
    """Decode a url-encoded base64 form value a slice at a time: (unquote, base64) per ``step``
    characters, so a reader that stops early never pays for the tail."""
    if b"+" in raw:
        raw = raw.replace(b"+", b"")  # a form-encoded space; base64 ignores whitespace
    n = len(raw)
    pending = b""
    i = 0
    while i < n:
        j = min(n, i + step)
        if j < n:
            k = raw.rfind(b"%", j - 2, j)  # never cut inside a %XX escape
            if k != -1:
                j = k
        piece = raw[i:j]
        if b"%" in piece:
            piece = urllib.parse.unquote_to_bytes(piece)
        if b"\n" in piece or b"\r" in piece or b" " in piece or b"\t" in piece:
            piece = piece.translate(None, _WS)  # wrapped base64 (some IdPs): keep 4-char quanta aligned
        piece = pending + piece
        cut = len(piece) if j >= n else len(piece) - len(piece) % 4
        pending = piece[cut:]
        i = j
        yield binascii.a2b_base64(piece[:cut])


def audience_scan_prefix(raw: bytes) -> str | None:
    """The first Audience, decoding only as much of the SAMLResponse as it takes and reading it
    with a tag scan; None when the scan cannot be trusted (then the caller uses expat on the whole).

    Safe: nothing is parsed or expanded (no DTD, no entities), a document with a DOCTYPE is never
    scanned. Exact for responses without comments, CDATA, PIs or entity references before the
    Audience (real IdP output); anything else goes to the parser path."""
    buf = b""
    for chunk in decoded_chunks(raw):
        start = max(0, len(buf) - 512)  # a tag cut by the chunk boundary is found on the next pass
        buf += chunk
        m = _AUDIENCE_TAG.search(buf, start)
        if m is None:
            continue
        head = buf[: m.end()]
        if any(bad in head for bad in _NOT_SCANNABLE) or head.find(b"<?", 2) != -1:
            return None
        text = m.group(1)
        if b"&" in text:
            return None
        try:
            return text.decode("utf-8").strip()
        except UnicodeDecodeError:
            return None
    return None


def pipe_scan_prefix_then_expat(body: bytes) -> str | None:
    v = field_slice(body)
    if v is None:
        return None
    found = audience_scan_prefix(v)
    if found is not None:
        return found
    return saml_facts_expat_plain(binascii.a2b_base64(unescape_unquote(v))).get("audience")


def saml_facts_defusedxml(xml: bytes) -> dict[str, str]:
    from defusedxml import ElementTree as DET

    try:
        root = DET.fromstring(xml)
    except Exception:
        return {}
    facts: dict[str, str] = {}
    if "Destination" in root.attrib:
        facts["destination"] = root.attrib["Destination"]
    issuer = root.find(f"{{{SAML_NS}}}Issuer")
    if issuer is not None and issuer.text:
        facts["issuer"] = issuer.text.strip()
    aud = root.find(f".//{{{SAML_NS}}}Audience")
    if aud is not None and aud.text:
        facts["audience"] = aud.text.strip()
    return facts


# ---- whole pipelines -----------------------------------------------------------------------


def pipe_parse_qs_defused(body: bytes) -> str | None:
    v = field_parse_qs(body)
    return saml_facts_defusedxml(base64.b64decode(v)).get("audience") if v else None


def pipe_parse_qs_expat(body: bytes) -> str | None:
    v = field_parse_qs(body)
    return saml_facts_expat(base64.b64decode(v)).get("audience") if v else None


def pipe_slice_defused(body: bytes) -> str | None:
    v = field_slice(body)
    return saml_facts_defusedxml(binascii.a2b_base64(unescape_b64(v))).get("audience") if v else None


def pipe_slice_expat(body: bytes) -> str | None:
    v = field_slice(body)
    return saml_facts_expat(binascii.a2b_base64(unescape_b64(v))).get("audience") if v else None


def pipe_slice_unquote_expat(body: bytes) -> str | None:
    v = field_slice(body)
    return saml_facts_expat(binascii.a2b_base64(unescape_unquote(v))).get("audience") if v else None


def pipe_slice_unquote_expat_plain(body: bytes) -> str | None:
    v = field_slice(body)
    return saml_facts_expat_plain(binascii.a2b_base64(unescape_unquote(v))).get("audience") if v else None


def pipe_slice_unquote_prefix(body: bytes) -> str | None:
    v = field_slice(body)
    return saml_facts_expat_prefix(unescape_unquote(v)).get("audience") if v else None


def pipe_slice_unquote_scan(body: bytes) -> str | None:
    v = field_slice(body)
    return saml_audience_scan(binascii.a2b_base64(unescape_unquote(v))).get("audience") if v else None


def pipe_slice_expat_chunked(body: bytes) -> str | None:
    v = field_slice(body)
    return saml_facts_expat_chunked(unescape_b64(v)).get("audience") if v else None


# ---- timing --------------------------------------------------------------------------------


def bench(fn: Callable[[], Any], number: int, repeat: int = 7) -> tuple[float, float]:
    """(best, median) microseconds per call."""
    runs = [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=repeat)]
    return min(runs), statistics.median(runs)


XXE = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<r xmlns="urn:oasis:names:tc:SAML:2.0:assertion"><Audience>&x;</Audience></r>'
)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b']><r xmlns="urn:oasis:names:tc:SAML:2.0:assertion"><Audience>&lol9;</Audience></r>'
)


def service_candidates(body: bytes) -> list[tuple[str, Callable[[], Any]]]:
    """Timed calls into the service's own ``proxy.routing.callback`` (skipped when absent or renamed)."""
    try:
        from proxy.routing import callback as cb
    except Exception as exc:  # not written yet
        print(f"# proxy.routing.callback not importable yet ({exc.__class__.__name__}: {exc})")
        return []
    out: list[tuple[str, Callable[[], Any]]] = []
    raw = field_slice(body)
    assert raw is not None
    xml = binascii.a2b_base64(unescape_general(raw))
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("svc   callback.form_field", lambda: cb.form_field(body, b"SAMLResponse")),
        ("svc   callback.unescape_base64_field", lambda: cb.unescape_base64_field(raw)),
        ("svc   callback.read_saml_xml", lambda: cb.read_saml_xml(xml)),
        (
            "svc   callback.read_saml (the parser path)",
            lambda: cb.read_saml(cb.Callback(query=b"", body=body, form=True)),
        ),
    ]
    try:
        from proxy.routing import decide as dc
        from proxy.routing.routemap import parse_routemap

        route_map = parse_routemap(
            "version: 1\nconnections:\n  acme-okta:\n    protocol: saml\n    state: workos\n"
            "    audiences: [urn:auth0:globex-prod:acme-okta]\n"
        )
        callback = cb.Callback(query=b"", body=body, form=True)
        if getattr(dc.identify(callback, route_map), "connection", None) != "acme-okta":
            print("# decide.identify: wrong answer")
        calls.append(
            (
                "svc   decide.identify, form body to connection (60 µs budget)",
                lambda: dc.identify(cb.Callback(query=b"", body=body, form=True), route_map),  # fresh: it keeps reads
            )
        )
    except Exception as exc:
        print(f"# decide.identify: skipped ({exc.__class__.__name__}: {exc})")
    for name, fn in calls:
        try:
            got = fn()
        except Exception as exc:
            print(f"# {name}: skipped ({exc.__class__.__name__}: {exc})")
            continue
        if name.endswith("path)") or name.endswith("read_saml_xml"):
            audiences = getattr(got, "audiences", ())
            if EXPECTED not in audiences:
                print(f"# {name}: wrong answer {got!r}")
        out.append((name, fn))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=2000)
    args = ap.parse_args(argv)
    body = saml_form_body("acme-okta")
    value = field_slice(body)
    assert value is not None
    b64 = unescape_b64(value)
    xml = binascii.a2b_base64(b64)
    assert field_parse_qs(body) == b64.replace(b"+", b"+")
    print(
        f"# form body {len(body)} bytes, base64 {len(b64)}, XML {len(xml)}; "
        f"Audience at XML offset {xml.find(b'Audience>')}"
    )

    try:
        import defusedxml  # noqa: F401

        have_defused = True
    except ImportError:
        have_defused = False
    safety = [("expat", saml_facts_expat), ("expat-plain", saml_facts_expat_plain)]
    if have_defused:
        safety.append(("defusedxml", saml_facts_defusedxml))
    for name, fn in safety:
        for label, payload in (("XXE", XXE), ("billion laughs", LAUGHS)):
            got = fn(payload)
            assert "audience" not in got, (name, label, got)
    for payload in (XXE, LAUGHS, XXE.decode().encode("utf-16")):
        assert "audience" not in saml_facts_expat_prefix(base64.b64encode(payload))
        assert "audience" not in saml_facts_expat_chunked(base64.b64encode(payload))
        assert "audience" not in saml_audience_scan(payload)
    print(
        f"# safety: every expat variant (DOCTYPE refused){' and defusedxml' if have_defused else ''} refuse XXE and "
        "billion laughs"
    )

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("step  parse_qs(body)", lambda: urllib.parse.parse_qs(body.decode("latin-1"))),
        ("step  find-and-slice field", lambda: field_slice(body)),
        ("step  unescape base64 (6 x bytes.replace)", lambda: unescape_b64(value)),
        ("step  unescape (drop '+', unquote_to_bytes)", lambda: unescape_unquote(value)),
        ("step  a2b_base64 whole value", lambda: binascii.a2b_base64(b64)),
        ("step  a2b_base64 first 8192 chars", lambda: binascii.a2b_base64(b64[:8192])),
        ("step  defusedxml full parse", lambda: saml_facts_defusedxml(xml)),
        ("step  expat ns, stop at Audience", lambda: saml_facts_expat(xml)),
        ("step  expat no-ns lean handlers, stop", lambda: saml_facts_expat_plain(xml)),
        ("step  regex scan, no parser (for scale)", lambda: saml_audience_scan(xml)),
        ("pipe  parse_qs + b64 + defusedxml", lambda: pipe_parse_qs_defused(body)),
        ("pipe  parse_qs + b64 + expat", lambda: pipe_parse_qs_expat(body)),
        ("pipe  slice + replace x6 + b64 + expat-stop", lambda: pipe_slice_expat(body)),
        ("pipe  slice + unquote + b64 + expat-stop (ns)", lambda: pipe_slice_unquote_expat(body)),
        ("pipe  slice + unquote + b64 + expat(no ns, lean)", lambda: pipe_slice_unquote_expat_plain(body)),
        ("pipe  slice + unquote + prefix b64 + lean expat", lambda: pipe_slice_unquote_prefix(body)),
        ("pipe  slice + unquote + b64 + regex scan", lambda: pipe_slice_unquote_scan(body)),
        ("pipe  slice + chunked unquote/b64 + tag scan (expat fallback)", lambda: pipe_scan_prefix_then_expat(body)),
    ]
    if not have_defused:
        steps = [st for st in steps if "defusedxml" not in st[0]]
    for name, fn in steps:
        if name.startswith("pipe"):
            assert fn() == EXPECTED, name
    steps += service_candidates(body)
    print(f"{'candidate':<60} {'best µs':>9} {'median µs':>10}")
    for name, fn in steps:
        best, med = bench(fn, args.number)
        print(f"{name:<60} {best:>9.1f} {med:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
