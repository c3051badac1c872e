"""The routing decision: a pure function of a parsed callback and the route map in force.

Hints are tried in a fixed order and the body is only read when the query did not already name a
mapped connection. An identifier that two connections claim is not in the map's index, so it never
decides: the next hint is tried, else the callback is unknown.
"""

from __future__ import annotations

from typing import NamedTuple

from proxy.routing.callback import (
    Callback,
    guess_protocol,
    is_auth0_only,
    is_fallback,
    named_connection,
    query_value,
    read_oidc,
    read_saml_xml,
    saml_document,
    scan_audience,
)
from proxy.routing.routemap import RouteMap

AUTH0 = "auth0"
WORKOS = "workos"


# NamedTuples, not frozen dataclasses: two are made per callback, and a frozen dataclass's
# __init__ (object.__setattr__ per field) costs about twice as much on this hot path.
class Identity(NamedTuple):
    """Which connection a callback belongs to, and how that was found."""

    connection: str | None
    identified_by: str  # query, saml_audience, saml_issuer, saml_destination, oidc_aud, oidc_iss, none
    hint: str | None = None  # the identifying value (never a secret: names, entity IDs, URLs)
    unparseable: bool = False  # a SAMLResponse or id_token was present but could not be read


class Decision(NamedTuple):
    """Where a callback goes and why."""

    action: str  # workos | auth0
    # mapped, unknown_default, fallback, auth0_only, auth0_transaction, auth0_state, kill_switch, shadow, unparseable
    reason: str
    identity: Identity
    protocol: str  # saml | oidc | unknown
    would: str | None = None  # in shadow mode, or for a connection in state shadow: what it would have done

    @property
    def connection(self) -> str | None:
        return self.identity.connection


def _audience_connection(audience: str, route_map: RouteMap) -> str | None:
    """Auth0's default SP entity ID is urn:auth0:<tenant>:<connection>."""
    found = route_map.lookup("audiences", audience)
    ambiguous = audience in route_map.ambiguous.get("audiences", {})
    if found is None and not ambiguous and audience.startswith("urn:auth0:"):
        name = audience.rsplit(":", 1)[1]
        if route_map.connection(name) is not None:
            return name
    return found


def _destination_connection(destination: str, route_map: RouteMap) -> str | None:
    found = route_map.lookup("acs_urls", destination)
    if found is None:
        _, _, rest = destination.partition("?")
        named = query_value(rest.partition("#")[0].encode("utf-8", "surrogatepass"), "connection")
        if named is not None and route_map.connection(named) is not None:
            return named
    return found


def identify(cb: Callback, route_map: RouteMap) -> Identity:
    """Try each hint in order; stop at the first that names exactly one mapped connection."""
    named = named_connection(cb)
    if named is not None and route_map.connection(named) is not None:
        return Identity(named, "query", named)
    unparseable = False
    xml = saml_document(cb)
    if xml is not None:
        audience = scan_audience(xml)  # fast path; the parser below reads everything else
        found = _audience_connection(audience, route_map) if audience is not None else None
        if audience is not None and found is not None:
            return Identity(found, "saml_audience", audience)
        saml = read_saml_xml(xml)
        unparseable = not saml.ok
        for audience in saml.audiences:
            found = _audience_connection(audience, route_map)
            if found is not None:
                return Identity(found, "saml_audience", audience)
        if saml.issuer is not None:
            found = route_map.lookup("issuers", saml.issuer)
            if found is not None:
                return Identity(found, "saml_issuer", saml.issuer)
        if saml.destination is not None:
            found = _destination_connection(saml.destination, route_map)
            if found is not None:
                return Identity(found, "saml_destination", saml.destination)
    else:
        oidc = read_oidc(cb)
        if oidc is not None:
            unparseable = not oidc.ok
            for audience in oidc.audiences:
                found = route_map.lookup("client_ids", audience)
                if found is not None:
                    return Identity(found, "oidc_aud", audience)
            if oidc.issuer is not None:
                found = route_map.lookup("issuers", oidc.issuer)
                if found is not None:
                    return Identity(found, "oidc_iss", oidc.issuer)
    return Identity(None, "none", named, unparseable)


NOT_BOUND: frozenset[str] = frozenset()


def decide(cb: Callback, route_map: RouteMap, bound: frozenset[str] = NOT_BOUND, auth0_state: bool = False) -> Decision:
    """fallback > Auth0-only callbacks > bound to an Auth0 transaction > Auth0's own state > kill
    switch > shadow mode > the connection's state (``shadow``: to Auth0, would be WorkOS) >
    defaults.unknown.

    ``bound`` names the callback's values (state, RelayState, InResponseTo) whose MAC the request's
    binding cookie holds: the login was started by Auth0 (proxy/routing/binding.py), so only Auth0 can
    finish it, whatever the connection's state. A forged or stale binding can only send a callback
    to Auth0, which checks its own state anyway.

    ``auth0_state``: the callback's state or RelayState is of the form of Auth0's own transaction
    state (proxy/routing/auth0state.py), the second witness, read when no cookie binds the callback
    (the cookie is gone: a fresh browser context, more logins than the cookies kept, a key
    rotation). Forging the form, too, only sends a callback to Auth0.
    """
    identity = identify(cb, route_map)
    conn = route_map.connection(identity.connection) if identity.connection else None
    protocol = conn.protocol if conn is not None else guess_protocol(cb)
    if is_fallback(cb.query):
        return Decision(AUTH0, "fallback", identity, protocol)
    if is_auth0_only(cb):
        return Decision(AUTH0, "auth0_only", identity, protocol)
    if bound:
        return Decision(AUTH0, "auth0_transaction", identity, protocol)
    if auth0_state:
        return Decision(AUTH0, "auth0_state", identity, protocol)
    if conn is not None:
        # A connection in shadow would go to WorkOS: that is what its shadow state counts.
        normal, reason = (AUTH0 if conn.state == "legacy" else WORKOS), "mapped"
    else:
        normal, reason = route_map.unknown, "unparseable" if identity.unparseable else "unknown_default"
    if route_map.mode == "auth0":
        return Decision(AUTH0, "kill_switch", identity, protocol)
    if route_map.mode == "shadow":
        return Decision(AUTH0, "shadow", identity, protocol, would=normal)
    if conn is not None and conn.state == "shadow":
        return Decision(AUTH0, "shadow", identity, protocol, would=WORKOS)
    return Decision(normal, reason, identity, protocol)
