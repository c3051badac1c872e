"""Auth0 switched off (SSO_PROXY_AUTH0_OFF=true): proxy.retired's tables and the real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.config import load_settings
from proxy.errors import ConfigError
from proxy.retired import OTHER, map_errors, path_label
from proxy.routing.routemap import Connection, make_routemap
from tests.conftest import ADMIN_AUTH, ROUTES_YAML, ProxyProcess, StandIns, start_proxy
from tests.samples import saml_form, saml_xml

FORM = {"content-type": "application/x-www-form-urlencoded"}
ALL_WORKOS = ROUTES_YAML.replace("state: legacy", "state: workos")
assert "legacy" not in ALL_WORKOS


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/authorize", "/authorize"),
        ("/authorize/", "/authorize"),
        ("/login", "/login"),
        ("/oauth/token", "/oauth/token"),
        ("/oauth/device/code", "/oauth/*"),
        ("/u/login/identifier", "/u/*"),
        ("/.well-known/openid-configuration", "/.well-known/openid-configuration"),
        ("/.well-known/other", "/.well-known/*"),
        ("/samlp/abc", "/samlp/*"),
        ("/v2/logout", "/v2/logout"),
        ("/", OTHER),
        ("/wp-admin", OTHER),
        ("/" + "x" * 10_000, OTHER),
        ("/u", OTHER),
    ],
)
def test_path_label_is_bounded(path: str, label: str) -> None:
    assert path_label(path) == label


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({}, []),
        ({"mode": "auth0"}, ["defaults.mode is auth0"]),
        ({"mode": "shadow"}, ["defaults.mode is shadow"]),
        ({"unknown": "auth0"}, ["defaults.unknown is auth0"]),
        ({"legacy": ("b", "a")}, ["2 connection(s) still legacy or shadow (on Auth0): a, b"]),
        ({"shadow": ("s",)}, ["1 connection(s) still legacy or shadow (on Auth0): s"]),  # shadow goes to Auth0
    ],
)
def test_map_errors_name_what_still_needs_auth0(kwargs: dict[str, object], says: list[str]) -> None:
    legacy = kwargs.pop("legacy", ())
    shadow = kwargs.pop("shadow", ())
    conns = [Connection("w", "saml", "workos"), *(Connection(n, "saml", "legacy") for n in legacy)]  # type: ignore[attr-defined]
    conns += [Connection(n, "saml", "shadow") for n in shadow]  # type: ignore[attr-defined]
    errors = map_errors(make_routemap(conns, **kwargs), "routes.yaml")  # type: ignore[arg-type]
    for text in says:
        assert any(text in e for e in errors), errors
    assert bool(errors) == bool(says)
    if errors:
        assert errors[-1] == "routes.yaml: refused because Auth0 is switched off (SSO_PROXY_AUTH0_OFF=true)"


BASE = {"WORKOS_CUSTOM_DOMAIN": "auth.example.com", "WORKOS_CLIENT_ID": "client_1"}


OFF = {**BASE, "SSO_PROXY_AUTH0_OFF": "true"}


def test_auth0_is_switched_off_only_on_purpose() -> None:
    settings = load_settings(OFF)
    assert settings.auth0_off and settings.auth0_origin == ""
    assert not load_settings({**BASE, "AUTH0_FALLBACK_ORIGIN": "https://t.eu.auth0.com"}).auth0_off
    # Loops are not checked against an origin that is not there.
    assert load_settings({**OFF, "SSO_PROXY_PUBLIC_HOST": "login.example.com"}).auth0_off
    # The flag as a bare switch does the same as the variable.
    assert load_settings(BASE, {"auth0_switched_off": "true"}).auth0_off


@pytest.mark.parametrize(
    ("env", "flags", "says"),
    [
        # A dropped or misspelled variable no longer switches Auth0 off: one line naming both.
        ({}, {}, "AUTH0_FALLBACK_ORIGIN: required setting is missing; to switch Auth0 off, set SSO_PROXY_AUTH0_OFF"),
        ({"AUTH0_FALLBACK_ORIGIN": " "}, {}, "SSO_PROXY_AUTH0_OFF=true"),
        ({"SSO_PROXY_AUTH0_OFF": "false"}, {}, "AUTH0_FALLBACK_ORIGIN: required setting is missing"),
        ({"SSO_PROXY_AUTH0_OFF": "maybe"}, {}, "SSO_PROXY_AUTH0_OFF"),
        # Both: which one is meant is not for the proxy to guess.
        (
            {"SSO_PROXY_AUTH0_OFF": "true", "AUTH0_FALLBACK_ORIGIN": "https://t.eu.auth0.com"},
            {},
            "SSO_PROXY_AUTH0_OFF, AUTH0_FALLBACK_ORIGIN: Auth0 switched off and a fallback origin given",
        ),
        ({"AUTH0_FALLBACK_ORIGIN": "https://t.eu.auth0.com"}, {"auth0_switched_off": "true"}, "--auth0-off"),
    ],
)
def test_auth0_off_errors_name_both_settings(env: dict[str, str], flags: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE, **env}, flags)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://www.example.com/signin-moved", True),
        ("http://intranet.example.com/", True),
        ("", True),
        ("ftp://x.example.com", False),
        ("/relative", False),
        ("https://user:pw@x.example.com/", False),
        ("https://x.example.com/a b", False),
        ("https://x.example.com/\r\nSet-Cookie: a=b", False),
        ("https://x.example.com\\@evil.example", False),
    ],
)
def test_retired_url_setting(value: str, ok: bool) -> None:
    env = {**OFF, "SSO_PROXY_RETIRED_URL": value}
    if ok:
        assert load_settings(env).retired_url == value
    else:
        with pytest.raises(ConfigError, match="SSO_PROXY_RETIRED_URL"):
            load_settings(env)


# --- the real server ---------------------------------------------------------------------------


@pytest.fixture()
def started() -> Iterator[list[ProxyProcess]]:
    procs: list[ProxyProcess] = []
    yield procs
    for proc in procs:
        proc.stop()


def off(started: list[ProxyProcess], standins: StandIns, routes: Path, **env: str) -> ProxyProcess:
    proc = start_proxy(standins, routes, None, AUTH0_FALLBACK_ORIGIN="", SSO_PROXY_AUTH0_OFF="true", **env)
    started.append(proc)
    return proc


def test_serve_refuses_a_map_that_still_needs_auth0(standins: StandIns, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES_YAML.replace("mode: normal", "mode: shadow"))
    proc = ProxyProcess(
        env={**start_env(standins), "AUTH0_FALLBACK_ORIGIN": "", "SSO_PROXY_AUTH0_OFF": "true"},
        args=["--routes", str(routes), "--port", "0", "--admin-port", "0"],
        port=0,
        admin_port=0,
    ).start(wait_ready=False)
    assert proc.proc is not None
    assert proc.proc.wait(30) == 2
    proc.stop()
    log = "\n".join(proc.log_lines)
    assert "cannot be served with Auth0 switched off; not starting:" in log
    assert "defaults.mode is shadow" in log
    assert "2 connection(s) still legacy or shadow (on Auth0): globex-adfs, umbrella-google" in log


def start_env(standins: StandIns) -> dict[str, str]:
    from tests.conftest import proxy_env

    return proxy_env(standins.auth0.origin, f"127.0.0.1:{standins.workos.port}")


def test_auth0_off_every_callback_to_workos_fallbacks_get_a_clear_page(
    standins: StandIns, tmp_path: Path, started: list[ProxyProcess]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ALL_WORKOS)
    proc = off(started, standins, routes)
    assert any("Auth0 switched off" in line for line in proc.log_lines)
    standins.clear()
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        body = saml_form(saml_xml())
        to_workos = client.post(f"{proc.url}/login/callback?connection=globex-adfs", content=body, headers=FORM)
        assert to_workos.status_code == 307
        unknown = client.get(f"{proc.url}/login/callback?code=c&state=s")
        assert unknown.status_code == 307  # defaults.unknown is workos: checked at start
        back = client.post(
            f"{proc.url}/login/callback?connection=hooli-ping&fallback=auth0", content=body, headers=FORM
        )
        assert back.status_code == 403
        assert "This sign-in could not be completed" in back.text
        assert "contact your administrator" in back.text
        assert back.headers["cache-control"] == "no-store"
        other = client.get(f"{proc.url}/authorize?client_id=app")
        assert other.status_code == 404
        assert "no longer in use" in other.text
        client.get(f"{proc.url}/u/login/identifier?state=x")
        client.get(f"{proc.url}/wp-login.php")
    assert standins.received("auth0") == []  # nothing was ever forwarded
    samples = proc.scrape()
    assert samples[("sso_proxy_auth0_off", ())] == 1.0
    assert samples[("sso_proxy_auth0_off_callbacks_total", (("connection", "hooli-ping"), ("reason", "fallback")))] == 1
    for label in ("/authorize", "/u/*", "other"):
        assert samples[("sso_proxy_auth0_off_requests_total", (("path", label),))] == 1
    assert not any(name == "sso_proxy_upstream_requests_total" and value for (name, _), value in samples.items())


def test_auth0_off_other_paths_to_a_configured_url(
    standins: StandIns, tmp_path: Path, started: list[ProxyProcess]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ALL_WORKOS)
    proc = off(started, standins, routes, SSO_PROXY_RETIRED_URL="https://www.example.com/signin-moved")
    reply = httpx.get(f"{proc.url}/authorize?client_id=app", follow_redirects=False)
    assert (reply.status_code, reply.headers["location"]) == (302, "https://www.example.com/signin-moved")


def test_auth0_off_a_reload_to_a_legacy_map_is_refused_and_the_last_good_map_stays(
    standins: StandIns, tmp_path: Path, started: list[ProxyProcess]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ALL_WORKOS)
    proc = off(started, standins, routes)
    in_force = httpx.get(f"{proc.admin}/routes").json()["sha256"]
    routes.write_text(
        ALL_WORKOS.replace(
            "  acme-okta:\n    protocol: saml\n    state: workos", "  acme-okta:\n    protocol: saml\n    state: legacy"
        )
    )
    reply = httpx.post(f"{proc.admin}/-/reload", headers=ADMIN_AUTH)
    assert reply.status_code == 422
    assert any("still legacy or shadow (on Auth0): acme-okta" in e for e in reply.json()["errors"])
    assert httpx.get(f"{proc.admin}/routes").json()["sha256"] == in_force
    time.sleep(0.8)  # four watch intervals: the file watcher refuses it too
    assert httpx.get(f"{proc.admin}/routes").json()["sha256"] == in_force
