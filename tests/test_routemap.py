"""Route map parsing: located errors for every bad field, workos_acs_url hosts, indexes, ambiguity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from proxy.errors import RouteMapError
from proxy.routing.routemap import (
    Connection,
    ambiguity_warnings,
    dump_routemap,
    load_routemap,
    make_routemap,
    parse_routemap,
    workos_url_allowed,
)

from .conftest import ROUTES_YAML

WORKOS = "auth.example.com"


def errors_of(text: str, workos_domain: str | None = WORKOS) -> list[str]:
    with pytest.raises(RouteMapError) as info:
        parse_routemap(text, "r.yaml", workos_domain)
    assert info.value.source == "r.yaml"
    return info.value.errors


def one_connection(body: str) -> str:
    return f"version: 1\nconnections:\n  acme:\n{body}"


def test_example_and_fixture_maps_are_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    example = load_routemap(str(root / "routes.yaml"), WORKOS)
    assert example.connections["acme-okta"].state == "workos"
    fixture = parse_routemap(ROUTES_YAML)
    assert set(fixture.connections) == {"acme-okta", "globex-adfs", "hooli-ping", "initech-entra", "umbrella-google"}
    assert fixture.sha256 == hashlib.sha256(ROUTES_YAML.encode()).hexdigest()
    assert (fixture.unknown, fixture.mode) == ("workos", "normal")


def test_full_connection_is_parsed() -> None:
    rm = parse_routemap(
        """
version: 1
defaults: {unknown: auth0, mode: shadow}
connections:
  acme:
    protocol: saml
    state: workos
    organization: org_1
    workos_connection_id: conn_1
    workos_acs_url: https://api.workos.com/sso/saml/acs/conn_1
    audiences: [urn:auth0:t:acme, https://sp.example.com]
    issuers: http://www.okta.com/acme
    acs_urls: ['https://login.example.com/login/callback?connection=acme']
    notes: moved in wave 1
  umbrella:
    protocol: oidc
    state: legacy
    client_ids: [c1, c1]
""",
        workos_domain=WORKOS,
    )
    assert (rm.unknown, rm.mode) == ("auth0", "shadow")
    assert rm.connections["acme"] == Connection(
        name="acme",
        protocol="saml",
        state="workos",
        organizations=("org_1",),
        workos_connection_id="conn_1",
        workos_acs_url="https://api.workos.com/sso/saml/acs/conn_1",
        audiences=("urn:auth0:t:acme", "https://sp.example.com"),
        issuers=("http://www.okta.com/acme",),  # a single string is a list of one
        acs_urls=("https://login.example.com/login/callback?connection=acme",),
        notes="moved in wave 1",
    )
    assert rm.connections["umbrella"].client_ids == ("c1",)  # duplicates within a list collapse
    assert rm.lookup("audiences", "https://sp.example.com") == "acme"
    assert rm.lookup("client_ids", "c1") == "umbrella"
    assert rm.lookup("issuers", "nope") is None
    assert rm.lookup("no-such-kind", "x") is None
    assert rm.counts_by_state() == {"legacy": 1, "shadow": 0, "workos": 1}


def test_empty_defaults_and_connections() -> None:
    rm = parse_routemap("version: 1\n")
    assert (rm.unknown, rm.mode, dict(rm.connections)) == ("workos", "normal", {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nconnections: {a: [", "not valid YAML"),  # YAML syntax error: located by line
        ("version: 1\nconnections: {a: [\n", "r.yaml:3:1: not valid YAML"),
        ("- 1\n- 2\n", "r.yaml: must be a mapping"),
        ("just a string", "r.yaml: must be a mapping"),
        ("", "r.yaml: must be a mapping"),
        ("version: 2\n", "r.yaml: version: must be 1 (got 2)"),
        ("connections: {}\n", "r.yaml: version: must be 1 (got None)"),
        ("version: '1'\n", "r.yaml: version: must be 1 (got '1')"),
        ("version: 1\nroutes: {}\n", "r.yaml: routes: unknown top-level field"),
        ("version: 1\ndefaults: [workos]\n", "r.yaml: defaults: must be a mapping"),
        ("version: 1\ndefaults: {colour: red}\n", "r.yaml: defaults.colour: unknown field"),
        ("version: 1\ndefaults: {unknown: legacy}\n", "r.yaml: defaults.unknown: must be one of workos, auth0"),
        ("version: 1\ndefaults: {mode: panic}\n", "r.yaml: defaults.mode: must be one of normal, auth0, shadow"),
        ("version: 1\nconnections: [a, b]\n", "r.yaml: connections: must be a mapping"),
        ("version: 1\nconnections: {acme: saml}\n", "r.yaml: connections.acme: must be a mapping"),
        ("version: 1\nconnections: {acme: }\n", "r.yaml: connections.acme: must be a mapping"),
        ("version: 1\nconnections: {7: {protocol: saml, state: legacy}}\n", "r.yaml: connections.7: connection names"),
        (
            one_connection("    state: legacy\n"),
            "r.yaml: connections.acme.protocol: must be one of saml, oidc (got missing)",
        ),
        (one_connection("    protocol: ws-fed\n    state: legacy\n"), "connections.acme.protocol: must be one of"),
        (
            one_connection("    protocol: saml\n"),
            "r.yaml: connections.acme.state: must be one of legacy, shadow, workos",
        ),
        (one_connection("    protocol: saml\n    state: moved\n"), "connections.acme.state: must be one of"),
        (
            one_connection("    protocol: saml\n    state: legacy\n    colour: red\n"),
            "connections.acme.colour: unknown",
        ),
        (one_connection("    protocol: saml\n    state: legacy\n    organization: 5\n"), "acme.organization: must be"),
        (
            one_connection("    protocol: saml\n    state: legacy\n    workos_connection_id: [x]\n"),
            "connections.acme.workos_connection_id: must be a string",
        ),
        (
            one_connection("    protocol: saml\n    state: legacy\n    workos_acs_url: 5\n"),
            "connections.acme.workos_acs_url: must be a string",
        ),
        (
            one_connection("    protocol: saml\n    state: legacy\n    audiences: {a: 1}\n"),
            "connections.acme.audiences: must be a list of strings",
        ),
        (
            one_connection("    protocol: saml\n    state: legacy\n    issuers: [ok, 3]\n"),
            "connections.acme.issuers[1]: must be a non-empty string",
        ),
        (
            one_connection("    protocol: saml\n    state: legacy\n    acs_urls: ['']\n"),
            "connections.acme.acs_urls[0]: must be a non-empty string",
        ),
        (
            one_connection("    protocol: oidc\n    state: legacy\n    client_ids: 42\n"),
            "connections.acme.client_ids: must be a list of strings",
        ),
        (
            one_connection("    protocol: saml\n    state: workos\n    workos_acs_url: https://evil.example/acs\n"),
            "connections.acme.workos_acs_url: 'https://evil.example/acs' must be an https URL",
        ),
    ],
)
def test_located_errors(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(expected in e for e in errors), errors


def test_every_error_is_reported_at_once() -> None:
    errors = errors_of(
        """
version: 3
defaults: {unknown: nope, mode: nope}
connections:
  a: {protocol: x, state: y}
  b: {protocol: saml, state: legacy, audiences: 5}
  c: {protocol: oidc, state: workos, workos_acs_url: 'http://api.workos.com/x'}
"""
    )
    wanted = [
        "version",
        "defaults.unknown",
        "defaults.mode",
        "connections.a.protocol",
        "connections.a.state",
        "connections.b.audiences",
        "connections.c.workos_acs_url",
    ]
    for field in wanted:
        assert any(field in e for e in errors), (field, errors)
    assert len(errors) == len(wanted)
    assert all(e.startswith("r.yaml") for e in errors)


def test_error_message_lists_them_all() -> None:
    with pytest.raises(RouteMapError) as info:
        parse_routemap("version: 2\ndefaults: {mode: x}\n", "r.yaml")
    assert str(info.value).startswith("r.yaml: 2 error(s):\n")


def test_load_missing_file_is_located(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RouteMapError) as info:
        load_routemap(str(missing))
    assert info.value.errors[0].startswith(f"{missing}: cannot read")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://auth.example.com/sso/client/auth0/callback", True),
        ("https://AUTH.example.com/acs", True),
        ("https://auth.example.com:443/acs", True),
        ("https://api.workos.com/sso/saml/acs/conn_1", True),
        ("https://workos.com/acs", True),
        ("https://a.b.workos.com/acs?x=1", True),
        ("http://api.workos.com/acs", False),  # https only
        ("http://auth.example.com/acs", False),
        ("https://evil.example/acs", False),
        ("https://workos.com.evil.example/acs", False),
        ("https://evilworkos.com/acs", False),
        ("https://auth.example.com.evil.example/acs", False),
        ("https://user@api.workos.com/acs", False),
        ("https://api.workos.com:pw@evil.example/acs", False),
        ("https://evil.example\\.workos.com/acs", False),  # browsers go to evil.example
        ("https://evil.example%2f.workos.com/acs", False),
        ("https://api.workos.com/acs\r\nSet-Cookie: x=1", False),
        ("https://api.workos.com/a b", False),
        ("https://api.workos.com/acs#frag", False),  # the appended callback query would be a fragment
        ("https://api.workos.com/acs?x=1#", False),
        ("https://@api.workos.com/acs", False),  # empty user-info is user-info
        ("https://:@api.workos.com/acs", False),
        ("https://api.workos.com@evil.example/acs", False),
        ("//api.workos.com/acs", False),
        ("api.workos.com/acs", False),
    ],
)
def test_workos_acs_url_hosts(url: str, allowed: bool) -> None:
    assert workos_url_allowed(url, WORKOS) is allowed
    text = one_connection(f"    protocol: saml\n    state: workos\n    workos_acs_url: {yaml.safe_dump(url).strip()}\n")
    if allowed:
        assert parse_routemap(text, "r.yaml", WORKOS).connections["acme"].workos_acs_url == url
    else:
        assert any("connections.acme.workos_acs_url" in e for e in errors_of(text))


def test_workos_acs_url_without_custom_domain_only_workos_com() -> None:
    assert workos_url_allowed("https://api.workos.com/acs", None)
    assert not workos_url_allowed("https://auth.example.com/acs", None)
    errors = errors_of(
        one_connection("    protocol: saml\n    state: workos\n    workos_acs_url: https://auth.example.com/acs\n"),
        workos_domain=None,
    )
    assert "WORKOS_CUSTOM_DOMAIN not set" in errors[0]


def test_workos_custom_domain_with_port() -> None:
    assert workos_url_allowed("https://auth.example.com:8443/acs", "auth.example.com:8443")
    assert not workos_url_allowed("https://auth.example.com:9443/acs", "auth.example.com:8443")


AMBIGUOUS = """
version: 1
connections:
  acme:
    protocol: saml
    state: workos
    audiences: [https://common-sp, urn:auth0:t:acme]
    issuers: [http://adfs.common/trust]
  beta:
    protocol: saml
    state: legacy
    audiences: [https://common-sp]
    issuers: [http://adfs.common/trust, http://beta-idp]
  gamma:
    protocol: oidc
    state: legacy
    client_ids: [common-client]
    issuers: [http://adfs.common/trust]
  delta:
    protocol: oidc
    state: workos
    client_ids: [common-client, delta-client]
"""


def test_ambiguous_identifiers_are_not_indexed() -> None:
    rm = parse_routemap(AMBIGUOUS)
    assert rm.lookup("audiences", "https://common-sp") is None
    assert rm.lookup("issuers", "http://adfs.common/trust") is None
    assert rm.lookup("client_ids", "common-client") is None
    assert rm.lookup("audiences", "urn:auth0:t:acme") == "acme"
    assert rm.lookup("issuers", "http://beta-idp") == "beta"
    assert rm.lookup("client_ids", "delta-client") == "delta"
    assert rm.ambiguous["audiences"] == {"https://common-sp": ("acme", "beta")}
    assert rm.ambiguous["issuers"] == {"http://adfs.common/trust": ("acme", "beta", "gamma")}
    assert rm.ambiguous["client_ids"] == {"common-client": ("delta", "gamma")}
    warnings = ambiguity_warnings(rm)
    assert len(warnings) == 3
    assert "issuers: 'http://adfs.common/trust' is claimed by acme, beta, gamma; it identifies none of them" in warnings


def test_identifier_repeated_in_one_connection_is_not_ambiguous() -> None:
    rm = parse_routemap(one_connection("    protocol: saml\n    state: legacy\n    issuers: [x, x]\n"))
    assert rm.lookup("issuers", "x") == "acme"
    assert ambiguity_warnings(rm) == []


def test_dump_and_make_round_trip() -> None:
    rm = parse_routemap(AMBIGUOUS)
    again = parse_routemap(dump_routemap(rm))
    assert dict(again.connections) == dict(rm.connections)
    made = make_routemap(list(rm.connections.values()))
    assert dict(made.index["audiences"]) == dict(rm.index["audiences"])
    assert made.sha256 == hashlib.sha256(dump_routemap(made).encode()).hexdigest()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://api.workos.com/acs#x", "has a fragment (#)"),
        ("https://@api.workos.com/acs", "has user-info"),
        ("https://api.workos.com@evil.example/acs", "has user-info"),
        ("https://api.workos.com/a\u2028b", "outside printable ASCII"),
        ("http://api.workos.com/acs", "must be an https URL on the WorkOS custom domain"),
    ],
)
def test_workos_acs_url_refusals_say_why_and_where(url: str, reason: str) -> None:
    text = one_connection(f"    protocol: saml\n    state: workos\n    workos_acs_url: {yaml.safe_dump(url).strip()}\n")
    [error] = errors_of(text)
    assert error.startswith("r.yaml: connections.acme.workos_acs_url: ")
    assert reason in error
    assert "\n" not in error and "\u2028" not in error


SEPARATORS = ["\u2028", "\u2029", "\u0085", "\r", "\n", "\x0b", "\x1b", "\x00", "\u202e", "\u200b", "\x7f"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
def test_connection_names_with_line_separators_or_controls_are_refused(sep: str) -> None:
    name = f"evil{sep}defaults: {{mode: auth0}}"
    text = f"version: 1\nconnections:\n  {json.dumps(name)}:\n    protocol: saml\n    state: legacy\n"
    errors = errors_of(text)
    assert len(errors) == 1
    assert errors[0].startswith(f"r.yaml: connections.{name!r}: connection name")
    assert "control, format or line-separator character" in errors[0]
    assert len(errors[0].splitlines()) == 1 and sep not in errors[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nconnections: &c {}\ndefaults: *c\n", "r.yaml:2:14: an anchored node is repeated by an alias"),
        ("version: 1\ndefaults: {<<: {mode: auth0}}\n", "r.yaml:2:12: a key must be a plain value"),
        ("version: 1\n? [a, b]\n: 1\n", "r.yaml:2:3: a key must be a plain value"),
        ("version: 1\nx: " + "[" * 100 + "]" * 100 + "\n", "nested more than 64 levels deep"),
        ("version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML"),  # libyaml's own limit
        ("version: 1\nversion: 1\n", "r.yaml:2:1: duplicate key 'version'"),
        ("version: 1\n\xff\n", "not valid YAML"),
        ("version: 1\nx: \x00\n", "not valid YAML"),
    ],
)
def test_hostile_yaml_gets_located_errors(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(expected in e for e in errors), errors


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 30)]
    errors = errors_of("\n".join(lines) + "\n")
    assert errors and all("repeated by an alias" in e for e in errors)


def test_the_c_loader_is_used_where_available() -> None:
    from proxy.routing import routemap

    assert routemap.SafeLoader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert yaml.__with_libyaml__, "PyYAML without libyaml: route maps parse about ten times slower"


def test_same_value_as_safe_load_for_every_tag() -> None:
    text = (
        "version: 1\ns: text\nq: 'quoted'\ni: 7\nf: 1.5\nb: true\nn: ~\nd: 2001-12-14\n"
        "l: [1, two]\nm: {k: v}\nset: !!set {x}\nbin: !!binary aGVsbG8=\n"
    )
    from proxy.routing.yamlread import load_yaml

    document, problems, fatal = load_yaml(text.encode())
    assert (problems, fatal) == ([], False)
    assert document == yaml.safe_load(text)


@pytest.mark.parametrize("size", [2_000, 20_000])
def test_identifier_lists_and_common_identifiers_are_linear(size: int) -> None:
    """`in list` de-duplication was quadratic: a 20,000-item list or an identifier of 20,000 connections."""
    items = ", ".join(f"i{n}" for n in range(size))
    rm = parse_routemap(one_connection(f"    protocol: saml\n    state: legacy\n    audiences: [{items}, i0]\n"))
    assert len(rm.connections["acme"].audiences) == size
    claimed = make_routemap(
        [Connection(f"c{n}", "saml", "legacy", issuers=("common",)) for n in range(size)], hashed=False
    )
    assert len(claimed.ambiguous["issuers"]["common"]) == size


@pytest.mark.parametrize(
    ("body", "organizations", "error"),
    [
        ("    organization: org_A\n", ("org_A",), None),
        ("    organizations: [org_A, org_B]\n", ("org_A", "org_B"), None),
        ("    organizations: [org_A, org_A]\n", ("org_A",), None),
        ("    organizations: org_A\n", ("org_A",), None),
        ("", (), None),
        ("    organization: org_A\n    organizations: [org_B]\n", None, "give organization or organizations, not both"),
        ("    organizations: {a: b}\n", None, "connections.acme.organizations: must be a list of strings"),
        ("    organizations: ['']\n", None, "connections.acme.organizations[0]: must be a non-empty string"),
    ],
)
def test_organization_or_organizations(body: str, organizations: tuple[str, ...] | None, error: str | None) -> None:
    text = one_connection(f"    protocol: oidc\n    state: legacy\n{body}")
    if error is not None:
        with pytest.raises(RouteMapError) as info:
            parse_routemap(text, source="r.yaml")
        assert any(error in e for e in info.value.errors), info.value.errors
        return
    conn = parse_routemap(text).connections["acme"]
    assert conn.organizations == organizations
    again = parse_routemap(dump_routemap(make_routemap([conn]))).connections["acme"]
    assert again.organizations == organizations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-07T19:50:00Z", "2026-12-07T19:50:00Z"),
        ("'2026-12-07T19:50:00Z'", "2026-12-07T19:50:00Z"),
        ("2026-12-07T20:50:00+01:00", "2026-12-07T19:50:00Z"),
        ("2026-12-07T19:50:00.750Z", "2026-12-07T19:50:00Z"),
        ("2026-12-07 19:50:00", None),  # no zone: which one did the operator mean?
        ("2026-12-07", None),
        ("yesterday", None),
        ("17", None),
    ],
)
def test_state_changed_is_a_time_with_its_zone(value: str, expected: str | None) -> None:
    text = one_connection(f"    protocol: saml\n    state: workos\n    state_changed: {value}\n")
    if expected is None:
        with pytest.raises(RouteMapError) as info:
            parse_routemap(text, source="r.yaml")
        assert any("connections.acme.state_changed: must be a time with its zone" in e for e in info.value.errors)
        return
    conn = parse_routemap(text).connections["acme"]
    assert conn.state_changed == expected
    assert parse_routemap(dump_routemap(make_routemap([conn]))).connections["acme"].state_changed == expected
