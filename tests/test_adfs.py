"""Issue 23: connections that cannot move transparently. Auth0's ADFS connections (strategy ``adfs``)
speak WS-Federation; WorkOS takes AD FS only as SAML. The real export has none, so one is added to a
copy of it as the WorkOS exporter (``@workos/migrations``) writes one: its raw connection in
``raw/auth0-connections.jsonl`` (options as Auth0's Management API returns them for ``adfs``:
``adfs_server``, ``signInEndpoint``, ``thumbprints``), and, because the exporter reads
``signInEndpoint`` as a SAML SSO URL but finds no entity ID or certificate, an
``incomplete_connection_configuration`` warning (protocol saml, strategy adfs) instead of a CSV row.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.migrate.edit import run_set
from proxy.migrate.export import run_import
from proxy.routing.routemap import load_routemap, parse_routemap

EXPORT = Path(__file__).resolve().parent / "fixtures" / "auth0-export" / "redacted"
ADFS = "hooli-adfs"
RAW = {
    "id": "con_Ad7Fs2Wf9Hq4Lm1N",
    "name": ADFS,
    "display_name": "Hooli AD FS",
    "strategy": "adfs",
    "is_domain_connection": False,
    "enabled_clients": ["kQ7v2XbN9mLp4RtY8sWc3HdF6jGa1ZeU"],
    "realms": [ADFS],
    "show_as_button": True,
    "options": {
        "adfs_server": "https://adfs.hooli.com/FederationMetadata/2007-06/FederationMetadata.xml",
        "signInEndpoint": "https://adfs.hooli.com/adfs/ls/",
        "thumbprints": ["3f5a1c2b9e8d7f6a5b4c3d2e1f0a9b8c7d6e5f4a"],
        "domain_aliases": ["hooli.com"],
        "tenant_domain": "hooli.com",
    },
}
WARNING = {
    "timestamp": "2026-11-28T08:38:20.463Z",
    "code": "incomplete_connection_configuration",
    "message": f"auth0 saml connection {ADFS} was skipped because required handoff configuration was not available.",
    "connection_name": ADFS,
    "protocol": "saml",
    "details": {
        "strategy": "adfs",
        "missingFields": ["idpEntityId", "x509Cert"],
        "reason": "SAML handoff requires IdP metadata URL or the entity ID, SSO URL, and signing certificate.",
    },
}


@pytest.fixture()
def export(tmp_path: Path) -> Path:
    """A copy of the real export with one ADFS connection, as the exporter writes it."""
    root = tmp_path / "export"
    shutil.copytree(EXPORT, root)
    with (root / "raw" / "auth0-connections.jsonl").open("a") as fh:
        fh.write(json.dumps(RAW, separators=(",", ":")) + "\n")
    with (root / "warnings.jsonl").open("a") as fh:
        fh.write(json.dumps(WARNING, separators=(",", ":")) + "\n")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["entitiesExported"]["warnings"] += 1
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return root


def imported(export: Path, tmp_path: Path) -> Path:
    routes = tmp_path / "routes.yaml"
    out, err = io.StringIO(), io.StringIO()
    assert run_import(str(export), str(routes), out, err) == 0, err.getvalue()
    return routes


def test_the_real_export_has_no_adfs_connection() -> None:
    lines = (EXPORT / "raw" / "auth0-connections.jsonl").read_text().splitlines()
    strategies = {json.loads(line)["strategy"] for line in lines}
    assert "adfs" not in strategies


def test_import_marks_an_adfs_connection(export: Path, tmp_path: Path) -> None:
    routes = imported(export, tmp_path)
    conn = load_routemap(str(routes)).connections[ADFS]
    assert (conn.protocol, conn.state, conn.strategy, conn.moved_to_saml) == ("saml", "legacy", "adfs", False)
    text = routes.read_text()
    assert "WS-Federation (wresult/wctx), which WorkOS does not take (AD FS only as SAML)" in text
    assert "    strategy: adfs\n" in text
    # The other connections are what they were: no strategy written for SAML/OIDC ones.
    assert all(c.strategy is None for n, c in load_routemap(str(routes)).connections.items() if n != ADFS)


@pytest.mark.parametrize("state", ["workos", "shadow"])
def test_routes_set_refuses_it_until_the_map_records_the_move_to_saml(
    export: Path, tmp_path: Path, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = imported(export, tmp_path)
    before = routes.read_bytes()
    out, err = io.StringIO(), io.StringIO()
    assert run_set(str(routes), [ADFS], state, out, err) == 1
    said = err.getvalue()
    assert f"refused: {ADFS} is an Auth0 adfs connection: it speaks WS-Federation" in said
    assert (
        "The customer must add a SAML relying party for WorkOS first; then record it with `moved_to_saml: true`" in said
    )
    assert "nothing written" in said
    assert routes.read_bytes() == before
    # Several at once: the others are not moved either.
    assert run_set(str(routes), ["initech-okta", ADFS], state, io.StringIO(), io.StringIO()) == 1
    assert routes.read_bytes() == before

    # The customer added a SAML relying party: recorded in the map, the move is allowed.
    routes.write_text(
        routes.read_text().replace("    strategy: adfs\n", "    strategy: adfs\n    moved_to_saml: true\n")
    )
    assert main(["routes", "validate", str(routes)]) == 0
    assert f"{ADFS}: adfs, WS-Federation; moved_to_saml: true (may move)" in capsys.readouterr().out
    out = io.StringIO()
    assert run_set(str(routes), [ADFS], state, out, io.StringIO()) == 0
    assert f"{ADFS} legacy -> {state}" in out.getvalue()
    conn = load_routemap(str(routes)).connections[ADFS]
    assert (conn.state, conn.moved_to_saml) == (state, True)
    # A re-import keeps what the operator recorded and decided.
    assert run_import(str(export), str(routes), io.StringIO(), io.StringIO()) == 0
    conn = load_routemap(str(routes)).connections[ADFS]
    assert (conn.state, conn.strategy, conn.moved_to_saml) == (state, "adfs", True)


BASE = "version: 1\nconnections:\n  a:\n    protocol: saml\n"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ("    state: workos\n    strategy: adfs\n", "connections.a.state: workos: a is an Auth0 adfs connection"),
        ("    state: shadow\n    strategy: adfs\n", "connections.a.state: shadow: a is an Auth0 adfs connection"),
        ("    state: legacy\n    moved_to_saml: true\n", "connections.a.moved_to_saml: only for a WS-Federation"),
        ("    state: legacy\n    strategy: samlp\n    moved_to_saml: true\n", "moved_to_saml: only for"),
        ("    state: legacy\n    strategy: adfs\n    moved_to_saml: 'yes'\n", "moved_to_saml: must be true or false"),
        ("    state: legacy\n    strategy: [adfs]\n", "connections.a.strategy: must be a string"),
        ("    state: legacy\n    strategy: adfs\n", None),
        ("    state: workos\n    strategy: adfs\n    moved_to_saml: true\n", None),
        ("    state: workos\n    strategy: samlp\n", None),
    ],
)
def test_validate(fields: str, error: str | None) -> None:
    if error is None:
        parse_routemap(BASE + fields)
        return
    with pytest.raises(Exception) as raised:
        parse_routemap(BASE + fields)
    assert error in str(raised.value)


def test_explain_shows_the_strategy(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_explained_as_adfs(imported(export, tmp_path), ADFS, capsys)


def assert_explained_as_adfs(routes: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``explain`` of a WS-Federation sign-in to ``name``: a legacy adfs connection, kept on Auth0."""
    wsfed = "wa=wsignin1.0&wresult=%3Ct%2F%3E&wctx=rm%3D0"
    url = f"https://login.globex.com/login/callback?connection={name}"
    assert main(["explain", "--routes", str(routes), url, "-d", wsfed]) == 10
    shown = capsys.readouterr().out
    assert f"connection:     {name} (state legacy)" in shown
    assert "strategy:       adfs\n" in shown
    assert "reason:         auth0_only" in shown


# --- an ADFS connection the exporter skips as outside its scope ------------------------------------
# @workos/migrations (src/exporters/auth0/sso-mapper.ts, classifyAuth0ConnectionProtocol) reads an
# enterprise strategy as SAML only when its options carry a field it knows (metadataUrl, signInEndpoint,
# a certificate ...). An adfs connection configured by its AD FS server's address (``adfs_server``, one of
# the two ways Auth0's Management API takes, the other ``fedMetadataXml``) has none of them, so the
# exporter writes no CSV row and an ``unsupported_connection_protocol`` line whose protocol is the
# strategy (src/sso/handoff.ts, unsupportedConnectionProtocolWarning), in the form of the real export's.
SKIPPED = "initrode-adfs"
SKIPPED_RAW = {
    "id": "con_Ad9Ws4Fd2Xk7Pq3R",
    "name": SKIPPED,
    "display_name": "Initrode AD FS",
    "strategy": "adfs",
    "is_domain_connection": False,
    "enabled_clients": ["kQ7v2XbN9mLp4RtY8sWc3HdF6jGa1ZeU"],
    "realms": [SKIPPED],
    "show_as_button": True,
    "options": {
        "adfs_server": "https://adfs.initrode.com",
        "thumbprints": ["9c1e4b7a2d5f8e3a6c9b2e5d8f1a4c7b0e3d6f9a"],
        "domain_aliases": ["initrode.com"],
        "tenant_domain": "initrode.com",
    },
}
SKIPPED_WARNING = {
    "timestamp": "2026-11-28T08:38:20.432Z",
    "code": "unsupported_connection_protocol",
    "message": f"auth0 adfs connection {SKIPPED} was skipped because it is outside the WorkOS SSO handoff scope.",
    "connection_name": SKIPPED,
    "protocol": "adfs",
    "details": {
        "strategy": "adfs",
        "reason": "Auth0 enterprise strategy did not expose enough SAML or OIDC handoff configuration.",
    },
}


def skipped_export(tmp_path: Path, raw: bool = True) -> Path:
    """A copy of the real export with one ADFS connection the exporter skipped as outside its scope
    (``raw``: its raw connection too, as the exporter writes every connection there)."""
    root = tmp_path / "export-skipped"
    shutil.copytree(EXPORT, root)
    if raw:
        with (root / "raw" / "auth0-connections.jsonl").open("a") as fh:
            fh.write(json.dumps(SKIPPED_RAW, separators=(",", ":")) + "\n")
    lines = (root / "warnings.jsonl").read_text().splitlines(keepends=True)
    # The exporter writes a connection's warnings in the order it reads connections: after the other
    # skipped ones (the real export's lines 2 and 3).
    lines.insert(3, json.dumps(SKIPPED_WARNING, separators=(",", ":")) + "\n")
    (root / "warnings.jsonl").write_text("".join(lines))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["entitiesExported"]["warnings"] += 1
    manifest["warnings"].insert(3, SKIPPED_WARNING["message"])
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return root


def test_the_real_export_writes_unsupported_connections_this_way() -> None:
    """The line added is shaped as the real export's own unsupported_connection_protocol lines."""
    real = [json.loads(x) for x in (EXPORT / "warnings.jsonl").read_text().splitlines()]
    unsupported = [w for w in real if w["code"] == "unsupported_connection_protocol"]
    assert unsupported and all(sorted(w) == sorted(SKIPPED_WARNING) for w in unsupported)
    assert all(sorted(w["details"]) == sorted(SKIPPED_WARNING["details"]) for w in unsupported)
    assert all(w["protocol"] == w["details"]["strategy"] for w in unsupported)


@pytest.mark.parametrize("raw", [True, False], ids=["with-raw", "warning-only"])
def test_an_adfs_connection_skipped_as_unsupported_is_imported_and_marked(
    tmp_path: Path, raw: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Imported as a legacy SAML connection with strategy adfs (from the raw connection or, without
    it, from the warning's details), never listed as staying on Auth0."""
    routes = tmp_path / "routes.yaml"
    out, err = io.StringIO(), io.StringIO()
    assert run_import(str(skipped_export(tmp_path, raw)), str(routes), out, err) == 0, err.getvalue()
    conn = load_routemap(str(routes)).connections[SKIPPED]
    assert (conn.protocol, conn.state, conn.strategy, conn.moved_to_saml) == ("saml", "legacy", "adfs", False)
    assert conn.audiences == (f"urn:auth0:globex-prod:{SKIPPED}",)
    text = routes.read_text()
    assert f"{SKIPPED} (social or other" not in text  # not in the header's "stay on Auth0" list
    assert "WS-Federation (wresult/wctx), which WorkOS does not take (AD FS only as SAML)" in text
    assert f"  {SKIPPED}: skipped by the exporter (strategy adfs: WS-Federation" in out.getvalue()
    # The real export's own unsupported connections still stay on Auth0, out of the map.
    assert "Username-Password-Authentication" not in load_routemap(str(routes)).connections
    assert "Username-Password-Authentication (database, strategy auth0) stays on Auth0" in text

    # routes set explains, it does not say "unknown connection"; nothing is written.
    before = routes.read_bytes()
    capsys.readouterr()
    assert main(["routes", "set", SKIPPED, "workos", "--routes", str(routes), "--by", "test"]) == 1
    said = capsys.readouterr().err
    assert "unknown" not in said
    assert f"refused: {SKIPPED} is an Auth0 adfs connection: it speaks WS-Federation" in said
    assert "add a SAML relying party for WorkOS first; then record it with `moved_to_saml: true`" in said
    assert routes.read_bytes() == before

    assert main(["routes", "validate", str(routes)]) == 0
    assert f"{SKIPPED}: adfs, WS-Federation; not moved to SAML (stays legacy)" in capsys.readouterr().out

    assert_explained_as_adfs(routes, SKIPPED, capsys)
