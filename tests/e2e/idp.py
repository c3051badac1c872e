"""The customer's identity providers, built on real libraries nobody on this project wrote.

:class:`SamlIdp` wraps a pysaml2 ``Server`` (signing with ``xmlsec1``); :class:`OidcIdp` signs
id_tokens with joserfc. :func:`create_idp_app` serves both as the pages a browser meets: an
IdP-initiated SSO link, the HTTP-Redirect SSO endpoint for SP-initiated logins, and an OIDC
authorize endpoint answering with ``response_mode=form_post`` or a ``code`` redirect. Every SAML
or form_post answer is the auto-submitting HTML form real IdPs render.
"""

from __future__ import annotations

import base64
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode
from xml.sax.saxutils import quoteattr

from joserfc import jwt
from joserfc.jwk import RSAKey
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .pki import KeyPair

Signing = Literal["assertion", "response", "both"]
XMLSEC1 = "/usr/bin/xmlsec1"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"


@dataclass(frozen=True, slots=True)
class SamlSp:
    """An Auth0 SAML connection as the customer's IdP has it configured."""

    connection: str
    entity_id: str  # Auth0's default: urn:auth0:<tenant>:<connection>
    acs_urls: tuple[str, ...]  # first: IdP-initiated (?connection=), then the bare callback


@dataclass(frozen=True, slots=True)
class User:
    email: str = "wile.e.coyote@customer.test"
    given_name: str = "Wile"
    surname: str = "Coyote"

    def identity(self) -> dict[str, list[str]]:
        return {"mail": [self.email], "givenName": [self.given_name], "sn": [self.surname]}


def sp_metadata(sp: SamlSp) -> str:
    """SAML metadata for one Auth0 connection (what the IdP admin uploaded)."""
    acs = "".join(
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location={quoteattr(url)} index="{i}"/>'
        for i, url in enumerate(sp.acs_urls)
    )
    return (
        f'<md:EntityDescriptor xmlns:md="{MD}" entityID={quoteattr(sp.entity_id)}>'
        f'<md:SPSSODescriptor protocolSupportEnumeration="{PROTOCOL}" AuthnRequestsSigned="false" '
        f'WantAssertionsSigned="true">{acs}</md:SPSSODescriptor></md:EntityDescriptor>'
    )


class SamlIdp:
    """One SAML IdP (one entity ID and signing key) serving several Auth0 connections."""

    def __init__(self, entity_id: str, sso_url: str, keys: KeyPair, sps: list[SamlSp]) -> None:
        self.entity_id = entity_id
        self.sso_url = sso_url
        self.keys = keys
        self.sps = {sp.connection: sp for sp in sps}
        config = IdPConfig()
        config.load(
            {
                "entityid": entity_id,
                "service": {
                    "idp": {
                        "name": "Customer IdP",
                        "endpoints": {"single_sign_on_service": [(sso_url, BINDING_HTTP_REDIRECT)]},
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 15},
                                "attribute_restrictions": None,
                                "name_form": NAME_FORMAT_URI,
                            }
                        },
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    }
                },
                "key_file": str(keys.key_file),
                "cert_file": str(keys.cert_file),
                "xmlsec_binary": XMLSEC1,
                "metadata": {"inline": [sp_metadata(sp) for sp in sps]},
                "allow_unknown_attributes": True,
            }
        )
        self.server = Server(config=config)
        self.issued: list[str] = []  # every SAMLResponse handed to a browser, newest last

    def metadata(self) -> str:
        """This IdP's metadata, the signing certificate included (what the SP trusts)."""
        return (
            f'<md:EntityDescriptor xmlns:md="{MD}" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            f"entityID={quoteattr(self.entity_id)}>"
            f'<md:IDPSSODescriptor protocolSupportEnumeration="{PROTOCOL}">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f"{self.keys.cert_base64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
            "</md:KeyDescriptor>"
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" '
            f"Location={quoteattr(self.sso_url)}/>"
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    def issue(
        self,
        connection: str,
        *,
        destination: str,
        in_response_to: str | None = None,
        signing: Signing = "both",
        user: User | None = None,
    ) -> str:
        """A signed ``<samlp:Response>`` for ``connection``, base64-encoded as the POST binding sends it."""
        user = user or User()
        sp = self.sps[connection]
        response = self.server.create_authn_response(
            user.identity(),
            in_response_to,
            destination,
            sp.entity_id,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=user.email),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_response=signing in ("response", "both"),
            sign_assertion=signing in ("assertion", "both"),
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        xml = str(response)
        if "urn:oasis:names:tc:SAML:2.0:status:Success" not in xml:
            raise RuntimeError(f"pysaml2 did not issue a successful response: {xml[:500]}")
        encoded = base64.b64encode(xml.encode()).decode()
        self.issued.append(encoded)
        return encoded

    def parse_request(self, saml_request: str, binding: str = BINDING_HTTP_REDIRECT) -> tuple[str, str, str]:
        """An AuthnRequest (HTTP-Redirect or HTTP-POST binding) -> (request ID, SP entity ID, ACS URL)."""
        request = self.server.parse_authn_request(saml_request, binding).message
        return request.id, request.issuer.text, request.assertion_consumer_service_url


@dataclass(slots=True)
class OidcIdp:
    """An OIDC provider that signs id_tokens (RS256) and remembers the codes it issued."""

    issuer: str
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "e2e"}))
    codes: dict[str, str] = field(default_factory=dict)  # code -> client_id
    issued: list[str] = field(default_factory=list)  # every id_token handed to a browser, newest last
    # Ask the user to sign in first (OIDC authorize, SAML HTTP-POST binding): a page with a button
    # that sends the same request on, as a real IdP's login page does; a tab can wait there.
    prompt: bool = False

    def id_token(self, client_id: str, *, nonce: str | None = None, user: User | None = None) -> str:
        user = user or User()
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.email,
            "aud": client_id,
            "iat": now,
            "exp": now + 300,
            "email": user.email,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "RS256", "kid": "e2e"}, claims, self.key)

    def verify(self, token: str, client_id: str) -> dict[str, Any]:
        """The claims of a token this IdP signed for ``client_id``; raises if the signature fails."""
        public = RSAKey.import_key(self.key.as_dict(private=False))
        decoded = jwt.decode(token, public, algorithms=["RS256"])
        claims = dict(decoded.claims)
        if claims.get("aud") != client_id or claims.get("iss") != self.issuer:
            raise ValueError(f"unexpected aud/iss: {claims.get('aud')!r} {claims.get('iss')!r}")
        return claims


def auto_post_form(action: str, fields: dict[str, str], title: str) -> HTMLResponse:
    """The auto-submitting POST form IdPs render for the HTTP-POST binding and form_post."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>' for k, v in fields.items()
    )
    return HTMLResponse(
        "<!doctype html><html><head><title>"
        + html.escape(title)
        + '</title></head><body onload="document.forms[0].submit()">'
        + f'<form method="post" action="{html.escape(action)}">{inputs}'
        + '<noscript><button type="submit">Continue</button></noscript></form></body></html>'
    )


def sign_in_page(method: str, action: str, fields: dict[str, str]) -> HTMLResponse:
    """An IdP's login page: nothing happens until the user presses "Sign in", which sends the
    request it answers on with ``signed_in=1``."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
        for k, v in {**fields, "signed_in": "1"}.items()
    )
    return HTMLResponse(
        f'<!doctype html><html><head><title>Sign in</title></head><body><form method="{method}" '
        f'action="{html.escape(action)}">{inputs}<button id="sign-in" type="submit">Sign in</button>'
        "</form></body></html>"
    )


def create_idp_app(saml_idps: dict[str, SamlIdp], oidc: OidcIdp) -> Starlette:
    """The IdP's web pages.

    - ``GET /{tenant}/metadata``: SAML metadata.
    - ``GET /{tenant}/sso/init?connection=&acs=&RelayState=&signing=``: IdP-initiated login.
    - ``GET /{tenant}/sso/redirect?SAMLRequest=&RelayState=&signing=``: SP-initiated login.
    - ``POST /{tenant}/sso/post`` (form ``SAMLRequest``, ``RelayState``): SP-initiated, HTTP-POST binding.
    - ``GET /oidc/authorize?client_id=&redirect_uri=&state=&nonce=&response_type=``: ``id_token``
      answers with a form_post, ``code`` with a 302 carrying ``code`` and ``state``.
    """

    def tenant(request: Request) -> SamlIdp:
        return saml_idps[request.path_params["tenant"]]

    async def metadata(request: Request) -> Response:
        return Response(tenant(request).metadata(), media_type="application/samlmetadata+xml")

    async def idp_initiated(request: Request) -> Response:
        idp = tenant(request)
        q = request.query_params
        connection = q["connection"]
        acs = q.get("acs") or idp.sps[connection].acs_urls[0]
        signing: Signing = q.get("signing", "both")  # type: ignore[assignment]
        fields = {"SAMLResponse": idp.issue(connection, destination=acs, signing=signing)}
        if "RelayState" in q:
            fields["RelayState"] = q["RelayState"]
        return auto_post_form(acs, fields, "Signing you in")

    async def sp_initiated(request: Request) -> Response:
        idp = tenant(request)
        q = request.query_params
        request_id, sp_entity_id, acs = idp.parse_request(q["SAMLRequest"])
        connection = next(sp.connection for sp in idp.sps.values() if sp.entity_id == sp_entity_id)
        signing: Signing = q.get("signing", "both")  # type: ignore[assignment]
        fields = {"SAMLResponse": idp.issue(connection, destination=acs, in_response_to=request_id, signing=signing)}
        if "RelayState" in q:
            fields["RelayState"] = q["RelayState"]
        return auto_post_form(acs, fields, "Signing you in")

    async def sp_initiated_post(request: Request) -> Response:
        """The HTTP-POST binding: the SP's auto-post page sent the AuthnRequest in a form."""
        idp = tenant(request)
        fields = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if oidc.prompt and "signed_in" not in fields:
            return sign_in_page("post", request.url.path, fields)
        request_id, sp_entity_id, acs = idp.parse_request(fields["SAMLRequest"], BINDING_HTTP_POST)
        connection = next(sp.connection for sp in idp.sps.values() if sp.entity_id == sp_entity_id)
        answer = {"SAMLResponse": idp.issue(connection, destination=acs, in_response_to=request_id)}
        if "RelayState" in fields:
            answer["RelayState"] = fields["RelayState"]
        return auto_post_form(acs, answer, "Signing you in")

    async def authorize(request: Request) -> Response:
        q = request.query_params
        if oidc.prompt and "signed_in" not in q:
            return sign_in_page("get", request.url.path, dict(q))
        client_id, redirect_uri, state = q["client_id"], q["redirect_uri"], q["state"]
        if q.get("response_type", "code") == "code":
            code = secrets.token_urlsafe(16)
            oidc.codes[code] = client_id
            return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}", 302)
        token = oidc.id_token(client_id, nonce=q.get("nonce"))
        oidc.issued.append(token)
        return auto_post_form(redirect_uri, {"id_token": token, "state": state}, "Signing you in")

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/healthz", health),
            Route("/oidc/authorize", authorize),
            Route("/{tenant}/metadata", metadata),
            Route("/{tenant}/sso/init", idp_initiated),
            Route("/{tenant}/sso/redirect", sp_initiated),
            Route("/{tenant}/sso/post", sp_initiated_post, methods=["POST"]),
        ]
    )
