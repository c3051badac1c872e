"""``sso-proxy explain`` for scripts: exit statuses, curl's ``--data-urlencode``, located input errors.

(That explain decides as the server does is tests/test_cli.py's ``test_explain_agrees_with_the_server``.)
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import pytest

from proxy.cli import main
from proxy.errors import InputError
from proxy.migrate.explain import (
    EXIT_AUTH0,
    EXIT_INPUT,
    EXIT_WORKOS,
    MAX_INPUT_BYTES,
    RawRequest,
    data_urlencode,
    parse_raw_request,
)
from tests.samples import saml_xml

ORIGIN = "https://login.globex.com"
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
  globex-adfs:
    protocol: saml
    state: legacy
    audiences: [urn:auth0:globex-prod:globex-adfs]
"""


@pytest.fixture
def routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("WORKOS_CUSTOM_DOMAIN", "WORKOS_CLIENT_ID", "SSO_PROXY_ROUTES"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["explain", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- exit statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes_text", "url", "status"),
    [
        (ROUTES, "/login/callback?connection=acme-okta", EXIT_WORKOS),
        (ROUTES, "/login/callback?connection=globex-adfs", EXIT_AUTH0),
        (ROUTES, "/login/callback?connection=acme-okta&fallback=auth0", EXIT_AUTH0),
        (ROUTES, "/login/callback?code=c&state=s", EXIT_WORKOS),  # unknown -> defaults.unknown workos
        (ROUTES.replace("unknown: workos", "unknown: auth0"), "/login/callback?code=c&state=s", EXIT_AUTH0),
        (ROUTES.replace("mode: normal", "mode: auth0"), "/login/callback?connection=acme-okta", EXIT_AUTH0),
        (ROUTES.replace("mode: normal", "mode: shadow"), "/login/callback?connection=acme-okta", EXIT_AUTH0),
        (ROUTES, "/authorize?client_id=x", EXIT_AUTH0),  # passed through
        ("version: 7\n", "/login/callback?connection=acme-okta", EXIT_INPUT),
    ],
)
def test_exit_status_says_where_it_goes(
    routes: Path, routes_text: str, url: str, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    routes.write_text(routes_text)
    assert run(capsys, "--routes", str(routes), ORIGIN + url)[0] == status


def test_the_statuses_are_distinct_and_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert len({EXIT_WORKOS, EXIT_AUTH0, EXIT_INPUT}) == 3
    with pytest.raises(SystemExit) as exited:
        main(["explain", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for documented in (f"{EXIT_WORKOS} decided WorkOS", f"{EXIT_AUTH0} decided Auth0", f"{EXIT_INPUT} input error"):
        assert documented in text
    assert "--data-urlencode NAME=VALUE" in text


# --- unknown connections --------------------------------------------------------------------------


def test_an_unknown_query_connection_is_named_as_not_in_the_map(
    routes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "--routes", str(routes), f"{ORIGIN}/login/callback?connection=nope")
    assert status == EXIT_WORKOS
    assert "connection:     (unknown) (?connection=nope is not in the route map)\n" in out
    assert "identified by:  none\n" in out
    assert "none = nope" not in out


def test_no_hint_at_all(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--routes", str(routes), f"{ORIGIN}/login/callback?code=c&state=s")
    assert "connection:     (unknown)\nidentified by:  none\n" in out


# --- --data-urlencode -----------------------------------------------------------------------------


def read(files: dict[str, bytes]) -> object:
    def reader(path: str) -> bytes:
        return files[path]

    return reader


@pytest.mark.parametrize(
    ("arg", "encoded"),
    [
        ("SAMLResponse=ab+c/d==", b"SAMLResponse=ab%2Bc%2Fd%3D%3D"),
        ("name=a b&c", b"name=a%20b%26c"),
        ("=a+b", b"a%2Bb"),
        ("a+b", b"a%2Bb"),
        ("plain-._~", b"plain-._~"),
        ("x=", b"x="),
        ("a@b=c@d", b"a@b=c%40d"),  # "=" before "@": the name is a@b
        ("f@body.txt", b"f=line%201%0Aline%202%0A"),
        ("@body.txt", b"line%201%0Aline%202%0A"),
        ("caf\u00e9=\u00e9", "caf\u00e9=%C3%A9".encode()),
    ],
)
def test_data_urlencode_as_curl(arg: str, encoded: bytes) -> None:
    assert data_urlencode(arg, read({"body.txt": b"line 1\nline 2\n"})) == encoded  # type: ignore[arg-type]


def test_a_raw_base64_saml_response_keeps_its_plus(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xml = next(x for pad in range(64) if "+" in base64.b64encode(x := saml_xml(padding=pad, destination=None)).decode())
    raw = base64.b64encode(xml).decode()
    assert "+" in raw
    url = f"{ORIGIN}/login/callback"
    # -d sends it as given: a form decoder reads + as a space and the XML is unreadable.
    status, out, _ = run(capsys, "--routes", str(routes), url, "-d", f"SAMLResponse={raw}")
    assert "reason:         unparseable" in out
    # --data-urlencode encodes it as curl does: the Audience is read.
    status, out, _ = run(capsys, "--routes", str(routes), url, "--data-urlencode", f"SAMLResponse={raw}")
    assert status == EXIT_WORKOS
    assert "identified by:  saml_audience = urn:auth0:globex-prod:acme-okta" in out
    # Repeated, joined with & in order (curl's rule), mixed with -d.
    status, out, _ = run(
        capsys, "--routes", str(routes), url, "-d", "RelayState=r", "--data-urlencode", f"SAMLResponse={raw}"
    )
    assert status == EXIT_WORKOS


def test_data_urlencode_from_a_file(routes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = base64.b64encode(saml_xml(audience="urn:auth0:globex-prod:globex-adfs")).decode()
    (tmp_path / "saml.b64").write_text(raw)
    status, out, _ = run(
        capsys,
        "--routes",
        str(routes),
        f"{ORIGIN}/login/callback",
        "--data-urlencode",
        f"SAMLResponse@{tmp_path}/saml.b64",
    )
    assert status == EXIT_AUTH0
    assert "connection:     globex-adfs (state legacy)" in out
    status, _, err = run(
        capsys, "--routes", str(routes), f"{ORIGIN}/login/callback", "--data-urlencode", "x@/no/such/file"
    )
    assert status == EXIT_INPUT
    assert err == "sso-proxy explain: --data-urlencode /no/such/file: cannot read: No such file or directory\n"


# --- saved raw requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        (
            b"POST /login/callback?connection=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\n\r\nSAMLResponse=abc\r\n",
            RawRequest("POST", "/login/callback?connection=a", b"SAMLResponse=abc", True),
        ),
        (b"get /login/callback?code=c HTTP/1.0\n\n", RawRequest("GET", "/login/callback?code=c", b"", False)),
        (b"GET /login/callback", RawRequest("GET", "/login/callback", b"", False)),
        (
            b"POST https://login.example.com/login/callback HTTP/1.1\nContent-Type: text/plain\n\nbody\n",
            RawRequest("POST", "https://login.example.com/login/callback", b"body\n", False),
        ),
        (b"POST /x HTTP/1.1\nX-Empty:\n\n", RawRequest("POST", "/x", b"", False)),
    ],
)
def test_parse_raw_request(data: bytes, parsed: RawRequest) -> None:
    assert parse_raw_request(data, "r.http") == parsed


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "r.http:1: empty file; a saved request starts like 'POST /login/callback?connection=NAME HTTP/1.1'"),
        (b"\n\nbody", "r.http:1: no request line; a saved request starts like"),
        (b"curl -d x https://login/login/callback\n", "r.http:1: a curl command, not a saved HTTP request"),
        (b"POST\n\n", "r.http:1: 'POST' is not a request line like"),
        (b"POST /a HTTP/1.1 extra\n", "r.http:1: 'POST /a HTTP/1.1 extra' is not a request line like"),
        (b"PO(ST /a HTTP/1.1\n", "r.http:1: 'PO(ST /a HTTP/1.1' is not a request line"),
        (
            b"POST login/callback HTTP/1.1\n",
            "r.http:1: request target 'login/callback' must start with / or http(s)://",
        ),
        (b"POST /a HTTP/2\n", "r.http:1: 'HTTP/2' is not an HTTP version like HTTP/1.1"),
        (b"POST /a HTTP/1.1\nHost x\n\n", "r.http:2: 'Host x' is not a header line 'Name: value'"),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nSAMLResponse=abc\r\n",
            "r.http:4: 'SAMLResponse=abc' is not a header line 'Name: value'; is the blank line before the body",
        ),
        (b"POST /a HTTP/1.1\nHost: x\n folded\n\n", "r.http:3: ' folded' is not a header line"),
        (b"POST /a HTTP/1.1\nBad Name: x\n\n", "r.http:2: 'Bad Name: x' is not a header line"),
        (b"POST /a HTTP/1.1\n" + b"x" * 1000 + b"\n\n", "r.http:2: '" + "x" * 60 + "...' is not a header line"),
    ],
)
def test_a_malformed_request_file_is_located(data: bytes, error: str) -> None:
    with pytest.raises(InputError) as info:
        parse_raw_request(data, "r.http")
    assert str(info.value).startswith(error)


def test_hostile_request_file_is_linear() -> None:
    # 200,000 header lines: one pass, no quadratic join or regex backtracking.
    head = b"POST /login/callback HTTP/1.1\r\n" + b"X-A: " + b"a" * 10 + b"\r\n"
    data = head + b"X-B: b\r\n" * 200_000 + b"\r\nbody"
    assert parse_raw_request(data, "r.http").body == b"body"
    with pytest.raises(InputError, match=r"r.http:200003: "):
        parse_raw_request(head + b"X-B: b\r\n" * 200_000 + b"=" * 100_000, "r.http")


def test_request_file_errors_at_the_command_line(
    routes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.http"
    bad.write_bytes(b"POST /login/callback HTTP/1.1\nHost: login\nSAMLResponse=abc\n")
    status, out, err = run(capsys, "--routes", str(routes), "--request", str(bad))
    assert (status, out) == (EXIT_INPUT, "")
    assert err == (
        f"sso-proxy explain: {bad}:3: 'SAMLResponse=abc' is not a header line 'Name: value'; "
        "is the blank line before the body missing?\n"
    )
    status, _, err = run(capsys, "--routes", str(routes), "--request", str(tmp_path / "missing.http"))
    assert status == EXIT_INPUT
    assert err.endswith("missing.http: cannot read: No such file or directory\n")
    big = tmp_path / "big.http"
    big.write_bytes(b"POST /login/callback HTTP/1.1\n\n" + b"x" * MAX_INPUT_BYTES)
    status, _, err = run(capsys, "--routes", str(routes), "--request", str(big))
    assert status == EXIT_INPUT
    assert "larger than 16 MiB" in err
    good = tmp_path / "good.http"
    good.write_bytes(b"GET /login/callback?connection=acme-okta HTTP/1.1\n\n")
    status, _, err = run(capsys, "--routes", str(routes), "--request", str(good), "-d", "a=b")
    assert status == EXIT_INPUT
    assert "--request holds the whole request" in err
    body = tmp_path / "body"
    body.write_text("a=b")
    status, _, err = run(
        capsys, "--routes", str(routes), ORIGIN + "/login/callback", "--data-file", str(body), "-d", "x"
    )
    assert status == EXIT_INPUT
    assert "--data-file holds the whole body" in err
    status, _, err = run(capsys, "--routes", str(routes), "--data-file", str(tmp_path / "nope"))
    assert status == EXIT_INPUT
    assert "--data-file" in err and "cannot read" in err


def test_url_encoded_names_in_the_query_are_read(routes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--routes", str(routes), f"{ORIGIN}/login/callback?connection={quote('acme-okta')}")
    assert status == EXIT_WORKOS
    assert "connection:     acme-okta (state workos)" in out
