"""The receiving end's check: a real SAML service provider (pysaml2, verifying with ``xmlsec1``).

WorkOS and Auth0 both validate the response they receive against the IdP's certificate. The
stand-ins record the raw bytes they got; :func:`validate` runs them through pysaml2's SP, so a
response the proxy altered in any signed part fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass

from saml2 import BINDING_HTTP_POST
from saml2.client import Saml2Client
from saml2.config import SPConfig

from .idp import XMLSEC1, SamlIdp, SamlSp, Signing


@dataclass(frozen=True, slots=True)
class Validated:
    """What a service provider learnt from a response whose signatures verified."""

    issuer: str
    audience: str
    name_id: str
    in_response_to: str | None
    attributes: dict[str, list[str]]


def service_provider(idp: SamlIdp, sp: SamlSp, signing: Signing, *, unsolicited: bool = True) -> Saml2Client:
    """An SP for ``sp`` trusting only ``idp``'s certificate, demanding the signatures issued."""
    config = SPConfig()
    config.load(
        {
            "entityid": sp.entity_id,
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(url, BINDING_HTTP_POST) for url in sp.acs_urls]},
                    "allow_unsolicited": unsolicited,
                    "want_response_signed": signing in ("response", "both"),
                    "want_assertions_signed": signing in ("assertion", "both"),
                    "want_assertions_or_response_signed": True,
                }
            },
            "metadata": {"inline": [idp.metadata()]},
            "xmlsec_binary": XMLSEC1,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=config)


def validate(
    saml_response: str,
    idp: SamlIdp,
    sp: SamlSp,
    signing: Signing,
    *,
    request_id: str | None = None,
) -> Validated:
    """Parse and verify a base64 ``SAMLResponse`` as ``sp`` would; raises when anything fails."""
    client = service_provider(idp, sp, signing, unsolicited=request_id is None)
    outstanding = {request_id: "/"} if request_id else None
    response = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding)
    if response is None:
        raise AssertionError("pysaml2 rejected the SAML response (destination, audience or status)")
    assertion = response.assertion
    return Validated(
        issuer=response.issuer(),
        audience=assertion.conditions.audience_restriction[0].audience[0].text,
        name_id=response.name_id.text,
        in_response_to=response.in_response_to,
        attributes=dict(response.ava),
    )
