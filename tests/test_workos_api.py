"""The WorkOS side: the API client against a real stand-in, readiness, routes check, the gate, the ID mapping."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.migrate.edit import run_set
from proxy.migrate.export import run_import
from proxy.migrate.mapping import MappingError, apply_mapping, read_auth0_ids, read_mapping
from proxy.migrate.workos_api import (
    WorkosApi,
    WorkosApiError,
    WorkosConnection,
    readiness,
    refusals,
    render_readiness,
)
from proxy.routing.routemap import Connection, make_routemap, parse_routemap
from proxy.sandbox.workos_api_standin import create_workos_api_standin, workos_connection
from tests.conftest import ROOT, ThreadServer

KEY = "sk_test_standin_key"
EXPORT = Path(__file__).resolve().parent / "fixtures" / "auth0-export" / "redacted"
MANY = [workos_connection(f"conn_{i:04d}", created=i) for i in range(250)]
MAPPED = [
    workos_connection("conn_okta", "active", "Initech", "org_01INITECH"),
    workos_connection("conn_ping", "inactive", "Hooli", "org_01HOOLI"),
    workos_connection("conn_entra", "validating", "Umbrella", "org_01UMBRELLA"),
]


@pytest.fixture(scope="module")
def api_standin() -> Iterator[ThreadServer]:
    server = ThreadServer(create_workos_api_standin(KEY, MANY + MAPPED)).start()
    yield server
    server.stop()


def test_list_follows_pagination_to_the_end(api_standin: ThreadServer) -> None:
    api = WorkosApi(KEY, api_standin.origin)
    ids = [c.id for c in api.list_connections()]
    assert ids == [c["id"] for c in MANY + MAPPED]
    assert api.requests == 3  # 100 + 100 + 53
    assert api.get_connection("conn_ping") == WorkosConnection(
        "conn_ping", "inactive", "Hooli", "org_01HOOLI", "GenericSAML"
    )
    assert api.get_connection("conn_nope") is None


@pytest.mark.parametrize(
    ("key", "base", "message"),
    [
        ("wrong", None, "WorkOS refused the API key (HTTP 401)"),
        ("", None, "WORKOS_API_KEY is not set"),
        (KEY, "ftp://x", "WORKOS_BASE_URL must be an http(s) URL"),
        (KEY, "http://127.0.0.1:9", "cannot reach http://127.0.0.1:9"),
    ],
)
def test_api_errors_are_one_line(api_standin: ThreadServer, key: str, base: str | None, message: str) -> None:
    with pytest.raises(WorkosApiError) as info:
        list(WorkosApi(key, base or api_standin.origin, timeout=3).list_connections())
    assert message in str(info.value)
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("limit=0", 422),
        ("limit=101", 422),
        ("limit=x", 422),
        ("after=conn_unknown", 422),
        ("before=conn_0001&after=conn_0002", 422),
        ("order=sideways", 422),
        ("limit=100&order=asc", 200),
    ],
)
def test_standin_is_strict(api_standin: ThreadServer, query: str, status: int) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{api_standin.origin}/connections?{query}", headers=headers).status_code == status
    assert httpx.get(f"{api_standin.origin}/connections?{query}").status_code == 401


def test_standin_pages_both_ways(api_standin: ThreadServer) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    first = httpx.get(f"{api_standin.origin}/connections?limit=2", headers=headers).json()  # desc by default
    assert [c["id"] for c in first["data"]] == ["conn_entra", "conn_ping"]
    assert first["list_metadata"] == {"before": None, "after": "conn_ping"}
    back = httpx.get(f"{api_standin.origin}/connections?limit=2&order=asc&before=conn_0003", headers=headers).json()
    assert [c["id"] for c in back["data"]] == ["conn_0001", "conn_0002"]


ROUTE_MAP = make_routemap(
    [
        Connection("a", "saml", "workos", workos_connection_id="conn_okta"),
        Connection("b", "saml", "legacy", workos_connection_id="conn_ping"),
        Connection("c", "saml", "workos", workos_connection_id="conn_gone"),
        Connection("d", "oidc", "legacy"),
        Connection("e", "oidc", "legacy", workos_connection_id="conn_okta", organizations=("org_01OTHER",)),
    ]
)


def test_readiness_table() -> None:
    found = {c["id"]: WorkosConnection(c["id"], c["state"], organization_id=c["organization_id"]) for c in MAPPED}
    rows = readiness(ROUTE_MAP, found)
    assert [(r.connection, r.workos_state, r.ready) for r in rows] == [
        ("a", "active", True),
        ("b", "inactive", False),
        ("c", "missing", False),
        ("d", "not mapped", False),
        ("e", "active", True),
    ]
    assert "organization in WorkOS is org_01INITECH, the map says org_01OTHER" in rows[4].note
    text = render_readiness(rows)
    assert "ready in WorkOS: 2 of 5" in text
    assert "cut over (or in shadow) but NOT ready in WorkOS (their logins bounce back or fail): c" in text
    assert refusals(rows, ["a", "b", "d"]) == [
        "b: WorkOS connection conn_ping is inactive (only active connections authenticate (WorkOS says inactive)); "
        "use --force to set it anyway",
        "d: WorkOS connection (none in the map) is not mapped (no workos_connection_id in the route map); "
        "use --force to set it anyway",
    ]


# --- the ID mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "mapping.csv",
            "Auth0 Connection Name,WorkOS Connection ID,WorkOS Organization ID\n"
            "initech-okta,conn_okta,org_01INITECH\n"
            "con_Pf5Hq2Lx8Rm3Nv6W,conn_ping,org_01HOOLI\n"  # an Auth0 id, matched through raw/
            "nobody,conn_x,\n"
            "broken-row\n",
        ),
        (
            "mapping.json",
            json.dumps(
                {
                    "data": [
                        {
                            "externalId": "initech-okta",
                            "workos_connection_id": "conn_okta",
                            "organization_id": "org_01INITECH",
                        },
                        {
                            "auth0_connection_id": "con_Pf5Hq2Lx8Rm3Nv6W",
                            "id": "conn_ping",
                            "organization_id": "org_01HOOLI",
                        },
                        {"name": "nobody", "workosId": "conn_x"},
                        {"name": "no workos id"},
                    ]
                }
            ),
        ),
    ],
)
def test_mapping_fills_ids_and_reports_every_unmatched_row(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    rows, bad = read_mapping(str(path))
    assert len(rows) == 3 and len(bad) == 1
    imported = parse_routemap(
        "version: 1\nconnections:\n"
        "  initech-okta: {protocol: saml, state: legacy, organization: org_Q2xV9kLm3PzR7tWc}\n"
        "  hooli-pingfederate: {protocol: saml, state: legacy}\n"
        "  umbrella-entra: {protocol: oidc, state: legacy}\n"
    )
    result = apply_mapping(imported, rows, read_auth0_ids(EXPORT))
    conns = result.route_map.connections
    assert (conns["initech-okta"].workos_connection_id, conns["initech-okta"].organizations) == (
        "conn_okta",
        ("org_01INITECH",),
    )
    assert conns["hooli-pingfederate"].workos_connection_id == "conn_ping"
    assert result.unmatched == [f"{rows[2].where}: nobody is not a connection of the route map"]
    assert result.unmapped == ["umbrella-entra"]
    assert (
        "initech-okta: workos_connection_id (none) -> conn_okta, organization org_Q2xV9kLm3PzR7tWc -> org_01INITECH"
        in result.applied
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100_000, "not valid JSON"),
        (b'{"other": 1}', "expected a list of objects"),
        (b'a,"b\n', "malformed CSV"),
    ],
)
def test_mapping_hostile_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "m"
    path.write_bytes(content)
    with pytest.raises(MappingError, match=message):
        read_mapping(str(path))
    with pytest.raises(MappingError, match="cannot read"):
        read_mapping(str(tmp_path / "absent"))


def test_import_with_the_workos_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("externalId,workos_connection_id\ninitech-okta,conn_okta\nghost,conn_ghost\n")
    out = io.StringIO()
    target = tmp_path / "routes.yaml"
    assert run_import(str(EXPORT), str(target), out, io.StringIO(), workos_mapping=str(mapping)) == 0
    assert parse_routemap(target.read_text()).connections["initech-okta"].workos_connection_id == "conn_okta"
    summary = out.getvalue()
    assert "WorkOS ID mapping: 1 connection(s) updated" in summary
    assert "mapping rows not used: 1\n  mapping.csv:3: ghost is not a connection of the route map" in summary
    err = io.StringIO()
    assert run_import(str(EXPORT), str(target), io.StringIO(), err, workos_mapping=str(tmp_path / "nope")) == 1
    assert "error: --workos-mapping:" in err.getvalue()


# --- routes check and the cut-over gate, as an operator runs them ----------------------------------

MAP_TEXT = """\
version: 1
defaults: {unknown: auth0, mode: normal}
connections:
  initech-okta:
    protocol: saml
    state: legacy
    workos_connection_id: conn_okta
  hooli-pingfederate:
    protocol: saml
    state: legacy  # Hooli's WorkOS connection is not active yet
    workos_connection_id: conn_ping
  umbrella-entra:
    protocol: oidc
    state: legacy
"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WORKOS_", "SSO_PROXY_", "AUTH0_"))}
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_routes_check_prints_readiness(api_standin: ThreadServer, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(MAP_TEXT)
    env = {"WORKOS_API_KEY": KEY, "WORKOS_BASE_URL": api_standin.origin}
    done = cli("routes", "check", "--routes", str(routes), env=env)
    assert done.returncode == 0, done.stderr  # nothing is cut over yet
    assert "ready in WorkOS: 1 of 3" in done.stdout
    assert done.stdout.splitlines()[1].split()[:5] == ["hooli-pingfederate", "legacy", "conn_ping", "inactive", "no"]
    refused = cli("routes", "check", "--routes", str(routes), env={**env, "WORKOS_API_KEY": "wrong"})
    assert refused.returncode == 1
    assert refused.stderr == "sso-proxy routes check: WorkOS refused the API key (HTTP 401); check WORKOS_API_KEY\n"


def test_routes_set_workos_is_gated_by_workos(api_standin: ThreadServer, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(MAP_TEXT)
    env = {"WORKOS_API_KEY": KEY, "WORKOS_BASE_URL": api_standin.origin, "USER": "ann"}
    refused = cli("routes", "set", "initech-okta", "hooli-pingfederate", "workos", "--routes", str(routes), env=env)
    assert refused.returncode == 1
    assert "refused: hooli-pingfederate: WorkOS connection conn_ping is inactive" in refused.stderr
    assert routes.read_text() == MAP_TEXT
    ok = cli("routes", "set", "initech-okta", "workos", "--routes", str(routes), env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{routes}: initech-okta legacy -> workos (by ann, sha256 ")
    forced = cli("routes", "set", "hooli-pingfederate", "workos", "--force", "--routes", str(routes), env=env)
    assert forced.returncode == 0, forced.stderr
    assert "warning (--force): hooli-pingfederate: WorkOS connection conn_ping is inactive" in forced.stderr
    assert "# Hooli's WorkOS connection is not active yet" in routes.read_text()
    # Back to legacy is never gated; without WORKOS_API_KEY nothing is asked.
    assert cli("routes", "set", "hooli-pingfederate", "legacy", "--routes", str(routes), env=env).returncode == 0
    no_key = {"USER": "ann"}
    assert cli("routes", "set", "umbrella-entra", "workos", "--routes", str(routes), env=no_key).returncode == 0


def test_gate_with_an_unreachable_api(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(MAP_TEXT)
    env = {"WORKOS_API_KEY": KEY, "WORKOS_BASE_URL": "http://127.0.0.1:9"}
    refused = cli("routes", "set", "initech-okta", "workos", "--routes", str(routes), env=env)
    assert refused.returncode == 1 and "refused: cannot check WorkOS: cannot reach" in refused.stderr
    assert cli("routes", "set", "initech-okta", "workos", "--force", "--routes", str(routes), env=env).returncode == 0


def test_run_set_accepts_a_gate_directly(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(MAP_TEXT)
    err = io.StringIO()
    assert run_set(str(routes), ["initech-okta"], "workos", io.StringIO(), err, gate=lambda rm, ch: ["no"]) == 1
    assert "refused: no" in err.getvalue()
