"""What every stand-in shares: it records what it receives, starts logins at an upstream IdP as the
service it stands in for does, and tells its own transactions from others'.

Each stand-in lists what it received at ``GET /_standin/requests`` (``DELETE`` clears), so a test can
check what arrived.
"""

from __future__ import annotations

import base64
import html
import secrets
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlencode
from xml.sax.saxutils import quoteattr

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from proxy.routing.callback import Callback, form_field, in_response_to, saml_document, transaction_values


def recorder() -> tuple[list[dict[str, Any]], list[Route]]:
    received: list[dict[str, Any]] = []

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            received.clear()
            return Response(status_code=204)
        return JSONResponse(received)

    return received, [Route("/_standin/requests", requests, methods=["GET", "DELETE"])]


async def record(received: list[dict[str, Any]], request: Request) -> bytes:
    body = await request.body()
    received.append(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]],
            "body_b64": base64.b64encode(body).decode(),
        }
    )
    return body


def is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded")


@dataclass(frozen=True, slots=True)
class UpstreamIdp:
    """How a stand-in sends a browser to one connection's identity provider."""

    protocol: str  # oidc | saml
    url: str  # the IdP's authorize (OIDC) or SSO (SAML) endpoint
    binding: str = "redirect"  # SAML: redirect (HTTP-Redirect, a 302) | post (HTTP-POST, an auto-post page)
    client_id: str = "auth0-standin-client"  # OIDC: the client the IdP knows
    response_type: str = "code"  # OIDC: code (back channel) | id_token (front channel, response_mode=form_post)
    entity_id: str | None = None  # SAML: the SP entity ID the IdP knows (default urn:auth0:<tenant>:<connection>)


def authn_request(request_id: str, acs_url: str, issuer: str) -> bytes:
    """A minimal SAML 2.0 AuthnRequest as Auth0 sends it (SAML core section 3.4.1)."""
    instant = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'ID="{request_id}" Version="2.0" IssueInstant="{instant}" '
        f"AssertionConsumerServiceURL={quoteattr(acs_url)} "
        'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST">'
        f'<saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">{html.escape(issuer)}</saml:Issuer>'
        "</samlp:AuthnRequest>"
    ).encode()


# The forms of state a stand-in issues: ``auth0`` (Auth0's own, see proxy/routing/auth0state.py),
# ``opaque`` (random base64url: another form, as WorkOS issues, or Auth0 after a format change).
STATE_FORMS = ("auth0", "opaque")


def _str(value: bytes) -> bytes:
    """A MessagePack str header and ``value`` (fixstr up to 31 bytes, else str8)."""
    return (bytes((0xA0 | len(value),)) if len(value) < 32 else b"\xd9" + bytes((len(value),))) + value


def pack_map(pairs: list[tuple[str, str]]) -> bytes:
    """A MessagePack map of short strings (fixmap), as Auth0 packs its transaction state."""
    out = bytes((0x80 | len(pairs),))
    for key, value in pairs:
        out += _str(key.encode()) + _str(value.encode())
    return out


def auth0_state(name: str | None = "login", client_id: str | None = None) -> str:
    """A state of Auth0's form: base64url of {h, [n,] tid, cid}, each id 32 characters."""
    ident = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32))
    pairs = [("h", secrets.token_urlsafe(24)), ("tid", secrets.token_urlsafe(24)), ("cid", client_id or ident)]
    if name is not None:
        pairs.insert(1, ("n", name))
    return base64.urlsafe_b64encode(pack_map(pairs)).rstrip(b"=").decode()


def issue_state(form: str) -> str:
    """A fresh state of ``form`` (one of :data:`STATE_FORMS`)."""
    return auth0_state() if form == "auth0" else secrets.token_urlsafe(24)


def start_login(
    connection: str, idp: UpstreamIdp, public_origin: str, tenant: str = "standin", state_form: str = "opaque"
) -> tuple[Response, tuple[str, ...]]:
    """The response sending the browser to ``idp`` for ``connection``, and the values it issued
    (OIDC: state; SAML: RelayState and the AuthnRequest ID); the state is of ``state_form``."""
    callback = f"{public_origin}/login/callback"
    state = issue_state(state_form)
    if idp.protocol == "oidc":
        query = {
            "client_id": idp.client_id,
            "response_type": idp.response_type,
            "redirect_uri": callback,
            "scope": "openid email profile",
            "state": state,
        }
        if idp.response_type != "code":
            query |= {"response_mode": "form_post", "nonce": secrets.token_urlsafe(12)}
        return RedirectResponse(f"{idp.url}?{urlencode(query)}", status_code=302), (state,)
    request_id = "_" + secrets.token_hex(16)
    xml = authn_request(request_id, callback, idp.entity_id or f"urn:auth0:{tenant}:{connection}")
    if idp.binding == "post":
        fields = {"SAMLRequest": base64.b64encode(xml).decode(), "RelayState": state}
        inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}"/>' for k, v in fields.items())
        page = (
            "<!DOCTYPE html><html><head><title>Submit this form</title></head>"
            '<body onload="document.forms[0].submit()">'
            f'<form method="post" action="{html.escape(idp.url)}">{inputs}'
            '<noscript><input type="submit" value="Submit"/></noscript></form></body></html>'
        )
        return HTMLResponse(page), (state, request_id)
    deflated = zlib.compress(xml)[2:-4]  # raw DEFLATE (SAML bindings section 3.4.4.1)
    query = {"SAMLRequest": base64.b64encode(deflated).decode(), "RelayState": state}
    return RedirectResponse(f"{idp.url}?{urlencode(query)}", status_code=302), (state, request_id)


class Transactions:
    """The logins one service started (state, RelayState, AuthnRequest ID), each usable once.

    A callback is this service's when one of its values was issued here; a SAML response without
    ``InResponseTo`` is IdP-initiated (nobody started it). Mutated only on the stand-in's own loop.
    """

    def __init__(self) -> None:
        self._issued: dict[str, tuple[str, ...]] = {}

    def issue(self, values: tuple[str, ...]) -> None:
        for value in values:
            self._issued[value] = values

    def __contains__(self, value: object) -> bool:
        return value in self._issued

    def values(self) -> list[str]:
        return sorted(self._issued)

    def claim(self, cb: Callback) -> str:
        """``issued`` (one of its values was issued here; now used), ``idp_initiated`` (a SAML
        response answering no request), or ``foreign`` (someone else started it)."""
        xml = saml_document(cb)
        reply_to = in_response_to(xml) if xml else None
        candidates = [value for _, value in transaction_values(cb)]
        wctx = form_field(cb.body, b"wctx") if cb.form else None
        if wctx is not None:
            candidates.append(unquote_plus(wctx.decode("latin-1")))
        if reply_to is not None:
            candidates.append(reply_to)
        for value in candidates:
            if value in self._issued:
                for used in self._issued[value]:
                    self._issued.pop(used, None)
                return "issued"
        return "idp_initiated" if xml is not None and reply_to is None else "foreign"
