"""Tests for proxy.migrate.export: the SSO export package importer behind ``sso-proxy routes import``."""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxy.migrate.export import header_lines, import_export, issuer_from_discovery, render, run_import
from proxy.migrate.package import ExportError, SkippedRow, tenant_from_host
from proxy.migrate.routefile import remove_stale_temp_files, write_routemap_atomic
from proxy.routing.routemap import dump_routemap, parse_routemap

SHARED = Path(__file__).resolve().parent / "fixtures" / "auth0-export"
HERE = Path(__file__).resolve().parent / "fixtures" / "export"

ROUTES_HEADER = (
    "externalId,organizationExternalId,provider,protocol,sourceAcsUrl,sourceEntityId,sourceRedirectUri,"
    "customAcsUrl,customEntityId,customRedirectUri,workosConnectionId,workosAcsUrl,cutoverState,notes"
)
SAML_HEADER = (
    "name,organizationName,organizationId,organizationExternalId,domains,idpEntityId,idpUrl,x509Cert,"
    "idpMetadataUrl,customEntityId,customAcsUrl,idpIdAttribute,emailAttribute,firstNameAttribute,"
    "lastNameAttribute,nameAttribute,idpInitiatedEnabled,requestSigningKey,assertionEncryptionKey,"
    "nameIdEncryptionKey,externalId"
)
OIDC_HEADER = (
    "name,organizationName,organizationId,organizationExternalId,domains,clientId,clientSecret,"
    "discoveryEndpoint,customRedirectUri,externalId"
)
MANIFEST = '{"schemaVersion": 1, "provider": "auth0", "sourceTenant": "acme.us.auth0.com"}'
ACS = "https://acme.us.auth0.com/login/callback?connection="


def route(name: str, protocol: str = "saml", state: str = "legacy", **extra: str) -> str:
    """One proxy_routes.csv line in the exporter's column order."""
    values = dict.fromkeys(ROUTES_HEADER.split(","), "")
    values.update(externalId=name, provider="auth0", protocol=protocol, cutoverState=state)
    if name:
        values["sourceAcsUrl" if protocol == "saml" else "sourceRedirectUri"] = ACS + name
    values.update(extra)
    return ",".join(values.values())


def row(header: str, **values: str) -> str:
    """One CSV line for ``header`` with the given columns set and every other column empty."""
    fields = dict.fromkeys(header.split(","), "")
    assert set(values) <= set(fields), set(values) - set(fields)
    fields.update(values)
    return ",".join(fields.values())


def saml_csv(*rows: dict[str, str]) -> str:
    return "\n".join([SAML_HEADER, *(row(SAML_HEADER, **r) for r in rows)]) + "\n"


def oidc_csv(*rows: dict[str, str]) -> str:
    return "\n".join([OIDC_HEADER, *(row(OIDC_HEADER, **r) for r in rows)]) + "\n"


def write_package(
    root: Path,
    routes: list[str] | str | None = None,
    saml: str | None = None,
    oidc: str | None = None,
    manifest: str | None = MANIFEST,
) -> Path:
    """A small hand-made package; strings are written byte for byte (BOM, CRLF stay as given)."""
    (root / "sso").mkdir(parents=True)
    if manifest is not None:
        (root / "manifest.json").write_text(manifest, encoding="utf-8")
    if routes is not None:
        text = routes if isinstance(routes, str) else "\n".join([ROUTES_HEADER, *routes]) + "\n"
        (root / "sso" / "proxy_routes.csv").write_bytes(text.encode("utf-8"))
    for name, text in (("saml_connections.csv", saml), ("oidc_connections.csv", oidc)):
        if text is not None:
            (root / "sso" / name).write_bytes(text.encode("utf-8"))
    return root


# --- the real exporter's packages -------------------------------------------------------------


@pytest.mark.parametrize("variant", ["redacted", "with-secrets"])
def test_real_package_imports_every_connection_with_its_identifiers(variant: str) -> None:
    result = import_export(str(SHARED / variant))
    rm = result.route_map
    assert result.tenant == "globex-prod"
    assert result.skipped == []
    assert {name: (c.protocol, c.state) for name, c in rm.connections.items()} == {
        "initech-okta": ("saml", "legacy"),
        "umbrella-onelogin": ("saml", "legacy"),
        "hooli-pingfederate": ("saml", "legacy"),
        "initech-group-oidc": ("oidc", "legacy"),
        "initrode-google": ("oidc", "legacy"),
        "umbrella-entra": ("oidc", "legacy"),
        # Skipped by the exporter (warnings.jsonl): still called back, so kept on Auth0 by name.
        "hooli-okta-sandbox": ("saml", "legacy"),
    }
    okta = rm.connections["initech-okta"]
    # Default SP entity ID derived from manifest.json, and idpEntityId as both Issuer and Audience.
    assert okta.audiences == (
        "urn:auth0:globex-prod:initech-okta",
        "http://www.okta.com/exk8f3k2l1m0N9b8V7c6",
    )
    assert okta.issuers == ("http://www.okta.com/exk8f3k2l1m0N9b8V7c6",)
    assert okta.acs_urls == ("https://globex-prod.eu.auth0.com/login/callback?connection=initech-okta",)
    assert okta.organizations == ("org_Q2xV9kLm3PzR7tWc",)
    onelogin = rm.connections["umbrella-onelogin"]
    assert "https://login.globex.com/saml/umbrella-corp" in onelogin.audiences
    assert onelogin.acs_urls == ("https://login.globex.com/login/callback?connection=umbrella-onelogin",)
    # Google's issuer is every Google account's, and an Entra tenant named by domain is not the
    # issuer its tokens carry (the tenant GUID is): neither is an identifier; both are remarked.
    assert rm.connections["initrode-google"].issuers == ()
    assert rm.connections["initech-group-oidc"].client_ids == ("0oa1b2c3d4E5F6g7H8i9",)
    assert rm.connections["umbrella-entra"].issuers == ()
    assert any("tenant ID" in r for r in result.remarks["umbrella-entra"])
    assert rm.lookup("audiences", "urn:auth0:globex-prod:hooli-pingfederate") == "hooli-pingfederate"
    assert rm.lookup("client_ids", "3f2a9c1e-7b4d-4e8a-9c6f-1d2e3f4a5b6c") == "umbrella-entra"
    assert dict(rm.ambiguous["issuers"]) == {}


def test_package_root_and_sso_folder_give_the_same_map() -> None:
    from_root = import_export(str(SHARED / "redacted"))
    from_sso = import_export(str(SHARED / "redacted" / "sso"))
    assert dump_routemap(from_root.route_map) == dump_routemap(from_sso.route_map)
    assert from_sso.tenant == "globex-prod"


def _secret_values(sso: Path) -> list[str]:
    secret_column = re.compile(r"secret|key|cert|password|token", re.IGNORECASE)
    values: list[str] = []
    for name in ("saml_connections.csv", "oidc_connections.csv", "proxy_routes.csv"):
        with (sso / name).open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                for column, value in row.items():
                    if secret_column.search(column) and value.strip():
                        values.append(value.strip())
                        # A PEM certificate: no line of it may leak either.
                        values.extend(line for line in value.splitlines() if len(line) > 16)
    return values


def test_secrets_never_reach_the_route_map_summary_or_warnings(tmp_path: Path) -> None:
    secrets = _secret_values(SHARED / "with-secrets" / "sso")
    assert len(secrets) > 6  # the fixture really holds client secrets, keys and certificates
    out, err = io.StringIO(), io.StringIO()
    assert run_import(str(SHARED / "with-secrets"), "-", out, err) == 0
    result = import_export(str(SHARED / "with-secrets"))
    texts = {"yaml": out.getvalue(), "summary": err.getvalue(), "warnings": "\n".join(result.warnings)}
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret reached the {where}"


@pytest.mark.parametrize("variant", ["redacted", "with-secrets"])
def test_output_is_byte_identical_across_runs_and_validates(variant: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    for target in (first, second, second):  # the third run overwrites the second's file
        assert run_import(str(SHARED / variant), str(target), io.StringIO(), io.StringIO()) == 0
    assert first.read_bytes() == second.read_bytes()
    parsed = parse_routemap(first.read_bytes())
    assert len(parsed.connections) == 7
    assert first.read_text().startswith("# [import] sso-proxy route map")


# --- real-world CSV quirks ---------------------------------------------------------------------


def test_bom_and_crlf(tmp_path: Path) -> None:
    routes = "\ufeff" + "\r\n".join([ROUTES_HEADER, route("acme-okta"), route("acme-oidc", "oidc")]) + "\r\n"
    saml = "\ufeff" + saml_csv({"idpEntityId": "http://idp/1", "externalId": "acme-okta"}).replace("\n", "\r\n")
    result = import_export(str(write_package(tmp_path, routes=routes, saml=saml)))
    assert sorted(result.route_map.connections) == ["acme-oidc", "acme-okta"]
    okta = result.route_map.connections["acme-okta"]
    assert okta.acs_urls == (ACS + "acme-okta",)  # no stray \r
    assert okta.issuers == ("http://idp/1",)
    assert result.skipped == []


def test_quoted_fields_with_commas_and_newlines_keep_line_numbers(tmp_path: Path) -> None:
    rows = [
        route("acme-okta", notes='"Move after Q3, per CS.\nCall Bob first, then ""Alice"""'),
        route("", notes="no name"),  # starts on line 4 because the previous row spans two lines
    ]
    saml_rows = saml_csv(
        {
            "name": "acme-okta",
            "organizationName": '"Acme, Inc."',
            "organizationExternalId": "org_1",
            "domains": '"acme.com,acme.io"',
            "idpEntityId": "http://idp/1",
            "externalId": "acme-okta",
        }
    )
    result = import_export(str(write_package(tmp_path, routes=rows, saml=saml_rows)))
    assert list(result.route_map.connections) == ["acme-okta"]
    assert result.route_map.connections["acme-okta"].organizations == ("org_1",)
    assert result.skipped == [SkippedRow("sso/proxy_routes.csv", 4, "no externalId")]


def test_empty_optional_columns_are_left_out(tmp_path: Path) -> None:
    line = "acme-okta,,,saml,,,,,,,,,,"
    result = import_export(str(write_package(tmp_path, routes=[line])))
    conn = result.route_map.connections["acme-okta"]
    assert (conn.state, conn.organizations, conn.workos_connection_id, conn.workos_acs_url) == (
        "legacy",
        (),
        None,
        None,
    )
    assert conn.audiences == ("urn:auth0:acme:acme-okta",)
    assert conn.acs_urls == conn.issuers == conn.client_ids == ()
    assert "organization" not in dump_routemap(result.route_map)


def test_same_connection_in_several_rows_merges_identifiers(tmp_path: Path) -> None:
    rows = [
        route("acme-okta", organizationExternalId="org_1"),
        route("acme-okta", sourceAcsUrl="https://login.acme.com/login/callback?connection=acme-okta"),
        route("acme-okta", customEntityId="https://login.acme.com/saml/acme"),
    ]
    saml = saml_csv(
        {"idpEntityId": "http://idp/1", "externalId": "acme-okta"},
        {"idpEntityId": "http://idp/2", "externalId": "acme-okta"},
    )
    result = import_export(str(write_package(tmp_path, routes=rows, saml=saml)))
    assert list(result.route_map.connections) == ["acme-okta"]
    conn = result.route_map.connections["acme-okta"]
    assert conn.acs_urls == (ACS + "acme-okta", "https://login.acme.com/login/callback?connection=acme-okta")
    assert conn.audiences == (
        "urn:auth0:acme:acme-okta",
        "https://login.acme.com/saml/acme",
        "http://idp/1",
        "http://idp/2",
    )
    assert conn.issuers == ("http://idp/1", "http://idp/2")
    assert conn.organizations == ("org_1",)
    assert result.route_map.ambiguous["acs_urls"] == {}  # one connection claiming a value twice is fine


def test_columns_in_another_order_and_unknown_columns(tmp_path: Path) -> None:
    routes = (
        "cutoverState,futureColumn,protocol,externalId,sourceAcsUrl,workosConnectionId\n"
        f"workos,ignored,saml,acme-okta,{ACS}acme-okta,conn_1\n"
    )
    oidc = "externalId,discoveryEndpoint,extra,clientId\nacme-oidc,https://idp/.well-known/openid-configuration,x,cid\n"
    result = import_export(str(write_package(tmp_path, routes=routes, oidc=oidc)))
    okta = result.route_map.connections["acme-okta"]
    assert (okta.state, okta.workos_connection_id, okta.acs_urls) == (
        "workos",
        "conn_1",
        (ACS + "acme-okta",),
    )
    oidc_conn = result.route_map.connections["acme-oidc"]
    assert (oidc_conn.client_ids, oidc_conn.issuers) == (("cid",), ("https://idp",))
    assert "ignored" not in dump_routemap(result.route_map)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (route(""), "no externalId"),
        (route("x", protocol="ws-fed"), "protocol 'ws-fed' is not saml or oidc"),
        (route("x", protocol=""), "protocol missing is not saml or oidc"),
        (route("x", state="paused"), "cutoverState 'paused' is not legacy, workos or manual"),
        (route("x", provider="okta"), "provider 'okta' is not auth0"),
        (route("x") + ",surplus", "15 fields where the header has 14"),
        ("x,org,auth0,saml", "4 fields where the header has 14"),
    ],
)
def test_rows_that_cannot_be_used_are_skipped_with_line_and_reason(tmp_path: Path, line: str, reason: str) -> None:
    result = import_export(str(write_package(tmp_path, routes=[route("ok"), line])))
    assert list(result.route_map.connections) == ["ok"]
    assert result.skipped == [SkippedRow("sso/proxy_routes.csv", 3, reason)]
    assert f"sso/proxy_routes.csv:3: {reason}" in result.summary()


@pytest.mark.parametrize(
    ("cutover", "state", "warned"),
    [
        ("legacy", "legacy", False),
        ("workos", "workos", False),
        ("manual", "legacy", True),
        ("", "legacy", False),
    ],
)
def test_cutover_state_mapping(tmp_path: Path, cutover: str, state: str, warned: bool) -> None:
    result = import_export(str(write_package(tmp_path, routes=[route("acme", state=cutover)])))
    assert result.route_map.connections["acme"].state == state
    assert any("manual" in w and "routes set acme workos" in w for w in result.warnings) is warned


def test_conflicting_states_for_one_connection_stay_on_auth0(tmp_path: Path) -> None:
    result = import_export(str(write_package(tmp_path, routes=[route("a", state="workos"), route("a")])))
    assert result.route_map.connections["a"].state == "legacy"
    assert any(w.startswith("a: sso/proxy_routes.csv:3 says state legacy") for w in result.warnings)


def test_protocol_conflict_between_files_skips_the_later_row(tmp_path: Path) -> None:
    oidc = oidc_csv({"name": "a", "clientId": "cid", "externalId": "a"})
    result = import_export(str(write_package(tmp_path, routes=[route("a", "saml")], oidc=oidc)))
    assert result.route_map.connections["a"].protocol == "saml"
    assert result.route_map.connections["a"].client_ids == ()
    assert result.skipped == [
        SkippedRow("sso/oidc_connections.csv", 2, "a: protocol oidc conflicts with saml from sso/proxy_routes.csv:2")
    ]


def test_connections_only_in_connection_csvs_are_imported_as_legacy(tmp_path: Path) -> None:
    saml = saml_csv({"organizationExternalId": "org_9", "idpEntityId": "http://idp/9", "externalId": "lonely-saml"})
    oidc = oidc_csv(
        {
            "clientId": "cid9",
            "clientSecret": "s3cr3t",
            "externalId": "lonely-oidc",
            "discoveryEndpoint": "https://idp9/.well-known/openid-configuration",
        }
    )
    result = import_export(str(write_package(tmp_path, routes=[route("a")], saml=saml, oidc=oidc)))
    conns = result.route_map.connections
    assert (conns["lonely-saml"].protocol, conns["lonely-saml"].state) == ("saml", "legacy")
    assert (conns["lonely-oidc"].protocol, conns["lonely-oidc"].state) == ("oidc", "legacy")
    assert conns["lonely-oidc"].issuers == ("https://idp9",)
    assert "s3cr3t" not in dump_routemap(result.route_map) + result.summary()
    for name, file in (("lonely-saml", "saml_connections.csv"), ("lonely-oidc", "oidc_connections.csv")):
        assert f"{name}: only in sso/{file}, not in sso/proxy_routes.csv; imported as legacy" in result.warnings


def test_missing_proxy_routes_csv_is_a_warning_not_an_error(tmp_path: Path) -> None:
    saml = saml_csv({"idpEntityId": "http://idp/1", "externalId": "a"})
    result = import_export(str(write_package(tmp_path, saml=saml)))
    assert list(result.route_map.connections) == ["a"]
    assert "sso/proxy_routes.csv: not found" in result.warnings


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://api.workos.com/sso/saml/acs/conn_1", True),
        ("https://workos.com/acs", True),
        ("http://api.workos.com/sso/saml/acs/conn_1", False),
        ("https://auth.acme.com/sso/saml/acs/conn_1", False),
        ("https://evil.com/?x=.workos.com", False),
    ],
)
def test_workos_acs_url_only_on_workos_hosts(tmp_path: Path, url: str, kept: bool) -> None:
    result = import_export(str(write_package(tmp_path, routes=[route("acme", workosAcsUrl=url)])))
    assert result.route_map.connections["acme"].workos_acs_url == (url if kept else None)
    assert any(w.startswith("acme: workosAcsUrl left out") for w in result.warnings) is not kept
    parse_routemap(dump_routemap(result.route_map))


def test_callback_url_naming_another_connection_is_warned(tmp_path: Path) -> None:
    rows = [route("a", sourceAcsUrl=ACS + "b")]
    result = import_export(str(write_package(tmp_path, routes=rows)))
    assert "a: sso/proxy_routes.csv:2 sourceAcsUrl names connection 'b'" in result.warnings


# --- tenant and issuer derivation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tenant"),
    [
        ("globex-prod.eu.auth0.com", "globex-prod"),
        ("globex-prod.auth0.com", "globex-prod"),
        ("https://Globex-Prod.us.auth0.com/", "globex-prod"),
        ("globex-prod", "globex-prod"),
        ("login.globex.com", None),
        ("", None),
    ],
)
def test_tenant_from_host(value: str, tenant: str | None) -> None:
    assert tenant_from_host(value) == tenant


@pytest.mark.parametrize(
    ("url", "issuer"),
    [
        ("https://accounts.google.com/.well-known/openid-configuration", "https://accounts.google.com"),
        (
            "https://idp.example/oauth2/default/.well-known/openid-configuration",
            "https://idp.example/oauth2/default",
        ),
        ("https://idp.example/issuer", "https://idp.example/issuer"),
    ],
)
def test_issuer_from_discovery(url: str, issuer: str) -> None:
    assert issuer_from_discovery(url) == issuer


def test_without_manifest_the_tenant_comes_from_callback_urls(tmp_path: Path) -> None:
    result = import_export(str(write_package(tmp_path, routes=[route("a")], manifest=None)))
    assert result.tenant == "acme"
    assert result.route_map.connections["a"].audiences == ("urn:auth0:acme:a",)
    assert "tenant acme taken from callback URLs on acme.us.auth0.com (no usable manifest)" in result.warnings


def test_without_any_tenant_no_default_audience_is_invented(tmp_path: Path) -> None:
    row = route("a", sourceAcsUrl="https://login.acme.com/login/callback?connection=a")
    result = import_export(str(write_package(tmp_path, routes=[row], manifest='{"provider": "auth0"}')))
    assert result.tenant is None
    assert result.route_map.connections["a"].audiences == ()
    assert any(w.startswith("tenant unknown") for w in result.warnings)


@pytest.mark.parametrize("setup", ["not a directory", "empty directory", "broken manifest", "not utf-8"])
def test_unreadable_packages_raise_export_error_and_exit_1(tmp_path: Path, setup: str) -> None:
    target = tmp_path / "pkg"
    if setup == "not a directory":
        target.write_text("x")
    elif setup == "empty directory":
        target.mkdir()
    elif setup == "broken manifest":
        write_package(target, routes=[route("a")], manifest="{not json")
    else:
        write_package(target, routes=[route("a")])
        (target / "sso" / "proxy_routes.csv").write_bytes(b"externalId\n\xff\xfe\n")
    with pytest.raises(ExportError):
        import_export(str(target))
    out, err = io.StringIO(), io.StringIO()
    assert run_import(str(target), str(tmp_path / "routes.yaml"), out, err) == 1
    assert err.getvalue().startswith("error: ")
    assert not (tmp_path / "routes.yaml").exists()


# --- shared identifiers ------------------------------------------------------------------------


def test_issuer_shared_by_two_connections_identifies_neither() -> None:
    adfs = "http://adfs.contoso.com/adfs/services/trust"
    result = import_export(str(HERE / "shared-adfs"))
    rm = result.route_map
    assert rm.lookup("issuers", adfs) is None
    assert rm.lookup("audiences", adfs) is None
    assert rm.ambiguous["issuers"][adfs] == ("contoso-adfs-eu", "contoso-adfs-us")
    # Unshared identifiers still identify each connection.
    assert rm.lookup("audiences", "urn:auth0:acme-prod:contoso-adfs-us") == "contoso-adfs-us"
    warning = f"issuers: {adfs!r} is claimed by contoso-adfs-eu, contoso-adfs-us; it identifies none of them"
    assert warning in result.warnings
    assert f"# [import] ambiguous: {warning}\n" in render(result)  # reviewers see it in the file too
    summary = result.summary()
    assert "ambiguous identifiers (identify no connection): 2" in summary
    assert warning in summary
    assert "issuers: 1 (1 ambiguous)" in summary
    assert "saml: 2 (legacy 1, shadow 0, workos 1)" in summary


# --- run_import --------------------------------------------------------------------------------


def test_run_import_to_stdout_puts_the_summary_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_import(str(SHARED / "redacted"), "-", out, err) == 0
    assert parse_routemap(out.getvalue()).connections.keys() >= {"initech-okta"}
    assert "imported 7 connection(s) (tenant globex-prod)" in err.getvalue()
    assert "imported" not in out.getvalue()


def test_run_import_to_a_file_prints_summary_and_sha256(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    out, err = io.StringIO(), io.StringIO()
    assert run_import(str(SHARED / "redacted" / "sso"), str(target), out, err) == 0
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert out.getvalue().endswith(f"wrote {target} (sha256 {digest})\n")
    assert "saml: 4 (legacy 4, shadow 0, workos 0)" in out.getvalue()
    assert "oidc: 3 (legacy 3, shadow 0, workos 0)" in out.getvalue()
    assert err.getvalue() == ""


def test_reimport_keeps_the_rollout_state_of_an_existing_map(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), io.StringIO()) == 0
    edited = target.read_text().replace("mode: normal", "mode: shadow")
    edited = edited.replace(
        "initech-okta:\n    protocol: saml\n    state: legacy",
        "initech-okta:\n    protocol: saml\n    state: workos",
    )
    target.write_text(edited)
    out = io.StringIO()
    assert run_import(str(SHARED / "redacted"), str(target), out, io.StringIO()) == 0
    rm = parse_routemap(target.read_bytes())
    assert rm.connections["initech-okta"].state == "workos"
    assert rm.mode == "shadow"
    assert "initech-okta: state workos kept from the existing route map (export says legacy)" in out.getvalue()


def test_run_import_does_not_overwrite_an_invalid_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("version: 2\n# hand edits in progress\n")
    err = io.StringIO()
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), err) == 1
    assert "exists and is not a valid route map" in err.getvalue()
    assert target.read_text() == "version: 2\n# hand edits in progress\n"


# --- write_routemap_atomic ---------------------------------------------------------------------


def test_atomic_write_keeps_mode_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("old")
    target.chmod(0o640)
    write_routemap_atomic("new: ü\n", str(target))
    assert target.read_text(encoding="utf-8") == "new: ü\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["routes.yaml"]


def test_atomic_write_new_file_is_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    write_routemap_atomic("x: 1\n", str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.yaml"
    real.write_text("old")
    link = tmp_path / "routes.yaml"
    link.symlink_to(real)
    write_routemap_atomic("new\n", str(link))
    assert link.is_symlink()
    assert real.read_text() == "new\n"


def test_atomic_write_failure_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.mkdir()  # the rename over a directory fails after the temp file was written
    with pytest.raises(OSError):
        write_routemap_atomic("x\n", str(target))
    assert os.listdir(tmp_path) == ["routes.yaml"]
    assert target.is_dir()


def test_reimport_keeps_a_hand_set_workos_acs_url_on_the_custom_domain(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), io.StringIO()) == 0
    acs = "https://auth.globex.com/sso/saml/acs/conn_1"
    text = target.read_text().replace(
        "    organization: org_Q2xV9kLm3PzR7tWc\n",
        f"    organization: org_Q2xV9kLm3PzR7tWc\n    workos_acs_url: {acs}\n",
        1,
    )
    target.write_text(text)
    # Without the custom domain the existing file does not validate, so it is left alone.
    err = io.StringIO()
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), err) == 1
    assert "workos_acs_url" in err.getvalue()
    assert target.read_text() == text
    out = io.StringIO()
    assert run_import(str(SHARED / "redacted"), str(target), out, io.StringIO(), workos_domain="auth.globex.com") == 0
    assert (
        parse_routemap(target.read_bytes(), workos_domain="auth.globex.com").connections["initech-okta"].workos_acs_url
        == acs
    )
    assert "initech-okta: workos_acs_url kept from the existing route map" in out.getvalue()


def test_connection_csv_rows_without_external_id_are_skipped(tmp_path: Path) -> None:
    saml = saml_csv({"name": "acme-okta", "idpEntityId": "http://idp/1"})
    oidc = oidc_csv({"name": "acme-oidc", "clientId": "cid"}, {"clientId": "cid2", "externalId": "acme-oidc"})
    result = import_export(str(write_package(tmp_path, routes=[route("a")], saml=saml, oidc=oidc)))
    assert sorted(result.route_map.connections) == ["a", "acme-oidc"]
    assert result.skipped == [
        SkippedRow("sso/saml_connections.csv", 2, "no externalId"),
        SkippedRow("sso/oidc_connections.csv", 2, "no externalId"),
    ]


def test_conflicting_single_values_keep_the_first_and_warn(tmp_path: Path) -> None:
    rows = [route("a", organizationExternalId="org_1"), route("a", organizationExternalId="org_2")]
    result = import_export(str(write_package(tmp_path, routes=rows)))
    assert result.route_map.connections["a"].organizations == ("org_1",)
    assert "a: sso/proxy_routes.csv:3 gives organization 'org_2'; keeping 'org_1'" in result.warnings


def test_reimport_keeps_connections_gone_from_the_export_unless_pruned(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    first = write_package(tmp_path / "one", routes=[route("a"), route("b")])
    second = write_package(tmp_path / "two", routes=[route("a")])
    assert run_import(str(first), str(target), io.StringIO(), io.StringIO()) == 0
    out = io.StringIO()
    assert run_import(str(second), str(target), out, io.StringIO()) == 0
    assert list(parse_routemap(target.read_bytes()).connections) == ["a", "b"]
    assert "not in this export, kept from the existing map: 1 (--prune drops them)\n  b: legacy" in out.getvalue()
    assert "# [import] not in the latest export; kept" in target.read_text()
    out = io.StringIO()
    assert run_import(str(second), str(target), out, io.StringIO(), prune=True) == 0
    assert list(parse_routemap(target.read_bytes()).connections) == ["a"]
    assert "b: not in this export; dropped (--prune), was legacy" in out.getvalue()


def test_a_fresh_import_is_fully_transparent() -> None:
    """Deploying a freshly imported map changes nothing: every connection and every unknown to Auth0."""
    result = import_export(str(SHARED / "redacted"))
    assert result.route_map.unknown == "auth0"
    assert result.route_map.mode == "normal"
    assert {conn.state for conn in result.route_map.connections.values()} == {"legacy"}


# --- hostile packages (issue 11, finding 9) ------------------------------------------------------


def _deep_json(depth: int) -> str:
    return '{"sourceTenant": "acme.us.auth0.com", "x": ' + "[" * depth + "]" * depth + "}"


def _package(tmp_path: Path, manifest: str | bytes | None = MANIFEST, **files: str | bytes) -> Path:
    """A package with proxy_routes.csv = one good row unless given; values are written as given."""
    root = tmp_path / "pkg"
    write_package(root, routes=[route("ok")], manifest=None)
    if manifest is not None:
        data = manifest.encode() if isinstance(manifest, str) else manifest
        (root / "manifest.json").write_bytes(data)
    for name, content in files.items():
        path = root / "sso" / f"{name}.csv"
        if content == "<dir>":
            path.unlink(missing_ok=True)
            path.mkdir()
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


# (setup, expected start of the one error line after "error: ")
HOSTILE_EXPORTS: list[tuple[str, dict[str, str | bytes | None], str]] = [
    (
        "manifest huge integer",
        {"manifest": '{"sourceTenant": "acme.us.auth0.com", "n": ' + "9" * 100_000 + "}"},
        "manifest.json: not valid JSON",
    ),
    ("manifest huge float", {"manifest": '{"sourceTenant": "acme.us.auth0.com", "n": 1e999999}'}, ""),
    ("manifest deep nesting", {"manifest": _deep_json(100_000)}, "manifest.json: not valid JSON: nested too deeply"),
    ("manifest over 1 MiB", {"manifest": '{"pad": "' + "x" * (1 << 20) + '"}'}, "manifest.json: larger than"),
    (
        "manifest not JSON",
        {"manifest": '{"sourceTenant": "acme.us.auth0.com",\n  oops}'},
        "manifest.json:2:3: not valid JSON",
    ),
    ("manifest not UTF-8", {"manifest": b'{"sourceTenant": "\xff"}'}, "manifest.json:1: not UTF-8"),
    ("manifest a directory", {"manifest": None, "dir_manifest": ""}, ""),
    ("manifest a list", {"manifest": "[1, 2]"}, ""),
    (
        "csv not UTF-8 on line 3",
        {"proxy_routes": ROUTES_HEADER + "\n" + route("a") + "\n" + "b\xff".encode("latin-1").decode("latin-1")},
        "",
    ),
    (
        "csv bad bytes",
        {"proxy_routes": (ROUTES_HEADER + "\n" + route("a") + "\n").encode() + b"\xff\xfe\n"},
        "sso/proxy_routes.csv:3: not UTF-8",
    ),
    ("csv unclosed quote", {"proxy_routes": ROUTES_HEADER + '\n"unclosed,' + "x" * 10}, "sso/proxy_routes.csv:"),
    (
        "csv field over the limit",
        {"proxy_routes": ROUTES_HEADER + '\n"' + "x" * 200_000 + '"\n'},
        "sso/proxy_routes.csv:2: malformed CSV",
    ),
    ("csv NUL byte", {"proxy_routes": ROUTES_HEADER + "\n" + route("a") + "\x00\n"}, ""),
    (
        "csv column twice",
        {"proxy_routes": "externalId,protocol,externalId\na,saml,b\n"},
        "sso/proxy_routes.csv:1: column named more than once: 'externalId'",
    ),
    ("csv header only", {"proxy_routes": ROUTES_HEADER + "\n"}, ""),
    ("csv empty", {"proxy_routes": ""}, ""),
    ("csv a directory", {"saml_connections": "<dir>"}, ""),
    ("csv binary junk", {"oidc_connections": bytes(range(256)) * 4}, "sso/oidc_connections.csv:"),
    ("csv many columns", {"proxy_routes": ",".join(f"c{i}" for i in range(100_000)) + "\n" + "," * 99_999 + "\n"}, ""),
]


@pytest.mark.parametrize(("setup", "files", "expected"), HOSTILE_EXPORTS, ids=[h[0] for h in HOSTILE_EXPORTS])
def test_hostile_exports_get_one_located_error_or_import(
    tmp_path: Path, setup: str, files: dict[str, str | bytes | None], expected: str
) -> None:
    """Every malformed package ends in exit 1 and one located ``error:`` line, or imports cleanly: never a traceback."""
    files = dict(files)
    manifest = files.pop("manifest", MANIFEST)
    dir_manifest = files.pop("dir_manifest", None)
    root = _package(tmp_path, manifest=manifest, **{k: v for k, v in files.items() if v is not None})
    if dir_manifest is not None:
        (root / "manifest.json").mkdir()
    out, err = io.StringIO(), io.StringIO()
    code = run_import(str(root), str(tmp_path / "routes.yaml"), out, err)
    if expected:
        assert code == 1, (out.getvalue(), err.getvalue())
        lines = err.getvalue().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: " + expected), lines[0]
        assert len(lines[0]) < 500
        assert not (tmp_path / "routes.yaml").exists()
    else:
        assert code in (0, 1), err.getvalue()
        if code == 1:
            lines = err.getvalue().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), lines
        else:
            parse_routemap((tmp_path / "routes.yaml").read_text())


def test_hostile_export_through_the_command_line_has_no_traceback(tmp_path: Path) -> None:
    root = _package(tmp_path, manifest=_deep_json(100_000))
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "routes", "import", str(root), "-o", str(tmp_path / "r.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == "error: manifest.json: not valid JSON: nested too deeply\n"
    assert "Traceback" not in done.stdout + done.stderr


SEPARATORS = ["\u2028", "\u2029", "\u0085", "\r", "\x0b", "\x0c", "\x1b", "\u202e", "\u200b", "\x7f"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
def test_names_with_line_separators_or_controls_are_skipped_and_cannot_inject_yaml(tmp_path: Path, sep: str) -> None:
    evil = f"evil{sep}defaults: {{mode: auth0}}{sep}#"
    rows = [route("ok"), route("x").replace("x,", f'"{evil}",', 1)]
    result = import_export(str(write_package(tmp_path, routes="\n".join([ROUTES_HEADER, *rows]) + "\n")))
    assert set(result.route_map.connections) == {"ok"}
    [skipped] = result.skipped
    assert skipped.line == 3 and "control, format or line-separator character" in skipped.reason
    assert sep not in result.summary()


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
def test_generated_header_comment_cannot_be_injected_into(tmp_path: Path, sep: str) -> None:
    # An identifier shared by two connections is quoted into a header comment line.
    shared = f"https://shared{sep}defaults: {{mode: auth0}}{sep}"
    rows = [route("a", sourceEntityId=f'"{shared}"'), route("b", sourceEntityId=f'"{shared}"')]
    result = import_export(str(write_package(tmp_path, routes=rows)))
    text = render(result)
    header = text[: text.index("version: 1")]
    assert len(header.splitlines()) == len(header_lines(result)), header
    assert all(line.startswith("# ") for line in header.splitlines())
    assert sep not in header
    for separator in ("\n", "\r", "\x85", "\u2028", "\u2029"):
        assert all(separator not in line for line in header.split("\n")[:-1])
    rm = parse_routemap(text)
    assert rm.mode == "normal"
    assert rm.ambiguous["audiences"][shared.strip()] == ("a", "b")  # the value itself round-trips in the YAML body


def test_many_rows_of_one_connection_import_in_linear_time(tmp_path: Path) -> None:
    """Identifiers per connection were kept in lists (`in` per add): 20,000 rows of one connection was quadratic."""
    rows = [route("a", customAcsUrl=f"https://login.acme.com/login/callback?connection=a&n={i}") for i in range(20_000)]
    result = import_export(str(write_package(tmp_path, routes=rows)))
    assert len(result.route_map.connections["a"].acs_urls) == 20_001


@pytest.mark.parametrize("age", [0.0, 3600.0])
def test_stale_temp_files_of_a_killed_write_are_removed_by_the_next_write(tmp_path: Path, age: float) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("version: 1\n")
    stale = tmp_path / ".routes.yaml.abc123.tmp"
    stale.write_text("half a map")
    old = time.time() - age
    os.utime(stale, (old, old))
    unrelated = tmp_path / ".other.yaml.abc123.tmp"
    unrelated.write_text("x")
    os.utime(unrelated, (old, old))
    write_routemap_atomic("version: 1\n# new\n", str(target))
    assert target.read_text() == "version: 1\n# new\n"
    assert stale.exists() is (age == 0.0)  # a fresh one may belong to a writer that has not locked it yet
    assert unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == sorted(
        [unrelated.name] + ([stale.name] if age == 0.0 else [])
    )


def test_a_temp_file_locked_by_a_live_writer_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.write_text("version: 1\n")
    live = tmp_path / ".routes.yaml.live.tmp"
    live.write_text("being written")
    os.utime(live, (time.time() - 3600, time.time() - 3600))
    with live.open("rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        assert remove_stale_temp_files(str(target)) == []
        assert live.exists()
    assert remove_stale_temp_files(str(target)) == [str(live)]


def test_a_routes_set_killed_mid_write_leaves_a_temp_file_the_next_set_removes(tmp_path: Path) -> None:
    """`kill -9` of `routes set` between creating and renaming its temp file, through the real command."""
    target = tmp_path / "routes.yaml"
    target.write_text("version: 1\nconnections:\n  acme:\n    protocol: saml\n    state: legacy\n")
    # A child that takes the same path as `routes set` but stops (SIGSTOP) before the rename, then is killed.
    script = (
        "import os, signal, proxy.migrate.routefile as e\n"
        "real = os.replace\n"
        "def stop(*a):\n"
        "    os.kill(os.getpid(), signal.SIGSTOP)\n"
        "os.replace = stop\n"
        f"e.write_routemap_atomic('version: 1\\n', {str(target)!r})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".routes.yaml.*.tmp")) or _state(child.pid) != "T":
        assert time.monotonic() < deadline, "the child did not reach the rename"
        time.sleep(0.05)
    [left] = list(tmp_path.glob(".routes.yaml.*.tmp"))
    old = time.time() - 3600
    os.utime(left, (old, old))
    assert remove_stale_temp_files(str(target)) == []  # still locked by the stopped writer
    child.kill()
    child.wait()
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "routes", "set", "acme", "workos", "--routes", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob(".routes.yaml.*.tmp")) == []
    assert "state: workos" in target.read_text()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


# --- the whole package: warnings.jsonl, issuers, reachability, re-import -------------------------


@pytest.mark.parametrize(
    ("discovery", "issuers", "remark"),
    [
        (
            "https://sso.initech.com/oauth2/default/.well-known/openid-configuration",
            ("https://sso.initech.com/oauth2/default",),
            None,
        ),
        (
            "https://login.microsoftonline.com/0c8f7b1e-3a2d-4f5e-9b6c-7d8e9f0a1b2c/v2.0/.well-known/openid-configuration",
            (
                "https://login.microsoftonline.com/0c8f7b1e-3a2d-4f5e-9b6c-7d8e9f0a1b2c/v2.0",
                "https://sts.windows.net/0c8f7b1e-3a2d-4f5e-9b6c-7d8e9f0a1b2c/",
            ),
            None,
        ),
        (  # a v1 discovery URL and an upper-case GUID: the same tenant, the same two issuers
            "https://login.microsoftonline.com/0C8F7B1E-3A2D-4F5E-9B6C-7D8E9F0A1B2C/.well-known/openid-configuration",
            (
                "https://login.microsoftonline.com/0c8f7b1e-3a2d-4f5e-9b6c-7d8e9f0a1b2c/v2.0",
                "https://sts.windows.net/0c8f7b1e-3a2d-4f5e-9b6c-7d8e9f0a1b2c/",
            ),
            None,
        ),
        ("https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration", (), "names no tenant"),
        (
            "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration",
            (),
            "names no tenant",
        ),
        (
            "https://login.microsoftonline.com/umbrellacorp.onmicrosoft.com/v2.0/.well-known/openid-configuration",
            (),
            "tenant named by domain 'umbrellacorp.onmicrosoft.com'",
        ),
        ("https://accounts.google.com/.well-known/openid-configuration", (), "shared by every Google account"),
    ],
)
def test_oidc_issuers(discovery: str, issuers: tuple[str, ...], remark: str | None) -> None:
    from proxy.migrate.export import oidc_issuers

    got, said = oidc_issuers(discovery)
    assert got == issuers
    assert (said is None) if remark is None else (said is not None and remark in said)


@pytest.mark.parametrize(
    ("urls", "unconfirmed", "says"),
    [
        (["https://login.globex.com/login/callback?connection=a"], False, ""),
        (["https://globex-prod.eu.auth0.com/login/callback?connection=a"], True, "on globex-prod.eu.auth0.com"),
        (  # one URL on the custom domain is enough: the IdP can be configured with it
            ["https://globex-prod.eu.auth0.com/login/callback", "https://LOGIN.globex.com/login/callback"],
            False,
            "",
        ),
        ([], True, "no callback URL is recorded"),
        (["https://LOGIN.GLOBEX.COM/login/callback"], False, ""),
    ],
)
def test_reachability_remark(urls: list[str], unconfirmed: bool, says: str) -> None:
    from proxy.migrate.export import reachability_remark

    remark = reachability_remark(urls, "login.globex.com")
    assert (remark is not None) == unconfirmed
    if remark is not None:
        assert says in remark and "may post to Auth0 directly" in remark


@pytest.mark.parametrize("variant", ["redacted", "with-secrets"])
def test_real_package_notes_reach_the_summary_and_the_map(variant: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_import(str(SHARED / variant), "-", out, err, custom_domain="login.globex.com") == 0
    summary, text = err.getvalue(), out.getvalue()
    assert "connections the exporter skipped (imported as legacy, not in WorkOS): 1" in summary
    assert "Auth0 connections that stay on Auth0: 2" in summary
    assert "google-oauth2 (social or other, strategy google-oauth2) stays on Auth0" in summary
    assert "Username-Password-Authentication (database, strategy auth0) stays on Auth0" in summary
    assert "customer confirmation required before activation" in summary
    # Encrypted assertions: from warnings.jsonl (redacted) or the key column being filled (with secrets).
    assert "umbrella-onelogin: uses encrypted assertions" in summary
    assert "callbacks not recorded on login.globex.com: 6 connection(s)" in summary
    rm = parse_routemap(text)
    unconfirmed = sorted(n for n, c in rm.connections.items() if c.reachability == "unconfirmed")
    assert unconfirmed == [
        "hooli-okta-sandbox",
        "hooli-pingfederate",
        "initech-group-oidc",
        "initech-okta",
        "initrode-google",
        "umbrella-entra",
    ]  # umbrella-onelogin's ACS URL is on the custom domain
    lines = text.splitlines()
    at = lines.index("  initech-group-oidc:")
    assert "customer confirmation required" in lines[at - 2]
    assert lines[at - 1].startswith("  # [import] reachability unconfirmed")
    assert any(line.startswith("# [import] google-oauth2 (social") for line in lines)


def test_reimport_keeps_operator_comments_and_hand_added_identifiers(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), io.StringIO()) == 0
    text = target.read_text()
    text = text.replace("  initech-okta:\n", "  # Ann: change window 2026-12-01\n  initech-okta:  # OPS-12\n")
    text = text.replace(
        "    - https://sso.hooli.xyz/idp\n    issuers:",
        "    - https://sso.hooli.xyz/idp\n    - https://hand.example/sp  # added by hand\n    issuers:",
    )
    text = text.replace("  unknown: auth0\n", "  unknown: workos  # flipped after binding\n")
    target.write_text(text)
    out = io.StringIO()
    assert run_import(str(SHARED / "redacted"), str(target), out, io.StringIO()) == 0
    after = target.read_text()
    assert "  # Ann: change window 2026-12-01\n  initech-okta:  # OPS-12\n" in after
    assert "    - https://hand.example/sp  # added by hand\n" in after
    assert "  unknown: workos  # flipped after binding\n" in after
    assert "hooli-pingfederate: 1 identifier(s) not in the export kept" in out.getvalue()
    # And a third import with nothing changed writes the same bytes.
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), io.StringIO()) == 0
    assert target.read_text() == after


def test_run_import_refuses_an_unreadable_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    target.write_bytes(b"\xff\xfe")
    err = io.StringIO()
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), err) == 1
    assert "exists and cannot be read" in err.getvalue()


# --- a connection shared by several organizations (issue 22) ----------------------------------------

INITECH, INITRODE = "org_Q2xV9kLm3PzR7tWc", "org_8HnB4sYd1GfJ6eKa"


@pytest.mark.parametrize("variant", ["redacted", "with-secrets"])
def test_real_package_files_a_shared_connection_under_every_organization(variant: str, tmp_path: Path) -> None:
    result = import_export(str(SHARED / variant))
    shared = result.route_map.connections["initech-group-oidc"]
    assert shared.organizations == (INITECH, INITRODE)  # from warnings.jsonl, never the con_ id
    target = tmp_path / "routes.yaml"
    assert run_import(str(SHARED / variant), str(target), io.StringIO(), io.StringIO()) == 0
    text = target.read_text()
    assert "con_" not in text
    assert f"    organizations:\n    - {INITECH}\n    - {INITRODE}\n" in text
    assert f"    organization: {INITECH}\n" in text  # initech-okta: the single form
    assert parse_routemap(text).connections["initech-group-oidc"].organizations == (INITECH, INITRODE)


def test_reimport_replaces_a_con_id_an_earlier_import_filed_it_under(tmp_path: Path) -> None:
    target = tmp_path / "routes.yaml"
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), io.StringIO()) == 0
    text = target.read_text()
    old = f"    organizations:\n    - {INITECH}\n    - {INITRODE}\n"
    target.write_text(text.replace(old, "    organization: con_Oi3Dc7Gr1Pq5Ls9T\n"))
    out = io.StringIO()
    assert run_import(str(SHARED / "redacted"), str(target), out, io.StringIO()) == 0
    assert old in target.read_text()
    said = f"initech-group-oidc: organizations {INITECH}, {INITRODE} from the export replace con_Oi3Dc7Gr1Pq5Ls9T"
    assert said in out.getvalue()


def test_a_con_id_in_the_organization_column_without_a_warning_files_it_nowhere(tmp_path: Path) -> None:
    result = import_export(str(write_package(tmp_path, routes=[route("acme-okta", organizationExternalId="con_1")])))
    assert result.route_map.connections["acme-okta"].organizations == ()
    assert any("holds the connection id 'con_1'" in w for w in result.warnings)


def test_reimport_keeps_when_each_state_changed(tmp_path: Path) -> None:
    from proxy.migrate.edit import run_set

    target = tmp_path / "routes.yaml"
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), io.StringIO()) == 0
    assert run_set(str(target), ["initech-okta"], "workos", io.StringIO(), io.StringIO()) == 0
    stamped = parse_routemap(target.read_text()).connections["initech-okta"].state_changed
    assert stamped is not None
    assert run_import(str(SHARED / "redacted"), str(target), io.StringIO(), io.StringIO()) == 0
    text = target.read_text()
    assert f"    state: workos\n    state_changed: {stamped}\n" in text
    assert parse_routemap(text).connections["initech-okta"].state_changed == stamped
