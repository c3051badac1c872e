"""Starting a login the way each party starts it, and reading what the receiving ends got."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from .idp import Signing
from .saml_sp import Validated, service_provider, validate
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


def idp_initiated(idps: Idps, stack: Stack, connection: str, signing: Signing, query: str = "") -> Start:
    """The IdP's dashboard link: the ACS URL names the connection (``?connection=``)."""
    acs = f"{stack.login}/login/callback?connection={connection}{query}"
    params = {"connection": connection, "acs": acs, "RelayState": RELAY_STATE, "signing": signing}
    url = f"{idps.origin}/{idps.tenant_of(connection)}/sso/init?{urlencode(params)}"
    return Start(url, connection, acs, signing, None)


def sp_initiated(idps: Idps, stack: Stack, connection: str, signing: Signing) -> Start:
    """Auth0 sends the browser to the IdP with an AuthnRequest; the answer names no connection."""
    idp = idps.for_connection(connection)
    acs = f"{stack.login}/login/callback"
    client = service_provider(idp, idp.sps[connection], signing, unsolicited=False)
    request_id, info = client.prepare_for_authenticate(
        entityid=idp.entity_id, relay_state=RELAY_STATE, assertion_consumer_service_url=acs
    )
    location = dict(info["headers"])["Location"]
    return Start(f"{location}&{urlencode({'signing': signing})}", connection, acs, signing, request_id)


def form(recorded: Recorded) -> dict[str, list[str]]:
    assert (recorded.header("content-type") or "").startswith("application/x-www-form-urlencoded")
    return parse_qs(recorded.body.decode(), keep_blank_values=True)


def check_saml_arrived(recorded: Recorded, idps: Idps, start: Start) -> Validated:
    """The POST that reached a receiving end carries the IdP's response, unchanged and verifiable."""
    assert recorded.method == "POST"
    fields = form(recorded)
    idp = idps.for_connection(start.connection)
    assert fields["SAMLResponse"] == [idp.issued[-1]], "SAMLResponse differs from what the IdP issued"
    assert fields["RelayState"] == [RELAY_STATE]
    validated = validate(
        fields["SAMLResponse"][0], idp, idp.sps[start.connection], start.signing, request_id=start.request_id
    )
    assert validated.issuer == idp.entity_id
    assert validated.in_response_to == start.request_id
    return validated
