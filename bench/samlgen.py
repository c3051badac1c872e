"""A realistic, signed-looking SAML 2.0 Response for benchmarks (not cryptographically signed).

Shape follows what Okta / Azure AD / ADFS post to an Auth0 ACS: a ``samlp:Response`` with
``Destination``, an ``Issuer``, ``Status``, and a signed ``Assertion`` (Okta's default): its
``ds:Signature`` (SignedInfo, a 2048-bit RSA SignatureValue, an X509Certificate), ``Subject``,
``Conditions/AudienceRestriction/Audience`` (``urn:auth0:<tenant>:<connection>``),
``AuthnStatement`` and an ``AttributeStatement`` with a group list. The Audience therefore sits
past the middle of the document, after the certificate, as it does in real responses. The
url-encoded form body is about 10 KB.

Deterministic (seeded) so every run posts the same bytes.

    python bench/samlgen.py --connection acme-okta --form > body.txt
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import urllib.parse

TENANT = "globex-prod"


def _b64(rng: random.Random, nbytes: int, wrap: int = 0) -> str:
    text = base64.b64encode(rng.randbytes(nbytes)).decode()
    if wrap:
        text = "\n".join(text[i : i + wrap] for i in range(0, len(text), wrap))
    return text


def _signature(rng: random.Random, ref: str) -> str:
    c14n = "http://www.w3.org/2001/10/xml-exc-c14n#"
    return (
        '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
        f'<ds:CanonicalizationMethod Algorithm="{c14n}"/>'
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        f'<ds:Reference URI="#{ref}"><ds:Transforms>'
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        f'<ds:Transform Algorithm="{c14n}"><ec:InclusiveNamespaces xmlns:ec="{c14n}" PrefixList="xs"/>'
        "</ds:Transform></ds:Transforms>"
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        f"<ds:DigestValue>{_b64(rng, 32)}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
        f"<ds:SignatureValue>{_b64(rng, 256, 76)}</ds:SignatureValue>"
        f"<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{_b64(rng, 1000, 76)}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo></ds:Signature>"
    )


def saml_response_xml(
    connection: str, tenant: str = TENANT, issuer: str | None = None, destination: str | None = None, seed: int = 7
) -> str:
    """The XML text of a Response addressed to ``urn:auth0:<tenant>:<connection>``."""
    rng = random.Random(seed)
    issuer = issuer or "http://www.okta.com/exk8f3k2AbCdEfGh0x7"
    destination = destination or f"https://login.globex.com/login/callback?connection={connection}"
    rid = "id" + rng.randbytes(16).hex()
    aid = "id" + rng.randbytes(16).hex()
    groups = "".join(
        f'<saml2:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">'
        f"app-{name}-users</saml2:AttributeValue>"
        for name in ("finance", "engineering", "sales", "support", "okta-admins", "vpn", "wiki", "jira")
    )

    def attr(name: str, value: str) -> str:
        return (
            f'<saml2:Attribute Name="{name}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:'
            f'unspecified"><saml2:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string">{value}'
            f"</saml2:AttributeValue></saml2:Attribute>"
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<saml2p:Response xmlns:saml2p="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'Destination="{destination}" ID="{rid}" InResponseTo="_a1b2c3d4e5f60718293a4b5c6d7e8f90" '
        f'IssueInstant="2026-11-28T08:50:12.345Z" Version="2.0" '
        f'xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'<saml2:Issuer xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{issuer}</saml2:Issuer>'
        f'<saml2p:Status><saml2p:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>'
        f"</saml2p:Status>"
        f'<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="{aid}" '
        f'IssueInstant="2026-11-28T08:50:12.345Z" Version="2.0" '
        f'xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        f'<saml2:Issuer Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{issuer}'
        f"</saml2:Issuer>"
        f"{_signature(rng, aid)}"
        f'<saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:'
        f'emailAddress">jane.doe@acme.example</saml2:NameID>'
        f'<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml2:SubjectConfirmationData InResponseTo="_a1b2c3d4e5f60718293a4b5c6d7e8f90" '
        f'NotOnOrAfter="2026-11-28T08:55:12.345Z" Recipient="{destination}"/>'
        f"</saml2:SubjectConfirmation></saml2:Subject>"
        f'<saml2:Conditions NotBefore="2026-11-28T08:45:12.345Z" '
        f'NotOnOrAfter="2026-11-28T08:55:12.345Z"><saml2:AudienceRestriction>'
        f"<saml2:Audience>urn:auth0:{tenant}:{connection}</saml2:Audience>"
        f"</saml2:AudienceRestriction></saml2:Conditions>"
        f'<saml2:AuthnStatement AuthnInstant="2026-11-28T08:50:11.900Z" '
        f'SessionIndex="_{rng.randbytes(12).hex()}"><saml2:AuthnContext><saml2:AuthnContextClassRef>'
        f"urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        f"</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement>"
        f"<saml2:AttributeStatement>"
        f"{attr('email', 'jane.doe@acme.example')}{attr('firstName', 'Jane')}"
        f"{attr('lastName', 'Doe')}{attr('department', 'Finance')}"
        f"{attr('employeeNumber', '004217')}{attr('manager', 'john.smith@acme.example')}"
        f'<saml2:Attribute Name="groups" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:'
        f'unspecified">{groups}</saml2:Attribute>'
        f"</saml2:AttributeStatement></saml2:Assertion></saml2p:Response>"
    )


def saml_form_body(connection: str, tenant: str = TENANT, relay_state: str | None = None, seed: int = 7) -> bytes:
    """``SAMLResponse=<base64, url-encoded>&RelayState=...`` as a browser posts it."""
    xml = saml_response_xml(connection, tenant, seed=seed).encode()
    fields = {"SAMLResponse": base64.b64encode(xml).decode()}
    fields["RelayState"] = relay_state if relay_state is not None else "/dashboard?tab=reports&x=1"
    return urllib.parse.urlencode(fields).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connection", default="acme-okta")
    parser.add_argument("--tenant", default=TENANT)
    parser.add_argument("--form", action="store_true", help="print the url-encoded form body")
    args = parser.parse_args(argv)
    if args.form:
        sys.stdout.buffer.write(saml_form_body(args.connection, args.tenant))
    else:
        sys.stdout.write(saml_response_xml(args.connection, args.tenant))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
