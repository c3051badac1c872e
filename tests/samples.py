"""Callback payloads for tests: SAML responses (POST and Redirect binding) and id_tokens.

These are structurally real (namespaces, Destination, Issuer, a Signature block, Conditions) but
unsigned; the end-to-end suite uses real signed ones from pysaml2.
"""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import quote, urlencode


def saml_xml(
    audience: str | None = "urn:auth0:globex-prod:acme-okta",
    issuer: str | None = "http://www.okta.com/acme",
    destination: str | None = "https://login.globex.com/login/callback",
    padding: int = 0,
) -> bytes:
    dest = f' Destination="{destination}"' if destination else ""
    iss = f"<saml2:Issuer>{issuer}</saml2:Issuer>" if issuer else ""
    aud = (
        f"<saml2:AudienceRestriction><saml2:Audience>{audience}</saml2:Audience></saml2:AudienceRestriction>"
        if audience
        else ""
    )
    pad = "A" * padding
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" ID="id1" Version="2.0"'
        f' IssueInstant="2026-11-28T08:00:00Z"{dest}>{iss}'
        '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignatureValue>'
        f"{pad}</ds:SignatureValue></ds:Signature>"
        '<saml2p:Status><saml2p:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></saml2p:Status>'
        '<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1" Version="2.0">'
        f"{iss}<saml2:Subject><saml2:NameID>user@example.com</saml2:NameID></saml2:Subject>"
        f'<saml2:Conditions NotBefore="2026-11-28T08:00:00Z">{aud}</saml2:Conditions>'
        "</saml2:Assertion></saml2p:Response>"
    ).encode()


def saml_b64(xml: bytes) -> str:
    return base64.b64encode(xml).decode()


def saml_form(xml: bytes, relay_state: str | None = "relay-123") -> str:
    fields = {"SAMLResponse": saml_b64(xml)}
    if relay_state is not None:
        fields["RelayState"] = relay_state
    return urlencode(fields)


def saml_redirect_query(xml: bytes) -> str:
    deflated = zlib.compress(xml)[2:-4]  # raw DEFLATE, as the Redirect binding sends it
    return "SAMLResponse=" + quote(base64.b64encode(deflated).decode(), safe="")


def id_token(payload: dict[str, object]) -> str:
    def seg(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([seg(b'{"alg":"RS256","typ":"JWT"}'), seg(json.dumps(payload).encode()), seg(b"signature")])


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" Destination="x">
<saml:Audience xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&xxe;</saml:Audience></samlp:Response>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">
<saml:Audience xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">&lol9;</saml:Audience></samlp:Response>"""
