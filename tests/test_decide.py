"""The routing decision as tables: identification methods, then mode x fallback x state x unknown default."""

from __future__ import annotations

import itertools
from urllib.parse import quote, urlencode

import pytest

from proxy.routing.callback import Callback
from proxy.routing.decide import Decision, Identity, decide, identify
from proxy.routing.routemap import RouteMap, parse_routemap

from . import samples

ROUTES = """
version: 1
defaults: {unknown: workos, mode: normal}
connections:
  acme:
    protocol: saml
    state: workos
    audiences: [https://acme-sp.example.com]
    issuers: [http://acme-idp.example.com]
    acs_urls: [https://login.example.com/login/callback/acme]
  globex:
    protocol: saml
    state: legacy
    issuers: [http://globex-idp.example.com]
  shady:
    protocol: saml
    state: shadow
    issuers: [http://shady-idp.example.com]
  shared-one:
    protocol: saml
    state: workos
    audiences: [https://shared-sp.example.com]
    issuers: [http://shared-idp.example.com, http://one-idp.example.com]
    acs_urls: [https://shared-acs.example.com/callback]
  shared-two:
    protocol: saml
    state: legacy
    audiences: [https://shared-sp.example.com]
    issuers: [http://shared-idp.example.com]
    acs_urls: [https://shared-acs.example.com/callback, https://two-acs.example.com/callback]
  entra:
    protocol: oidc
    state: workos
    client_ids: [entra-client]
    issuers: [https://login.microsoftonline.com/entra/v2.0]
  google:
    protocol: oidc
    state: legacy
    client_ids: [google-client, shared-client]
  okta-oidc:
    protocol: oidc
    state: workos
    client_ids: [shared-client]
    issuers: [https://okta-oidc.example.com]
"""


def route_map(unknown: str = "workos", mode: str = "normal") -> RouteMap:
    text = ROUTES.replace("{unknown: workos, mode: normal}", f"{{unknown: {unknown}, mode: {mode}}}")
    return parse_routemap(text)


def saml_post(query: str = "", **xml: str | None) -> Callback:
    return Callback(query.encode(), samples.saml_form(samples.saml_xml(**xml)).encode(), True)


def saml_redirect(query: str = "", **xml: str | None) -> Callback:
    q = samples.saml_redirect_query(samples.saml_xml(**xml))
    return Callback(((query + "&") if query else "").encode() + q.encode())


def oidc_post(payload: dict[str, object], query: str = "") -> Callback:
    body = urlencode({"id_token": samples.id_token(payload), "state": "st"})
    return Callback(query.encode(), body.encode(), True)


NO_SAML = {"audience": None, "issuer": None, "destination": None}

# (callback, connection, identified_by, hint)
IDENTIFY_TABLE = [
    pytest.param(Callback(b"connection=acme"), "acme", "query", "acme", id="query"),
    pytest.param(Callback(b"x=1&connection=globex&connection=acme"), "globex", "query", "globex", id="query-first"),
    pytest.param(
        saml_post("connection=globex", audience="https://acme-sp.example.com"),
        "globex",
        "query",
        "globex",
        id="query-wins-over-body",
    ),
    pytest.param(
        saml_post("connection=nope", audience="https://acme-sp.example.com"),
        "acme",
        "saml_audience",
        "https://acme-sp.example.com",
        id="unknown-query-name-then-body",
    ),
    pytest.param(
        saml_post(audience="https://acme-sp.example.com", issuer="http://globex-idp.example.com"),
        "acme",
        "saml_audience",
        "https://acme-sp.example.com",
        id="audience-listed-before-issuer",
    ),
    pytest.param(
        saml_post(audience="urn:auth0:globex-prod:globex", issuer=None, destination=None),
        "globex",
        "saml_audience",
        "urn:auth0:globex-prod:globex",
        id="audience-auth0-urn",
    ),
    pytest.param(
        saml_post(audience="urn:auth0:globex-prod:nope", issuer="http://globex-idp.example.com"),
        "globex",
        "saml_issuer",
        "http://globex-idp.example.com",
        id="urn-of-unmapped-name-then-issuer",
    ),
    pytest.param(
        saml_post(audience="https://unknown-sp", issuer="http://globex-idp.example.com"),
        "globex",
        "saml_issuer",
        "http://globex-idp.example.com",
        id="issuer",
    ),
    pytest.param(
        saml_post(audience=None, issuer=None, destination="https://login.example.com/login/callback/acme"),
        "acme",
        "saml_destination",
        "https://login.example.com/login/callback/acme",
        id="destination-listed",
    ),
    pytest.param(
        saml_post(audience=None, issuer=None, destination="https://login.example.com/login/callback?connection=globex"),
        "globex",
        "saml_destination",
        "https://login.example.com/login/callback?connection=globex",
        id="destination-connection-param",
    ),
    pytest.param(
        saml_redirect(audience="https://acme-sp.example.com"),
        "acme",
        "saml_audience",
        "https://acme-sp.example.com",
        id="redirect-binding",
    ),
    # ambiguous identifiers are skipped and the next hint decides
    pytest.param(
        saml_post(audience="https://shared-sp.example.com", issuer="http://one-idp.example.com"),
        "shared-one",
        "saml_issuer",
        "http://one-idp.example.com",
        id="ambiguous-audience-then-issuer",
    ),
    pytest.param(
        saml_post(
            audience="https://shared-sp.example.com",
            issuer="http://shared-idp.example.com",
            destination="https://two-acs.example.com/callback",
        ),
        "shared-two",
        "saml_destination",
        "https://two-acs.example.com/callback",
        id="ambiguous-audience-and-issuer-then-destination",
    ),
    pytest.param(
        saml_post(
            audience="https://shared-sp.example.com",
            issuer="http://shared-idp.example.com",
            destination="https://shared-acs.example.com/callback",
        ),
        None,
        "none",
        None,
        id="all-ambiguous-unknown",
    ),
    pytest.param(oidc_post({"aud": "entra-client"}), "entra", "oidc_aud", "entra-client", id="oidc-aud"),
    pytest.param(
        oidc_post({"aud": ["other", "google-client"]}), "google", "oidc_aud", "google-client", id="oidc-aud-list"
    ),
    pytest.param(
        oidc_post({"aud": "unmapped", "iss": "https://login.microsoftonline.com/entra/v2.0"}),
        "entra",
        "oidc_iss",
        "https://login.microsoftonline.com/entra/v2.0",
        id="oidc-iss",
    ),
    pytest.param(
        oidc_post({"aud": "shared-client", "iss": "https://okta-oidc.example.com"}),
        "okta-oidc",
        "oidc_iss",
        "https://okta-oidc.example.com",
        id="oidc-ambiguous-aud-then-iss",
    ),
    pytest.param(oidc_post({"aud": "shared-client"}), None, "none", None, id="oidc-ambiguous-aud-only"),
    pytest.param(Callback(b"code=abc&state=xyz"), None, "none", None, id="oidc-code-no-identity"),
    pytest.param(Callback(b"connection=nope&code=abc"), None, "none", "nope", id="unmapped-query-name"),
    pytest.param(saml_post(audience="https://x", issuer="http://y", destination="https://z"), None, "none", None),
    pytest.param(Callback(), None, "none", None, id="empty"),
]


@pytest.mark.parametrize(("cb", "connection", "identified_by", "hint"), IDENTIFY_TABLE)
def test_identify(cb: Callback, connection: str | None, identified_by: str, hint: str | None) -> None:
    identity = identify(cb, route_map())
    assert (identity.connection, identity.identified_by, identity.hint) == (connection, identified_by, hint)
    assert identity.unparseable is False


@pytest.mark.parametrize(
    "cb",
    [
        pytest.param(Callback(b"", b"SAMLResponse=!!!!", True), id="saml-garbage"),
        pytest.param(Callback(b"", samples.saml_form(samples.XXE).encode(), True), id="xxe"),
        pytest.param(Callback(b"", samples.saml_form(samples.BILLION_LAUGHS).encode(), True), id="billion-laughs"),
        pytest.param(saml_post(**NO_SAML), id="saml-without-hints"),
        pytest.param(Callback(b"SAMLResponse=" + quote("bm90IGRlZmxhdGU=").encode()), id="redirect-garbage"),
        pytest.param(Callback(b"", b"id_token=not-a-jwt&state=s", True), id="bad-id-token"),
    ],
)
def test_unreadable_payload_is_unknown_with_reason_unparseable(cb: Callback) -> None:
    identity = identify(cb, route_map())
    assert identity == Identity(None, "none", None, True)
    for unknown in ("workos", "auth0"):
        decision = decide(cb, route_map(unknown=unknown))
        assert (decision.action, decision.reason, decision.connection) == (unknown, "unparseable", None)


def test_unreadable_payload_but_named_in_query() -> None:
    cb = Callback(b"connection=acme", b"SAMLResponse=!!!!", True)
    assert decide(cb, route_map()) == Decision("workos", "mapped", Identity("acme", "query", "acme"), "saml")


# The state of the connection a callback names (None: not in the map).
STATES = {"acme": "workos", "globex": "legacy", "shady": "shadow", "nope": None}


def normal_outcome(state: str | None, unknown: str) -> tuple[str, str]:
    if state is None:
        return unknown, "unknown_default"
    return ("auth0" if state == "legacy" else "workos"), "mapped"  # shadow: what it would do


# What kind of callback it is beyond its connection: plain, a WS-Federation post (Auth0 only), one
# whose state is bound to an Auth0 transaction (the request carried its MAC), one whose state is of
# Auth0's own form (the second witness, issue 23), or both.
KINDS = ("plain", "wsfed", "bound", "auth0_state", "bound_auth0_state")


DECISION_TABLE = [
    (mode, fallback, kind, name, unknown)
    for mode, fallback, kind, name, unknown in itertools.product(
        ("normal", "auth0", "shadow"), (False, True), KINDS, STATES, ("workos", "auth0")
    )
]


@pytest.mark.parametrize(("mode", "fallback", "kind", "name", "unknown"), DECISION_TABLE)
def test_decision_table(mode: str, fallback: bool, kind: str, name: str, unknown: str) -> None:
    """fallback > auth0_only > auth0_transaction > auth0_state > kill switch > shadow mode > state
    (shadow: to Auth0, would be WorkOS) > defaults.unknown."""
    query = f"connection={name}&state=s1" + ("&fallback=auth0" if fallback else "")
    body = b"wa=wsignin1.0&wresult=%3Ct%2F%3E&wctx=rm%3D0" if kind == "wsfed" else b""
    bound = frozenset({"state"}) if kind.startswith("bound") else frozenset()
    own_form = kind.endswith("auth0_state")
    decision = decide(Callback(query.encode(), body, True), route_map(unknown=unknown, mode=mode), bound, own_form)
    normal, reason = normal_outcome(STATES[name], unknown)
    if fallback:
        expected = ("auth0", "fallback", None)
    elif kind == "wsfed":
        expected = ("auth0", "auth0_only", None)
    elif kind.startswith("bound"):
        expected = ("auth0", "auth0_transaction", None)
    elif kind == "auth0_state":
        expected = ("auth0", "auth0_state", None)
    elif mode == "auth0":
        expected = ("auth0", "kill_switch", None)
    elif mode == "shadow":
        expected = ("auth0", "shadow", normal)
    elif STATES[name] == "shadow":
        expected = ("auth0", "shadow", "workos")
    else:
        expected = (normal, reason, None)
    assert (decision.action, decision.reason, decision.would) == expected
    known = STATES[name] is not None
    assert decision.connection == (name if known else None)
    assert decision.identity.identified_by == ("query" if known else "none")
    assert decision.protocol == ("saml" if known else "unknown")


@pytest.mark.parametrize(
    ("cb", "expected"),
    [
        (Callback(b"", b"wa=wsignin1.0&wresult=x&wctx=y", True), True),
        (Callback(b"", b"wctx=y", True), True),
        (Callback(b"wa=wsignin1.0&wresult=x"), True),
        (Callback(b"", b"wresult=x", False), False),  # not a form: the body is not read
        (Callback(b"", b"xwresult=x&awctx=y", True), False),
        (Callback(b"code=abc&state=xyz"), False),
    ],
)
def test_auth0_only(cb: Callback, expected: bool) -> None:
    decision = decide(cb, route_map())
    assert (decision.reason == "auth0_only") is expected


def test_a_bound_oidc_code_of_a_cut_over_connection_goes_to_auth0() -> None:
    """Issue 10 item 1: code+state names no connection; the binding says Auth0 started it."""
    cb = Callback(b"code=abc&state=xyz")
    assert decide(cb, route_map(unknown="workos")).action == "workos"
    decision = decide(cb, route_map(unknown="workos"), frozenset({"state"}))
    assert (decision.action, decision.reason, decision.protocol) == ("auth0", "auth0_transaction", "oidc")
    named = decide(oidc_post({"aud": "entra-client"}), route_map(), frozenset({"state"}))
    assert (named.action, named.reason, named.connection) == ("auth0", "auth0_transaction", "entra")


@pytest.mark.parametrize(
    ("cb", "expected"),
    [
        (Callback(b"connection=acme"), ("workos", "mapped", "acme", "saml")),
        (Callback(b"connection=globex"), ("auth0", "mapped", "globex", "saml")),
        (Callback(b"code=abc&state=xyz"), ("workos", "unknown_default", None, "oidc")),
        (oidc_post({"aud": "entra-client"}), ("workos", "mapped", "entra", "oidc")),
        (oidc_post({"aud": "google-client"}), ("auth0", "mapped", "google", "oidc")),
        (oidc_post({"aud": "nobody"}), ("workos", "unknown_default", None, "oidc")),
        (saml_post(audience="https://x", issuer=None, destination=None), ("workos", "unknown_default", None, "saml")),
        (Callback(b"state=only"), ("workos", "unknown_default", None, "unknown")),
        # a fallback of an unknown callback still goes to Auth0
        (Callback(b"code=abc&state=xyz&fallback=auth0"), ("auth0", "fallback", None, "oidc")),
        # only fallback=auth0 counts as a fallback
        (Callback(b"connection=acme&fallback=workos"), ("workos", "mapped", "acme", "saml")),
    ],
)
def test_decision_examples(cb: Callback, expected: tuple[str, str, str | None, str]) -> None:
    decision = decide(cb, route_map())
    assert (decision.action, decision.reason, decision.connection, decision.protocol) == expected


def test_oidc_code_unknown_default_auth0() -> None:
    decision = decide(Callback(b"code=abc&state=xyz"), route_map(unknown="auth0"))
    assert (decision.action, decision.reason) == ("auth0", "unknown_default")


def test_shadow_records_what_normal_mode_would_do_for_unknown() -> None:
    for unknown in ("workos", "auth0"):
        decision = decide(Callback(b"code=abc"), route_map(unknown=unknown, mode="shadow"))
        assert (decision.action, decision.reason, decision.would) == ("auth0", "shadow", unknown)
