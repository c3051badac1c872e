"""The ``sso-proxy`` commands operators run: ``routes validate``, ``explain``, and import -> validate -> set.

``explain`` must agree with the server: each callback of a table is sent to a running proxy and its
decision, read from the proxy's own ``callback`` log line, is compared with what ``explain`` prints
for the same inputs (URL + form body, and the same request saved as a raw HTTP request).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from proxy.cli import main
from tests.conftest import ProxyProcess, StandIns, clean_env, run_cli, start_proxy
from tests.samples import XXE, id_token, saml_b64, saml_form, saml_redirect_query, saml_xml

EXPORTS = Path(__file__).resolve().parent / "fixtures" / "auth0-export"
ORIGIN = "https://login.globex.com"
FORM = "application/x-www-form-urlencoded"

ROUTES = """\
version: 1
defaults:
  unknown: workos
  mode: normal
connections:
  acme-okta:
    protocol: saml
    state: workos
    audiences: [urn:auth0:globex-prod:acme-okta]
    issuers: [http://www.okta.com/acme]
  globex-adfs:
    protocol: saml
    state: legacy
    audiences: [urn:auth0:globex-prod:globex-adfs]
    issuers: [http://adfs.globex.com/adfs/services/trust]
  globex-adfs-eu:
    protocol: saml
    state: workos
    issuers: [http://adfs.globex.com/adfs/services/trust]   # shared: identifies neither
    acs_urls:
    - https://login.globex.com/login/callback?connection=globex-adfs-eu
  initech-entra:
    protocol: oidc
    state: workos
    client_ids: [3f2a9c1e-entra]
    issuers: [https://login.microsoftonline.com/initech/v2.0]
  umbrella-google:
    protocol: oidc
    state: legacy
    client_ids: [umbrella-google-client]
    issuers: [https://accounts.google.com]
"""

SHARED_ISSUER = "http://adfs.globex.com/adfs/services/trust"


def explained(output: str) -> dict[str, str]:
    """explain's ``key: value`` lines -> {key: first word of the value}."""
    out: dict[str, str] = {}
    for line in output.splitlines():
        match = re.match(r"^([a-z][a-z ]*):\s+(\S+)", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


@pytest.fixture(scope="module")
def routes_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "routes.yaml"
    path.write_text(ROUTES)
    return path


# --- routes validate --------------------------------------------------------------------------

INVALID = """\
version: 2
defaults:
  unknown: maybe
  mode: normal
  colour: red
connections:
  acme-okta:
    protocol: ldap
    state: workos
    colour: blue
    workos_acs_url: https://evil.example.com/acs
    audiences: [""]
  globex-adfs: {protocol: saml}
  hooli: just-a-string
"""

# (connection or section, field) of every error INVALID holds.
INVALID_ERRORS = [
    ("", "version"),
    ("defaults", "unknown"),
    ("defaults", "colour"),
    ("acme-okta", "protocol"),
    ("acme-okta", "colour"),
    ("acme-okta", "workos_acs_url"),
    ("acme-okta", "audiences[0]"),
    ("globex-adfs", "state"),
    ("hooli", ""),
]


def test_validate_valid_map(routes_path: Path) -> None:
    result = run_cli("routes", "validate", str(routes_path))
    assert result.returncode == 0, result.stderr
    assert f"{routes_path}: valid; 5 connections (2 legacy, 0 shadow, 3 workos)" in result.stdout
    # The shared ADFS issuer is valid but named as a warning.
    assert SHARED_ISSUER in result.stderr
    assert "globex-adfs, globex-adfs-eu" in result.stderr


def test_validate_reports_every_error_located(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(INVALID)
    result = run_cli("routes", "validate", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1] == f"{path}: invalid ({len(INVALID_ERRORS)} error(s))"
    errors = lines[:-1]
    assert len(errors) == len(INVALID_ERRORS), result.stderr
    for section, field in INVALID_ERRORS:
        if section in ("", "defaults"):
            where = f"{path}: {section + '.' if section else ''}{field}:"
        else:
            where = f"{path}: connections.{section}{'.' + field if field else ''}:"
        assert any(line.startswith(where) for line in errors), f"no error located at {where!r}:\n{result.stderr}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nconnections:\n  acme: [unclosed\n", r":\d+:\d+: not valid YAML"),
        ("- just\n- a list\n", r": must be a mapping with version, defaults, connections"),
        ("version: 1\nconnections:\n  acme: {protocol: saml, state: workos, audiences: 5}\n", r"acme\.audiences"),
    ],
    ids=["yaml-syntax", "not-a-mapping", "wrong-type"],
)
def test_validate_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    result = run_cli("routes", "validate", str(path))
    assert result.returncode == 1
    assert re.search(re.escape(str(path)) + ".*" + expected, result.stderr), result.stderr


def test_validate_missing_file(tmp_path: Path) -> None:
    result = run_cli("routes", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert f"{tmp_path / 'nope.yaml'}: cannot read" in result.stderr


def test_validate_checks_workos_acs_url_against_the_custom_domain(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        "version: 1\nconnections:\n  acme:\n    protocol: saml\n    state: workos\n"
        "    workos_acs_url: https://auth.globex.com/sso/acme\n"
    )
    assert run_cli("routes", "validate", str(path)).returncode == 1  # no custom domain known: refused
    env = clean_env(WORKOS_CUSTOM_DOMAIN="auth.globex.com")
    assert run_cli("routes", "validate", str(path), env=env).returncode == 0


# --- explain, each way of giving it a callback -------------------------------------------------


def raw_request(method: str, target: str, body: bytes = b"", content_type: str | None = FORM) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: login.globex.com", "User-Agent: Mozilla/5.0"]
    if body:
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_explain_url_only(routes_path: Path) -> None:
    result = run_cli("explain", "--routes", str(routes_path), f"{ORIGIN}/login/callback?connection=acme-okta")
    assert result.returncode == 0, result.stderr
    got = explained(result.stdout)
    assert got["connection"] == "acme-okta"
    assert got["identified by"] == "query"
    assert got["decision"] == "workos"
    assert got["reason"] == "mapped"
    assert "connection:     acme-okta (state workos)" in result.stdout


def test_explain_url_and_data(routes_path: Path) -> None:
    body = saml_form(saml_xml(audience="urn:auth0:globex-prod:globex-adfs", issuer="http://idp.example"))
    result = run_cli("explain", "--routes", str(routes_path), f"{ORIGIN}/login/callback", "--data", body)
    assert result.returncode == 10, result.stderr  # decided Auth0
    got = explained(result.stdout)
    assert (got["connection"], got["identified by"], got["decision"], got["reason"]) == (
        "globex-adfs",
        "saml_audience",
        "auth0",
        "mapped",
    )
    assert "identified by:  saml_audience = urn:auth0:globex-prod:globex-adfs" in result.stdout


def test_explain_data_file(routes_path: Path, tmp_path: Path) -> None:
    token = id_token({"aud": "3f2a9c1e-entra", "iss": "https://login.microsoftonline.com/initech/v2.0"})
    data = tmp_path / "body.txt"
    data.write_text(urlencode({"id_token": token, "state": "st"}) + "\n")  # as saved by an editor
    result = run_cli("explain", "--routes", str(routes_path), f"{ORIGIN}/login/callback", "--data-file", str(data))
    assert result.returncode == 0, result.stderr
    got = explained(result.stdout)
    assert (got["protocol"], got["connection"], got["identified by"], got["decision"]) == (
        "oidc",
        "initech-entra",
        "oidc_aud",
        "workos",
    )


def test_explain_saved_raw_request(routes_path: Path, tmp_path: Path) -> None:
    body = saml_form(saml_xml(audience=None, issuer=SHARED_ISSUER, destination=f"{ORIGIN}/login/callback")).encode()
    request = tmp_path / "callback.http"
    request.write_bytes(raw_request("POST", "/login/callback?fallback=auth0", body))
    result = run_cli("explain", "--routes", str(routes_path), "--request", str(request))
    assert result.returncode == 10, result.stderr
    got = explained(result.stdout)
    # The shared issuer names neither ADFS connection; fallback wins anyway.
    assert (got["connection"], got["identified by"], got["decision"], got["reason"]) == (
        "(unknown)",
        "none",
        "auth0",
        "fallback",
    )
    assert "with fallback removed" in result.stdout


def test_explain_other_paths_and_errors(routes_path: Path, tmp_path: Path) -> None:
    passthrough = run_cli("explain", "--routes", str(routes_path), f"{ORIGIN}/authorize?client_id=x")
    assert passthrough.returncode == 10  # to Auth0
    assert "passed through to Auth0 unchanged" in passthrough.stdout
    nothing = run_cli("explain", "--routes", str(routes_path))
    assert nothing.returncode == 2
    assert "give a callback URL" in nothing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID)
    invalid = run_cli("explain", "--routes", str(bad), f"{ORIGIN}/login/callback")
    assert invalid.returncode == 2
    assert "connections.acme-okta.protocol" in invalid.stderr


def test_explain_prints_the_workos_target(routes_path: Path) -> None:
    env = clean_env(WORKOS_CUSTOM_DOMAIN="auth.globex.com", WORKOS_CLIENT_ID="client_123")
    result = run_cli(
        "explain", "--routes", str(routes_path), f"{ORIGIN}/login/callback?connection=acme-okta&RelayState=r", env=env
    )
    assert result.returncode == 0, result.stderr
    assert (
        "target:         307 https://auth.globex.com/sso/client_123/auth0/callback?connection=acme-okta&RelayState=r"
        in result.stdout
    )


# --- explain agrees with the server -----------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    query: str
    body: bytes = b""
    content_type: str | None = FORM
    via_data: bool = True  # also explain it as URL + --data (a form body); else only as a raw request


def saml(**kwargs: str | None) -> bytes:
    return saml_form(saml_xml(**kwargs)).encode()  # type: ignore[arg-type]


# A state or RelayState the Auth0 stand-in issued (it refuses any other, as Auth0 does); replaced
# when the case is sent, so callbacks the server forwards answer a login Auth0 started.
ISSUED = "ISSUED-BY-AUTH0"


def oidc(payload: dict[str, object]) -> bytes:
    return urlencode({"id_token": id_token(payload), "state": ISSUED}).encode()


def with_issued(case: Case, standins: StandIns) -> Case:
    if ISSUED not in case.query and ISSUED.encode() not in case.body:
        return case
    state = standins.start("umbrella-google" if case.name.startswith("oidc") else "globex-adfs").state
    return dataclasses.replace(
        case, query=case.query.replace(ISSUED, state), body=case.body.replace(ISSUED.encode(), state.encode())
    )


CASES = [
    Case("saml-query-workos", "POST", "connection=acme-okta", saml()),
    Case("saml-query-legacy", "POST", "connection=globex-adfs", saml(audience="urn:auth0:globex-prod:globex-adfs")),
    Case("saml-audience", "POST", "", saml()),
    Case("saml-audience-default-urn", "POST", "", saml(audience="urn:auth0:globex-prod:globex-adfs-eu", issuer=None)),
    Case("saml-issuer", "POST", "", saml(audience="urn:other", issuer="http://www.okta.com/acme")),
    Case(
        "saml-shared-issuer-then-destination",
        "POST",
        "",
        saml(audience=None, issuer=SHARED_ISSUER, destination=f"{ORIGIN}/login/callback?connection=globex-adfs-eu"),
    ),
    Case("saml-shared-issuer-only", "POST", "", saml(audience=None, issuer=SHARED_ISSUER, destination=None)),
    Case("saml-unknown-query-name", "POST", "connection=nope", saml(audience="urn:x", issuer="http://x")),
    Case("saml-unparseable", "POST", "", b"SAMLResponse=%25%25not-base64&RelayState=r"),
    Case("saml-xxe", "POST", "", f"SAMLResponse={saml_b64(XXE)}".encode()),
    Case(
        "saml-redirect-binding",
        "GET",
        saml_redirect_query(saml_xml(audience="urn:auth0:globex-prod:globex-adfs")) + f"&RelayState={ISSUED}",
    ),
    Case("saml-fallback", "POST", "connection=acme-okta&fallback=auth0", saml()),
    Case("oidc-form-post-aud", "POST", "", oidc({"aud": "3f2a9c1e-entra", "iss": "https://elsewhere"})),
    Case("oidc-form-post-iss", "POST", "", oidc({"aud": ["x", "y"], "iss": "https://accounts.google.com"})),
    Case("oidc-form-post-garbage", "POST", "", b"id_token=not.a.jwt&state=st"),
    Case("oidc-code-no-connection", "GET", "code=abc&state=st"),
    Case("oidc-code-query-legacy", "GET", f"connection=umbrella-google&code=abc&state={ISSUED}"),
    Case("oidc-code-fallback", "GET", f"code=abc&state={ISSUED}&fallback=auth0"),
    # A body that is not a form is not read by the server: only a raw request carries its type.
    Case("saml-not-a-form", "POST", "", saml(audience="urn:auth0:globex-prod:globex-adfs"), "text/plain", False),
]


@pytest.fixture(scope="module")
def served(standins: StandIns, routes_path: Path) -> Iterator[ProxyProcess]:
    proc = start_proxy(standins, routes_path)
    yield proc
    try:
        proc.stop()
    finally:
        if proc.proc is not None and proc.proc.stderr is not None:
            proc.proc.stderr.close()


def server_decision(proxy: ProxyProcess, case: Case, request_id: str) -> tuple[dict[str, str], httpx.Response]:
    headers = {"x-request-id": request_id}
    if case.body and case.content_type:
        headers["content-type"] = case.content_type
    url = f"{proxy.url}/login/callback" + (f"?{case.query}" if case.query else "")
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        response = client.request(case.method, url, content=case.body or None, headers=headers)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in list(proxy.log_lines):
            if request_id in line:
                event = json.loads(line)
                if event.get("msg") == "callback" and event.get("request_id") == request_id:
                    fields = {k: event[k] for k in ("connection", "identified_by", "decision", "reason")}
                    return {k: v if v is not None else "(unknown)" for k, v in fields.items()}, response
        time.sleep(0.02)
    raise AssertionError(f"no callback log line for {request_id}")


def explain_decision(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, str], str]:
    status = main(argv)
    output = capsys.readouterr().out
    got = explained(output)
    assert status == {"workos": 0, "auth0": 10}[got["decision"]], output
    return {
        "connection": got["connection"],
        "identified_by": got["identified by"],
        "decision": got["decision"],
        "reason": got["reason"],
    }, output


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_explain_agrees_with_the_server(
    case: Case,
    standins: StandIns,
    served: ProxyProcess,
    routes_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # explain is told what the server was started with, so it can print the same WorkOS target.
    for key, value in served.env.items():
        if key.startswith(("WORKOS_", "SSO_PROXY_WORKOS_")):
            monkeypatch.setenv(key, value)
    case = with_issued(case, standins)
    server, response = server_decision(served, case, f"cli-{case.name}-{time.monotonic_ns()}")
    target = "/login/callback" + (f"?{case.query}" if case.query else "")

    request_file = tmp_path / "callback.http"
    request_file.write_bytes(raw_request(case.method, target, case.body, case.content_type))
    from_request, output = explain_decision(
        ["explain", "--routes", str(routes_path), "--request", str(request_file)], capsys
    )
    assert from_request == server, output
    if case.via_data:
        argv = ["explain", "--routes", str(routes_path), ORIGIN + target]
        if case.body:
            argv += ["--data", case.body.decode()]
        from_data, output = explain_decision(argv, capsys)
        assert from_data == server, output

    # And what the server did is what explain says it does.
    if server["decision"] == "workos":
        assert response.status_code == 307
        assert f"target:         307 {response.headers['location']}\n" in output
    else:
        assert response.status_code == 302  # the Auth0 stand-in's answer, forwarded
        assert "/_standin/app" in response.headers["location"]


def test_explain_a_non_callback_method(routes_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request_file = tmp_path / "callback.http"
    request_file.write_bytes(raw_request("PUT", "/login/callback?connection=acme-okta"))
    assert main(["explain", "--routes", str(routes_path), "--request", str(request_file)]) == 10
    assert "passed through to Auth0 unchanged" in capsys.readouterr().out


# --- import -> validate -> set -> validate, on the real export package --------------------------


def test_import_validate_set_validate(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    imported = run_cli("routes", "import", str(EXPORTS / "redacted"), "-o", str(routes))
    assert imported.returncode == 0, imported.stderr
    assert "imported 7 connection(s) (tenant globex-prod)" in imported.stdout
    assert routes.exists()

    valid = run_cli("routes", "validate", str(routes))
    assert valid.returncode == 0, valid.stderr
    assert "valid; 7 connections (7 legacy, 0 shadow, 0 workos)" in valid.stdout

    callback = f"{ORIGIN}/login/callback"
    body = saml_form(saml_xml(audience="urn:auth0:globex-prod:initech-okta", issuer=None, destination=None))
    before = explained(run_cli("explain", "--routes", str(routes), callback, "--data", body).stdout)
    assert (before["connection"], before["decision"]) == ("initech-okta", "auth0")

    text_before = routes.read_text()
    changed = run_cli("routes", "set", "initech-okta", "workos", "--routes", str(routes))
    assert changed.returncode == 0, changed.stderr
    text_after = routes.read_text()
    assert text_after != text_before
    # Exactly one line changed, initech-okta's state, and one added: when it changed.
    import difflib

    from proxy.routing.routemap import parse_routemap

    diff = [line for line in difflib.unified_diff(text_before.splitlines(), text_after.splitlines(), n=0)]
    assert [line for line in diff[3:] if not line.startswith("@@")] == [
        "-    state: legacy",
        "+    state: workos",
        "+    state_changed: " + str(parse_routemap(text_after).connections["initech-okta"].state_changed),
    ]

    valid = run_cli("routes", "validate", str(routes))
    assert valid.returncode == 0, valid.stderr
    assert "valid; 7 connections (6 legacy, 0 shadow, 1 workos)" in valid.stdout

    after = explained(run_cli("explain", "--routes", str(routes), callback, "--data", body).stdout)
    assert (after["connection"], after["identified by"], after["decision"], after["reason"]) == (
        "initech-okta",
        "saml_audience",
        "workos",
        "mapped",
    )
    # Through SSO_PROXY_ROUTES instead of --routes.
    via_env = run_cli("explain", callback, "--data", body, env=clean_env(SSO_PROXY_ROUTES=str(routes)))
    assert explained(via_env.stdout)["decision"] == "workos"


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_parsers(sub))
    return found


def test_help_is_plain_text() -> None:
    """Every --help reads as plain text: no reStructuredText markup, no issue numbers."""
    from proxy.cli import build_parser

    parsers = _parsers(build_parser())
    assert len(parsers) >= 12
    for parser in parsers:
        text = parser.format_help()
        assert "``" not in text and ":class:" not in text, parser.prog
        assert not re.search(r"\bissue \d", text, re.IGNORECASE), parser.prog


def test_routes_set_organization_twice_moves_the_shared_connection(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    assert run_cli("routes", "import", str(EXPORTS / "redacted"), "-o", str(routes)).returncode == 0
    initech, initrode = "org_Q2xV9kLm3PzR7tWc", "org_8HnB4sYd1GfJ6eKa"
    one = run_cli("routes", "set", "--organization", initech, "workos", "--routes", str(routes))
    assert one.returncode == 0, one.stderr
    assert f"initech-group-oidc left as it is: shared with {initrode} too" in one.stderr
    both = run_cli(
        "routes", "set", "--organization", initech, "--organization", initrode, "workos", "--routes", str(routes)
    )
    assert both.returncode == 0, both.stderr
    assert "initech-group-oidc, initrode-google legacy -> workos" in both.stdout
