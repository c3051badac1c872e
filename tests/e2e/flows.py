"""Starting a login the way each party starts it, and reading what the receiving ends got."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from .idp import Signing
from .saml_sp import Validated, validate
from .servers import Recorded
from .world import Idps, Stack

# What a RelayState really carries (an URL with its own query, escapes, non-ASCII): any re-encoding shows.
RELAY_STATE = "https://app.globex.test/after-login?tab=billing&q=a+b%20c/==&name=caf\u00e9-\u2713"


@dataclass(frozen=True, slots=True)
class Start:
    """Where the browser starts a SAML login, and what the SP expects back."""

    url: str
    connection: str
    acs: str
    signing: Signing
    request_id: str | None  # SP-initiated: the AuthnRequest ID the response must answer
    relay_state: str = RELAY_STATE  # what the response must carry back


def idp_initiated(idps: Idps, stack: Stack, connection: str, signing: Signing, query: str = "") -> Start:
    """The IdP's dashboard link: the ACS URL names the connection (``?connection=``)."""
    acs = f"{stack.login}/login/callback?connection={connection}{query}"
    params = {"connection": connection, "acs": acs, "RelayState": RELAY_STATE, "signing": signing}
    url = f"{idps.origin}/{idps.tenant_of(connection)}/sso/init?{urlencode(params)}"
    return Start(url, connection, acs, signing, None)


def sp_initiated(idps: Idps, stack: Stack, connection: str, signing: Signing, at: str = "auth0") -> Start:
    """A login the app starts at Auth0 (``/authorize?connection=`` through the proxy) or at WorkOS
    (its own authorize endpoint): the starter sends the browser to the IdP with an AuthnRequest and
    a RelayState it issued, and accepts only an answer to them. The answer names no connection."""
    import base64
    import re
    import zlib

    if at == "auth0":
        query = urlencode({"client_id": "globex-web", "response_type": "code", "connection": connection})
        status, _, location = http_location(f"http://127.0.0.1:{stack.proxy.port}/authorize?{query}",
                                            {"Host": stack.login.removeprefix("http://")})  # fmt: skip
    else:
        status, _, location = http_location(f"{stack.workos.origin}/sso/authorize?connection={connection}", {})
    assert status == 302, (status, location)
    params = parse_qs(location.split("?", 1)[1])
    xml = zlib.decompress(base64.b64decode(params["SAMLRequest"][0]), -15).decode()
    request_id = re.search(r' ID="([^"]+)"', xml).group(1)  # type: ignore[union-attr]
    acs = f"{stack.login}/login/callback"
    return Start(f"{location}&{urlencode({'signing': signing})}", connection, acs, signing, request_id,
                 params["RelayState"][0])  # fmt: skip


def http_location(url: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
    """One GET without following redirects: (status, body, Location)."""
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return int(response.status), bytes(response.read()), response.headers.get("location", "")
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read()), exc.headers.get("location", "")


def form(recorded: Recorded) -> dict[str, list[str]]:
    assert (recorded.header("content-type") or "").startswith("application/x-www-form-urlencoded")
    return parse_qs(recorded.body.decode(), keep_blank_values=True)


def check_saml_arrived(recorded: Recorded, idps: Idps, start: Start) -> Validated:
    """The POST that reached a receiving end carries the IdP's response, unchanged and verifiable."""
    assert recorded.method == "POST"
    fields = form(recorded)
    idp = idps.for_connection(start.connection)
    assert fields["SAMLResponse"] == [idp.issued[-1]], "SAMLResponse differs from what the IdP issued"
    assert fields["RelayState"] == [start.relay_state]
    validated = validate(
        fields["SAMLResponse"][0], idp, idp.sps[start.connection], start.signing, request_id=start.request_id
    )
    assert validated.issuer == idp.entity_id
    assert validated.in_response_to == start.request_id
    return validated
