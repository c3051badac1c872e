"""Integration: the real proxy process on loopback in front of the real Auth0 and WorkOS stand-ins.

The session ``proxy`` (conftest) serves the fixture map in normal mode and is the one the WorkOS
stand-in sends fallbacks back to. Module-scoped proxies cover the other settings: the kill switch
with passthrough off, shadow mode, ``defaults.unknown: auth0`` with small limits, a trusted proxy and
form redirects, and an unreachable Auth0.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from . import samples
from .conftest import CLIENT_ID, CNAME_KEY, ROOT, ROUTES_YAML, ProxyProcess, StandIns, free_port, proxy_env, start_proxy

FORM = {"content-type": "application/x-www-form-urlencoded"}
# Values that must never appear in a log line.
SECRET_CODE = "code-SECRET-7f3a9"
SECRET_STATE = "state-SECRET-2b8c1"
SECRET_COOKIE = "cookie-SECRET-99e1"


def workos_callback(standins: StandIns) -> str:
    return f"http://127.0.0.1:{standins.workos.port}/sso/{CLIENT_ID}/auth0/callback"


def saml_body(audience: str = "urn:auth0:globex-prod:acme-okta", issuer: str | None = None, **extra: str) -> bytes:
    xml = samples.saml_xml(audience=audience, issuer=issuer, destination=None)
    fields = {"SAMLResponse": samples.saml_b64(xml), "RelayState": "relay-123", **extra}
    return urlencode(fields).encode()


def metric(proc: ProxyProcess, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample, sample_labels), value in proc.scrape().items():
        if sample == name and set(labels.items()) <= set(sample_labels):
            total += value
    return total


def last_received(standins: StandIns, which: str) -> dict[str, object]:
    received = standins.received(which)
    assert received, f"the {which} stand-in received nothing"
    return received[-1]


def body_of(record: dict[str, object]) -> bytes:
    return base64.b64decode(str(record["body_b64"]))


def header_values(record: dict[str, object] | dict[str, list[list[str]]], name: str) -> list[str]:
    headers = record["headers"]
    assert isinstance(headers, list)
    return [v for k, v in headers if k.lower() == name]


def routes_with(tmp_path: Path, name: str, *, unknown: str = "workos", mode: str = "normal") -> Path:
    text = ROUTES_YAML.replace("unknown: workos", f"unknown: {unknown}").replace("mode: normal", f"mode: {mode}")
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("test_proxy")


@pytest.fixture(scope="module")
def kill_switch_proxy(standins: StandIns, tmp_module: Path) -> Iterator[ProxyProcess]:
    """mode: auth0 (every callback to Auth0), and passthrough off."""
    proc = start_proxy(standins, routes_with(tmp_module, "kill.yaml", mode="auth0"), SSO_PROXY_PASSTHROUGH="false")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def shadow_proxy(standins: StandIns, tmp_module: Path) -> Iterator[ProxyProcess]:
    proc = start_proxy(standins, routes_with(tmp_module, "shadow.yaml", mode="shadow"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tuned_proxy(standins: StandIns, tmp_module: Path) -> Iterator[ProxyProcess]:
    """defaults.unknown: auth0; small body limit, short read timeout, loopback trusted, form redirects."""
    proc = start_proxy(
        standins,
        routes_with(tmp_module, "tuned.yaml", unknown="auth0"),
        SSO_PROXY_MAX_BODY_BYTES="4096",
        SSO_PROXY_READ_TIMEOUT="0.5",
        SSO_PROXY_TRUSTED_PROXIES="127.0.0.1/32",
        SSO_PROXY_REDIRECT_MODE="form",
        SSO_PROXY_LOG_LEVEL="debug",
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def down_proxy(standins: StandIns, routes_file: Path) -> Iterator[ProxyProcess]:
    """AUTH0_FALLBACK_ORIGIN at a closed port."""
    proc = start_proxy(standins, routes_file, AUTH0_FALLBACK_ORIGIN=f"http://127.0.0.1:{free_port()}")
    yield proc
    proc.stop()


# --- callbacks to WorkOS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "location_query"),
    [
        ("?connection=acme-okta", "?connection=acme-okta"),
        ("?connection=acme-okta&x=a+b&y=%2F&x=2", "?connection=acme-okta&x=a+b&y=%2F&x=2"),
        ("", ""),  # identified by the SAML Audience
        ("?RelayState=r%20s", "?RelayState=r%20s"),
    ],
)
def test_saml_post_is_redirected_with_307_and_the_body_arrives_unchanged(
    proxy: ProxyProcess, standins: StandIns, client: httpx.Client, query: str, location_query: str
) -> None:
    body = saml_body()
    response = client.post(f"{proxy.url}/login/callback{query}", content=body, headers=FORM)
    assert response.status_code == 307
    assert response.headers["location"] == workos_callback(standins) + location_query
    assert response.headers["cache-control"] == "no-store"
    # The browser repeats the POST, body and all, at the new location (RFC 9110 15.4.8).
    standins.clear()
    followed = client.post(response.headers["location"], content=body, headers=FORM)
    assert followed.status_code == 200
    assert "Signed in through WorkOS" in followed.text
    received = last_received(standins, "workos")
    assert received["method"] == "POST"
    assert body_of(received) == body
    assert received["query"] == location_query.removeprefix("?")


def test_saml_redirect_binding_get(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    query = samples.saml_redirect_query(samples.saml_xml()) + "&RelayState=abc"
    response = client.get(f"{proxy.url}/login/callback?{query}")
    assert response.status_code == 307
    assert response.headers["location"] == f"{workos_callback(standins)}?{query}"


def test_oidc_code_get_unknown_goes_to_default_workos(
    proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    before = metric(proxy, "sso_proxy_callbacks_total", reason="unknown_default", protocol="oidc", decision="workos")
    query = f"code={SECRET_CODE}&state={SECRET_STATE}"
    response = client.get(f"{proxy.url}/login/callback?{query}")
    assert response.status_code == 307
    assert response.headers["location"] == f"{workos_callback(standins)}?{query}"
    after = metric(proxy, "sso_proxy_callbacks_total", reason="unknown_default", protocol="oidc", decision="workos")
    assert after == before + 1


def test_oidc_code_get_unknown_goes_to_default_auth0(
    tuned_proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    state = standins.start("umbrella-google").state  # the app started this login at Auth0
    standins.clear()
    query = f"code={SECRET_CODE}&state={state}"
    response = client.get(f"{tuned_proxy.url}/login/callback?{query}")
    assert response.status_code == 302  # Auth0's answer, passed back
    received = last_received(standins, "auth0")
    assert (received["method"], received["path"], received["query"]) == ("GET", "/login/callback", query)


def test_oidc_form_post_id_token_by_aud(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    migrated = urlencode({"id_token": samples.id_token({"aud": "3f2a9c1e-entra"}), "state": SECRET_STATE})
    response = client.post(f"{proxy.url}/login/callback", content=migrated, headers=FORM)
    assert response.status_code == 307
    assert response.headers["location"] == workos_callback(standins)

    state = standins.start("umbrella-google").state  # a login Auth0 started
    standins.clear()
    legacy = urlencode({"id_token": samples.id_token({"aud": ["umbrella-google-client"]}), "state": state})
    response = client.post(f"{proxy.url}/login/callback", content=legacy, headers=FORM)
    assert response.status_code == 302
    assert body_of(last_received(standins, "auth0")) == legacy.encode()


def test_workos_state_but_unknown_to_workos_comes_back_and_lands_on_auth0(
    proxy: ProxyProcess, standins: StandIns
) -> None:
    """hooli-ping is cut over in the map but not set up in WorkOS: WorkOS sends it back with fallback."""
    standins.clear()
    body = saml_body(audience="urn:auth0:globex-prod:hooli-ping")
    before = metric(proxy, "sso_proxy_fallbacks_total", connection="hooli-ping")
    with httpx.Client(follow_redirects=True, timeout=10) as browser:
        response = browser.post(f"{proxy.url}/login/callback?connection=hooli-ping", content=body, headers=FORM)
    assert [r.status_code for r in response.history] == [307, 307, 302]
    assert response.status_code == 200
    assert "Signed in through Auth0" in response.text
    received = [r for r in standins.received("auth0") if r["path"] == "/login/callback"]
    assert len(received) == 1
    assert received[0]["query"] == "connection=hooli-ping"
    assert body_of(received[0]) == body
    assert metric(proxy, "sso_proxy_fallbacks_total", connection="hooli-ping") == before + 1


# --- callbacks to Auth0 -------------------------------------------------------------------------


def test_legacy_connection_is_forwarded_with_every_set_cookie(
    proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    standins.clear()
    body = saml_body(audience="urn:auth0:globex-prod:globex-adfs")
    response = client.post(
        f"{proxy.url}/login/callback?connection=globex-adfs",
        content=body,
        headers={**FORM, "cookie": f"did={SECRET_COOKIE}"},
    )
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{standins.auth0.origin}/_standin/app?code=")
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("auth0=") and "HttpOnly" in cookies[0] and "SameSite=none" in cookies[0]
    assert cookies[1].startswith("auth0_compat=1")
    received = last_received(standins, "auth0")
    assert (received["method"], received["path"], received["query"]) == (
        "POST",
        "/login/callback",
        "connection=globex-adfs",
    )
    assert body_of(received) == body
    assert header_values(received, "cookie") == [f"did={SECRET_COOKIE}"]


@pytest.mark.parametrize(
    ("query", "forwarded"),
    [
        ("b=2&fallback=auth0&a=1&a=%2F", "b=2&a=1&a=%2F"),
        ("connection=acme-okta&fallback=auth0", "connection=acme-okta"),
        ("fallback=auth0&x=a+b&RelayState=r%3D1", "x=a+b&RelayState=r%3D1"),
    ],
)
def test_fallback_is_forwarded_with_only_fallback_removed(
    proxy: ProxyProcess, standins: StandIns, client: httpx.Client, query: str, forwarded: str
) -> None:
    # The answer to a login Auth0 started (its RelayState), which WorkOS sent back.
    body = saml_body(RelayState=standins.start("globex-adfs").state)
    standins.clear()
    before = metric(proxy, "sso_proxy_callbacks_total", reason="fallback", decision="auth0")
    response = client.post(f"{proxy.url}/login/callback?{query}", content=body, headers=FORM)
    assert response.status_code == 302
    received = last_received(standins, "auth0")
    assert received["query"] == forwarded
    assert body_of(received) == body
    assert metric(proxy, "sso_proxy_callbacks_total", reason="fallback", decision="auth0") == before + 1


def test_kill_switch_sends_every_callback_to_auth0(
    kill_switch_proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    standins.clear()
    body = saml_body()
    response = client.post(f"{kill_switch_proxy.url}/login/callback?connection=acme-okta", content=body, headers=FORM)
    assert response.status_code == 302
    assert body_of(last_received(standins, "auth0")) == body
    response = client.get(
        f"{kill_switch_proxy.url}/login/callback?code=c&state={standins.start('initech-entra').state}"
    )
    assert response.status_code == 302
    assert metric(kill_switch_proxy, "sso_proxy_callbacks_total", reason="kill_switch", connection="acme-okta") == 1
    assert metric(kill_switch_proxy, "sso_proxy_callbacks_total", reason="kill_switch", connection="_unknown") == 1


def test_passthrough_off_is_404_but_callbacks_still_work(
    kill_switch_proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    standins.clear()
    for path in ("/authorize?client_id=x", "/oauth/token", "/.well-known/openid-configuration", "/"):
        response = client.get(f"{kill_switch_proxy.url}{path}")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert len(response.content) < 400
    assert [r["path"] for r in standins.received("auth0")] == []
    state = standins.start("umbrella-google").state
    assert client.get(f"{kill_switch_proxy.url}/login/callback?code=c&state={state}").status_code == 302


def test_shadow_forwards_and_counts_what_normal_mode_would_do(
    shadow_proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    body = saml_body(RelayState=standins.start("acme-okta").state)  # SP-initiated: Auth0 started it
    standins.clear()
    response = client.post(f"{shadow_proxy.url}/login/callback", content=body, headers=FORM)
    assert response.status_code == 302
    assert body_of(last_received(standins, "auth0")) == body
    client.post(f"{shadow_proxy.url}/login/callback?connection=globex-adfs", content=body, headers=FORM)
    client.get(f"{shadow_proxy.url}/login/callback?code=c&state=s")
    shadow = "sso_proxy_shadow_decisions_total"
    assert metric(shadow_proxy, shadow, connection="acme-okta", would="workos") == 1
    assert metric(shadow_proxy, shadow, connection="globex-adfs", would="auth0") == 1
    assert metric(shadow_proxy, shadow, connection="_unknown", would="workos") == 1
    assert metric(shadow_proxy, "sso_proxy_callbacks_total", decision="workos") == 0
    assert (
        metric(
            shadow_proxy, "sso_proxy_callbacks_total", reason="shadow", identified_by="saml_audience", protocol="saml"
        )
        == 1
    )


def test_unknown_connection_follows_defaults_unknown(
    proxy: ProxyProcess, tuned_proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    body = saml_body(audience="urn:auth0:globex-prod:nobody")
    response = client.post(f"{proxy.url}/login/callback?connection=nobody", content=body, headers=FORM)
    assert response.status_code == 307
    assert response.headers["location"] == f"{workos_callback(standins)}?connection=nobody"
    standins.clear()
    response = client.post(f"{tuned_proxy.url}/login/callback?connection=nobody", content=body, headers=FORM)
    assert response.status_code == 302
    assert body_of(last_received(standins, "auth0")) == body
    labels = {"connection": "_unknown", "reason": "unknown_default", "protocol": "saml"}
    assert metric(tuned_proxy, "sso_proxy_callbacks_total", decision="auth0", **labels) >= 1


# --- passthrough --------------------------------------------------------------------------------


def test_authorize_passthrough(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    standins.clear()
    response = client.get(f"{proxy.url}/authorize?client_id=app&response_type=code&scope=openid%20email")
    assert response.status_code == 302
    assert response.headers["location"] == "/u/login?state=login-state"
    assert response.headers["set-cookie"].startswith("auth0_session=s-")
    received = last_received(standins, "auth0")
    assert received["query"] == "client_id=app&response_type=code&scope=openid%20email"


def test_token_passthrough(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    standins.clear()
    body = b"grant_type=authorization_code&code=" + SECRET_CODE.encode() + b"&client_id=app"
    response = client.post(f"{proxy.url}/oauth/token", content=body, headers=FORM)
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    received = last_received(standins, "auth0")
    assert (received["method"], received["path"]) == ("POST", "/oauth/token")
    assert body_of(received) == body


def test_other_methods_and_paths_pass_through(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    standins.clear()
    head = client.head(f"{proxy.url}/.well-known/openid-configuration")
    assert head.status_code == 200
    assert head.content == b""
    options = client.options(f"{proxy.url}/login/callback?connection=acme-okta")  # not a callback method
    assert options.status_code == 200
    put = client.put(f"{proxy.url}/api/v2/x", content=b"\x00\x01binary")
    assert put.json()["body"] == "\x00\x01binary"
    seen = [(r["method"], r["path"], r["query"]) for r in standins.received("auth0")]
    assert seen == [
        ("HEAD", "/.well-known/openid-configuration", ""),
        ("OPTIONS", "/login/callback", "connection=acme-okta"),
        ("PUT", "/api/v2/x", ""),
    ]


def test_callback_path_with_trailing_slash(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    response = client.get(f"{proxy.url}/login/callback/?connection=acme-okta")
    assert response.status_code == 307
    assert response.headers["location"] == f"{workos_callback(standins)}?connection=acme-okta"


def _raw(client: httpx.Client, url: str) -> tuple[httpx.Headers, bytes]:
    with client.stream("GET", url, headers={"accept-encoding": "gzip"}) as response:
        assert response.status_code == 200
        return response.headers, b"".join(response.iter_raw())


def test_gzip_body_passes_through_untouched(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    headers, via_proxy = _raw(client, f"{proxy.url}/_standin/gzip")
    _, direct = _raw(client, f"{standins.auth0.origin}/_standin/gzip")
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(via_proxy)
    assert via_proxy[:2] == b"\x1f\x8b"
    # gzip's header carries the compression time (bytes 4-7); everything else is identical
    assert via_proxy[:4] + via_proxy[8:] == direct[:4] + direct[8:]
    assert gzip.decompress(via_proxy) == b"compressed body from auth0\n" * 50


def test_large_streamed_response(proxy: ProxyProcess, client: httpx.Client) -> None:
    response = client.get(f"{proxy.url}/_standin/big?bytes=3000000")
    assert response.status_code == 200
    assert len(response.content) == 3_000_000


# --- headers to Auth0 ---------------------------------------------------------------------------


def echo(
    client: httpx.Client, proc: ProxyProcess, headers: dict[str, str] | list[tuple[str, str]]
) -> dict[str, object]:
    response = client.get(f"{proc.url}/some/path?q=1", headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()
    assert isinstance(data, dict)
    return data


def test_headers_sent_to_auth0(proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    sent = [
        ("user-agent", "Mozilla/5.0 (test)"),
        ("cookie", f"a={SECRET_COOKIE}; b=2"),
        ("origin", "https://idp.example.com"),
        ("referer", "https://idp.example.com/app?x=1"),
        ("accept-language", "de-CH"),
        ("cname-api-key", "forged-key"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "must-not-pass"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic eDp5"),
        ("te", "trailers"),
        ("true-client-ip", "6.6.6.6"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ]
    data = echo(client, proxy, sent)
    assert (data["method"], data["path"], data["query"]) == ("GET", "/some/path", "q=1")
    for name in ("user-agent", "cookie", "origin", "referer", "accept-language"):
        assert header_values(data, name) == [dict(sent)[name]]
    assert header_values(data, "cname-api-key") == [CNAME_KEY]  # the stand-in answers 403 otherwise
    for name in ("x-hop", "keep-alive", "proxy-authorization", "te"):
        assert header_values(data, name) == []
    assert header_values(data, "host") == [f"127.0.0.1:{standins.auth0.port}"]
    assert header_values(data, "true-client-ip") == []  # not configured; a client's copy never passes
    assert header_values(data, "x-forwarded-for") == ["127.0.0.1"]  # the peer, not the spoofed value
    assert header_values(data, "x-forwarded-proto") == ["http"]
    assert header_values(data, "x-forwarded-host") == [f"127.0.0.1:{proxy.port}"]


def test_forwarded_headers_believed_from_a_trusted_proxy(tuned_proxy: ProxyProcess, client: httpx.Client) -> None:
    data = echo(
        client,
        tuned_proxy,
        {
            "true-client-ip": "6.6.6.6",
            "x-forwarded-for": "198.51.100.7",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "login.example.com",
        },
    )
    assert header_values(data, "true-client-ip") == []
    assert header_values(data, "x-forwarded-for") == ["198.51.100.7"]  # one address (Auth0 expects just one)
    assert header_values(data, "x-forwarded-proto") == ["https"]
    assert header_values(data, "x-forwarded-host") == ["login.example.com"]


def test_without_a_cname_api_key_auth0_refuses(standins: StandIns, client: httpx.Client) -> None:
    """The stand-in really checks the key, so the 200s above prove the proxy sent the right one."""
    assert client.get(f"{standins.auth0.origin}/some/path").status_code == 403
    assert client.get(f"{standins.auth0.origin}/some/path", headers={"cname-api-key": "x"}).status_code == 403


# --- limits and failures ------------------------------------------------------------------------


def test_body_over_the_limit_is_413(tuned_proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    standins.clear()
    before = metric(tuned_proxy, "sso_proxy_rejected_requests_total", reason="body_too_large")
    big = b"SAMLResponse=" + b"A" * 5000
    response = client.post(f"{tuned_proxy.url}/login/callback", content=big, headers=FORM)
    assert response.status_code == 413
    assert len(response.content) < 400

    def chunks() -> Iterator[bytes]:
        yield b"SAMLResponse="
        for _ in range(10):
            yield b"A" * 1000

    with httpx.Client(timeout=10) as fresh:
        response = fresh.post(f"{tuned_proxy.url}/oauth/token", content=chunks(), headers=FORM)
    assert response.status_code == 413
    assert metric(tuned_proxy, "sso_proxy_rejected_requests_total", reason="body_too_large") == before + 2
    assert standins.received("auth0") == []
    # just under the limit passes
    ok = b"SAMLResponse=" + b"A" * 4000
    response = client.post(f"{tuned_proxy.url}/login/callback?connection=globex-adfs", content=ok, headers=FORM)
    assert response.status_code == 302


@pytest.mark.parametrize(
    "head",
    [
        b"POST /login/callback?connection=globex-adfs HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nSAMLResp",
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\ngrant_type=auth",
        b"POST /login/callback?connection=globex-adfs HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
    ids=["callback-content-length", "passthrough-content-length", "callback-chunked"],
)
def test_truncated_body_is_never_forwarded(
    proxy: ProxyProcess, standins: StandIns, client: httpx.Client, head: bytes
) -> None:
    """A client that disconnects mid-body must not have its partial request replayed to Auth0."""
    standins.clear()
    before = metric(proxy, "sso_proxy_rejected_requests_total", reason="incomplete_body")
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.sendall(head)
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while metric(proxy, "sso_proxy_rejected_requests_total", reason="incomplete_body") == before:
        assert time.monotonic() < deadline, "the cut request was never counted"
        time.sleep(0.05)
    assert standins.received("auth0") == []
    assert client.get(f"{proxy.url}/login/callback?connection=acme-okta").status_code == 307


INTERNALS = ("127.0.0.1", "Traceback", "aiohttp", "Error", "auth0.com", "Connect")


@pytest.mark.parametrize(
    "request_args",
    [("GET", "/authorize?client_id=x", b""), ("POST", "/login/callback?connection=globex-adfs", b"SAMLResponse=x")],
)
def test_auth0_down_is_502(
    down_proxy: ProxyProcess, client: httpx.Client, request_args: tuple[str, str, bytes]
) -> None:
    method, path, body = request_args
    before = metric(down_proxy, "sso_proxy_upstream_errors_total", kind="connect")
    response = client.request(method, f"{down_proxy.url}{path}", content=body, headers=FORM)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert len(response.content) < 400
    assert not any(word in response.text for word in INTERNALS)
    assert metric(down_proxy, "sso_proxy_upstream_errors_total", kind="connect") == before + 1


def test_auth0_slow_is_504(tuned_proxy: ProxyProcess, client: httpx.Client) -> None:
    before = metric(tuned_proxy, "sso_proxy_upstream_errors_total", kind="timeout")
    started = time.monotonic()
    response = client.get(f"{tuned_proxy.url}/_standin/slow?seconds=3")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert elapsed < 2.5
    assert len(response.content) < 400
    assert not any(word in response.text for word in INTERNALS)
    assert metric(tuned_proxy, "sso_proxy_upstream_errors_total", kind="timeout") == before + 1


@pytest.mark.parametrize("payload", [samples.XXE, samples.BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_hostile_saml_is_unknown_and_harmless(
    proxy: ProxyProcess, standins: StandIns, client: httpx.Client, payload: bytes
) -> None:
    before = metric(proxy, "sso_proxy_callbacks_total", reason="unparseable", connection="_unknown")
    started = time.monotonic()
    response = client.post(f"{proxy.url}/login/callback", content=samples.saml_form(payload), headers=FORM)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 307  # unknown -> defaults.unknown (workos)
    assert response.headers["location"] == workos_callback(standins)
    assert metric(proxy, "sso_proxy_callbacks_total", reason="unparseable", connection="_unknown") == before + 1
    assert httpx.get(f"{proxy.admin}/healthz").status_code == 200
    assert proxy.proc is not None and proxy.proc.poll() is None


# --- form redirect mode -------------------------------------------------------------------------


def test_form_redirect_mode(tuned_proxy: ProxyProcess, standins: StandIns, client: httpx.Client) -> None:
    body = saml_body(extra="<b>&\"'")
    response = client.post(f"{tuned_proxy.url}/login/callback?connection=acme-okta&x=1", content=body, headers=FORM)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    target = f"{workos_callback(standins)}?connection=acme-okta&x=1"
    action = re.search(r'<form method="post" action="([^"]*)"', page)
    assert action is not None and html.unescape(action.group(1)) == target
    inputs = dict(
        (html.unescape(k), html.unescape(v))
        for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
    )
    assert inputs == {
        "SAMLResponse": samples.saml_b64(
            samples.saml_xml(audience="urn:auth0:globex-prod:acme-okta", issuer=None, destination=None)
        ),
        "RelayState": "relay-123",
        "extra": "<b>&\"'",
    }
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    csp = response.headers["content-security-policy"]
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";")}
    assert directives["script-src"] == f"script-src 'sha256-{digest}'"
    # no form-action: browsers apply it to the redirects after the submission (WorkOS's 302 to the app)
    assert "form-action" not in directives
    assert directives["default-src"] == "default-src 'none'"
    # re-posting the form's fields reaches WorkOS with the same SAMLResponse
    standins.clear()
    followed = client.post(target, content=urlencode(inputs), headers=FORM)
    assert followed.status_code == 200
    assert body_of(last_received(standins, "workos")) == urlencode(inputs).encode()


def test_form_redirect_mode_with_many_fields_is_a_307(
    tuned_proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    """A body of many fields is not re-posted field by field (a loop stall), but redirected intact."""
    body = saml_body() + b"&" + b"&".join(b"f%d=v" % i for i in range(200))
    response = client.post(f"{tuned_proxy.url}/login/callback?connection=acme-okta", content=body, headers=FORM)
    assert response.status_code == 307
    assert response.headers["location"] == f"{workos_callback(standins)}?connection=acme-okta"


def test_form_redirect_mode_get_is_still_307(
    tuned_proxy: ProxyProcess, standins: StandIns, client: httpx.Client
) -> None:
    response = client.get(f"{tuned_proxy.url}/login/callback?connection=acme-okta&code=c")
    assert response.status_code == 307
    assert response.headers["location"] == f"{workos_callback(standins)}?connection=acme-okta&code=c"


# --- start-up failures --------------------------------------------------------------------------


def run_serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "serve", *args, "--port", str(free_port()), "--admin-port", str(free_port())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_invalid_routes_file_refuses_to_start(standins: StandIns, tmp_module: Path) -> None:
    bad = tmp_module / "bad.yaml"
    bad.write_text(
        "version: 1\ndefaults: {mode: panic}\nconnections:\n"
        "  acme: {protocol: saml, state: moved}\n"
        "  beta: {protocol: ws-fed, state: legacy, workos_acs_url: 'https://evil.example/acs'}\n"
    )
    env = proxy_env(standins.auth0.origin, f"127.0.0.1:{standins.workos.port}")
    result = run_serve(env, "--routes", str(bad))
    assert result.returncode != 0
    for located in (
        "defaults.mode",
        "connections.acme.state",
        "connections.beta.protocol",
        "connections.beta.workos_acs_url",
    ):
        assert f"{bad}: {located}" in result.stderr, result.stderr


# AUTH0_FALLBACK_ORIGIN may be left out only with SSO_PROXY_AUTH0_OFF=true (tests/test_retired.py).
@pytest.mark.parametrize("missing", ["WORKOS_CUSTOM_DOMAIN", "WORKOS_CLIENT_ID", "AUTH0_FALLBACK_ORIGIN"])
def test_missing_setting_is_one_line_naming_it(standins: StandIns, routes_file: Path, missing: str) -> None:
    env = proxy_env(standins.auth0.origin, f"127.0.0.1:{standins.workos.port}")
    del env[missing]
    result = run_serve(env, "--routes", str(routes_file))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert missing in lines[0]
    if missing == "AUTH0_FALLBACK_ORIGIN":  # a dropped variable must not switch Auth0 off
        assert "SSO_PROXY_AUTH0_OFF=true" in lines[0]


def test_looping_fallback_origin_refused(standins: StandIns, routes_file: Path) -> None:
    workos = f"127.0.0.1:{standins.workos.port}"
    env = proxy_env(f"http://{workos}", workos)
    result = run_serve(env, "--routes", str(routes_file))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "AUTH0_FALLBACK_ORIGIN" in result.stderr


# --- logs (last: they cover what the tests above sent) ------------------------------------------


def test_callback_log_lines_are_structured(proxy: ProxyProcess) -> None:
    import json

    callbacks = [json.loads(line) for line in proxy.log_lines if '"msg":"callback"' in line]
    assert callbacks
    for entry in callbacks:
        for key in ("request_id", "method", "path", "identified_by", "decision", "reason", "status", "duration_ms"):
            assert key in entry


@pytest.mark.parametrize("which", ["proxy", "tuned_proxy", "kill_switch_proxy", "shadow_proxy"])
def test_no_secret_in_logs(request: pytest.FixtureRequest, which: str) -> None:
    proc: ProxyProcess = request.getfixturevalue(which)
    secrets = [
        SECRET_CODE,
        SECRET_STATE,
        SECRET_COOKIE,
        CNAME_KEY,
        "forged-key",
        "relay-123",
        samples.saml_b64(samples.saml_xml(audience="urn:auth0:globex-prod:acme-okta", issuer=None, destination=None))[
            :40
        ],
        samples.id_token({"aud": "3f2a9c1e-entra"})[:40],
    ]
    assert proc.log_lines, "the proxy logged nothing"
    leaked = [(s, line) for line in proc.log_lines for s in secrets if s in line]
    assert leaked == []


class Canary:
    """A TCP listener that counts connections: the host an attacker would like the proxy to reach."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        """Connections accepted so far; closes the listener."""
        count = 0
        with self.sock:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    return count
                conn.close()
                count += 1


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"</html>" in b"".join(chunks):
                break
    return b"".join(chunks)


@pytest.mark.parametrize(
    "target",
    [
        "*@127.0.0.1:{canary}/x",
        "*@127.0.0.1:{canary}/login/callback?connection=globex-adfs",
        "*@127.0.0.1:{admin}/routes",
        "*",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "OPTIONS"])
def test_a_request_target_never_picks_the_upstream_host(
    proxy: ProxyProcess, standins: StandIns, target: str, method: str
) -> None:
    """Issue 11, finding 1: only origin-form targets are served; the rest is a 400 page, forwarded nowhere."""
    canary = Canary()
    standins.clear()
    before = metric(proxy, "sso_proxy_rejected_requests_total", reason="bad_target")
    line = target.format(canary=canary.port, admin=proxy.admin_port)
    body = b"SAMLResponse=x&RelayState=y"
    request = (
        f"{method} {line} HTTP/1.1\r\nHost: login.example.com\r\nCookie: auth0=secret\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    answer = _raw_exchange(proxy.port, request)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"Traceback" not in answer and b"Bad request" in answer
    assert canary.connections() == 0
    assert standins.received("auth0") == []
    assert metric(proxy, "sso_proxy_rejected_requests_total", reason="bad_target") == before + 1
    assert not any("Traceback" in line for line in proxy.log_lines)


def test_absolute_form_is_reduced_to_its_path(proxy: ProxyProcess, standins: StandIns) -> None:
    """RFC 9112 section 3.2.2: a server accepts absolute-form; its host is never used to pick the upstream."""
    canary = Canary()
    standins.clear()
    answer = _raw_exchange(
        proxy.port,
        f"GET http://127.0.0.1:{canary.port}/authorize?client_id=abc HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 ")
    assert canary.connections() == 0
    received = last_received(standins, "auth0")
    assert (received["path"], received["query"]) == ("/authorize", "client_id=abc")
