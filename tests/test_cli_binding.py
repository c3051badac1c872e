"""Operators and transaction binding: cut-over warnings (routes set / validate) and explain with cookies."""

from __future__ import annotations

import time
from pathlib import Path

from proxy.routing.binding import Binder
from proxy.routing.logins import Login
from proxy.routing.txcookie import Keys
from tests.test_cli import ORIGIN, ROUTES, clean_env, explained, raw_request, run_cli

KEY = "explain-key-" + "x" * 30
UNKNOWN_AUTH0 = ROUTES.replace("unknown: workos", "unknown: auth0").replace(
    "  initech-entra:\n    protocol: oidc\n    state: workos", "  initech-entra:\n    protocol: oidc\n    state: legacy"
)


def binding_cookie(state: str, key: str = KEY) -> str:
    """The Cookie header a browser sends back after the proxy bound a login with ``state``."""
    set_cookie = Binder(Keys((key.encode(),))).bind([], Login("oidc_state", (state,)), time.time())[0]
    return set_cookie.decode().split(";", 1)[0]


def test_set_warns_when_an_oidc_connection_is_cut_over_while_unknown_is_auth0(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(UNKNOWN_AUTH0)
    result = run_cli("routes", "set", "initech-entra", "workos", "--routes", str(routes))
    assert result.returncode == 0, result.stderr
    assert "initech-entra legacy -> workos" in result.stdout
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("warning: connection initech-entra (oidc) is on workos but defaults.unknown is auth0")
    assert "defaults.unknown: workos" in warning and "SSO_PROXY_TRANSACTION_KEYS" in warning
    # validate says the same; a SAML cut-over or unknown: workos says nothing.
    validated = run_cli("routes", "validate", str(routes))
    assert validated.returncode == 0
    assert "warning: connection initech-entra (oidc)" in validated.stderr
    saml = run_cli("routes", "set", "globex-adfs", "workos", "--routes", str(routes))
    assert saml.returncode == 0 and saml.stderr == ""
    # Setting defaults.unknown back to auth0 warns about every OIDC connection on workos.
    back = run_cli("routes", "unknown", "auth0", "--routes", str(routes))
    assert back.returncode == 0, back.stderr
    routes.write_text(ROUTES)
    assert "warning: connection" not in run_cli("routes", "validate", str(routes)).stderr


def test_explain_with_a_binding_cookie(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    url = f"{ORIGIN}/login/callback?code=abc&state=st-1"
    env = clean_env(SSO_PROXY_TRANSACTION_KEYS=KEY)
    plain = explained(run_cli("explain", "--routes", str(routes), url, env=env).stdout)
    assert (plain["decision"], plain["reason"]) == ("workos", "unknown_default")

    result = run_cli("explain", "--routes", str(routes), url, "-b", binding_cookie("st-1"), env=env)
    assert result.returncode == 10, result.stderr  # explain's exit status: decided Auth0
    assert "binding:        bound to an Auth0 transaction (by state)" in result.stdout
    got = explained(result.stdout)
    assert (got["decision"], got["reason"]) == ("auth0", "auth0_transaction")
    assert binding_cookie("st-1").split("=", 1)[1] not in result.stdout  # the cookie is never printed

    other = run_cli("explain", "--routes", str(routes), url, "-b", binding_cookie("st-2"), env=env)
    assert "binds none of this callback's" in other.stdout
    assert explained(other.stdout)["decision"] == "workos"

    keyless = run_cli("explain", "--routes", str(routes), url, "-b", binding_cookie("st-1"))
    assert "SSO_PROXY_TRANSACTION_KEYS is not set here" in keyless.stdout
    assert explained(keyless.stdout)["decision"] == "workos"

    bad_key = run_cli(
        "explain",
        "--routes",
        str(routes),
        url,
        "-b",
        binding_cookie("st-1"),
        env=clean_env(SSO_PROXY_TRANSACTION_KEYS="short"),
    )
    assert bad_key.returncode == 2 and "SSO_PROXY_TRANSACTION_KEYS" in bad_key.stderr and "short" not in bad_key.stderr


def test_explain_reads_cookies_from_a_saved_request(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    request = tmp_path / "callback.http"
    data = raw_request("GET", "/login/callback?code=abc&state=st-9", b"")
    head, _, rest = data.partition(b"\r\n")
    request.write_bytes(head + b"\r\nCookie: a=1\r\nCookie: " + binding_cookie("st-9").encode() + b"\r\n" + rest)
    result = run_cli(
        "explain", "--routes", str(routes), "--request", str(request), env=clean_env(SSO_PROXY_TRANSACTION_KEYS=KEY)
    )
    assert result.returncode == 10, result.stderr
    assert explained(result.stdout)["reason"] == "auth0_transaction"
