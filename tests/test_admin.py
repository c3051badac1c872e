"""The operations listener's guard (proxy/admin.py): the pure check by tables, then the real listener."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.admin import AdminPolicy, check, host_allowed, parse_token
from tests.conftest import ADMIN_AUTH, ADMIN_TOKEN, ROUTES_YAML, ProxyProcess, StandIns, start_proxy

TOKEN = "t" * 40
POLICY = AdminPolicy(token=TOKEN, hosts=("sso-proxy-metrics.sso.svc", "ops.example.com:9090"), bind_host="0.0.0.0")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),  # HTTP/1.0 without Host: not a browser
        ("127.0.0.1", True),
        ("127.0.0.1:9090", True),
        ("10.1.2.3:9090", True),  # Prometheus scraping the pod IP, kubelet probes
        ("[::1]:9090", True),
        ("[fd00::17]", True),
        ("localhost", True),
        ("LOCALHOST:9090", True),
        ("localhost.:9090", True),
        ("0.0.0.0:9090", True),  # the bind address itself
        ("sso-proxy-metrics.sso.svc:9090", True),  # a listed name, any port
        ("ops.example.com:9090", True),
        ("ops.example.com:9091", False),  # listed with a port: only that port
        ("attacker.example", False),  # DNS rebinding: the attacker's name, pointed at 127.0.0.1
        ("attacker.example:9090", False),
        ("127.0.0.1.attacker.example", False),
        ("localhost.attacker.example", False),
        ("sso-proxy-metrics.sso.svc.attacker.example", False),
        ("127.0.0.1:99999999", False),
        ("127.0.0.1:x", False),
        ("", False),
        ("127.0.0.1 evil", False),
        ("127.0.0.1\x85", False),
    ],
)
def test_host_allowed(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, POLICY) is allowed


def _h(**headers: str) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in headers.items()}


BEARER = f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("method", "headers", "policy", "expected"),
    [
        # GET endpoints: only Host and cross-site checks.
        ("GET", _h(host="127.0.0.1:9090"), POLICY, None),
        ("GET", _h(host="10.0.0.7:9090", user_agent="Prometheus/2.53"), POLICY, None),
        ("GET", _h(host="evil.example:9090"), POLICY, (403, "host")),
        ("GET", _h(host="127.0.0.1:9090", sec_fetch_site="cross-site"), POLICY, (403, "cross_site")),
        ("GET", _h(host="127.0.0.1:9090", sec_fetch_site="same-site"), POLICY, (403, "cross_site")),
        ("GET", _h(host="127.0.0.1:9090", sec_fetch_site="none"), POLICY, None),  # typed in the address bar
        ("GET", _h(host="127.0.0.1:9090", sec_fetch_site="same-origin"), POLICY, None),
        ("GET", _h(host="127.0.0.1:9090", origin="http://127.0.0.1:9090"), POLICY, None),
        ("GET", _h(host="127.0.0.1:9090", origin="http://evil.example"), POLICY, (403, "cross_site")),
        ("GET", _h(host="127.0.0.1:9090", origin="null"), POLICY, (403, "cross_site")),
        ("GET", _h(host="127.0.0.1:9090", authorization="Bearer wrong"), POLICY, None),  # GETs need no token
        # POST /-/reload: token, body type.
        ("POST", _h(host="127.0.0.1:9090", authorization=BEARER), POLICY, None),
        ("POST", _h(host="127.0.0.1:9090", authorization=f"bearer  {TOKEN} "), POLICY, None),
        ("POST", _h(host="127.0.0.1:9090", authorization=BEARER, content_type="application/json"), POLICY, None),
        ("POST", _h(host="127.0.0.1:9090"), POLICY, (401, "token")),
        ("POST", _h(host="127.0.0.1:9090", authorization="Bearer " + TOKEN[:-1]), POLICY, (401, "token")),
        ("POST", _h(host="127.0.0.1:9090", authorization="Bearer " + TOKEN + "x"), POLICY, (401, "token")),
        ("POST", _h(host="127.0.0.1:9090", authorization="Basic " + TOKEN), POLICY, (401, "token")),
        ("POST", _h(host="127.0.0.1:9090", authorization=TOKEN), POLICY, (401, "token")),
        (
            "POST",
            _h(host="127.0.0.1:9090", authorization=BEARER, content_type="text/plain"),
            POLICY,
            (415, "content_type"),
        ),
        (
            "POST",
            _h(host="127.0.0.1:9090", authorization=BEARER, content_type="application/x-www-form-urlencoded"),
            POLICY,
            (415, "content_type"),
        ),
        (
            "POST",
            _h(host="127.0.0.1:9090", authorization=BEARER, content_type="multipart/form-data; boundary=x"),
            POLICY,
            (415, "content_type"),
        ),
        # The classic cross-site simple POST a web page can send: refused before the token is even looked at.
        (
            "POST",
            _h(
                host="127.0.0.1:9090",
                origin="https://evil.example",
                sec_fetch_site="cross-site",
                content_type="text/plain",
            ),
            POLICY,
            (403, "cross_site"),
        ),
        ("POST", _h(host="evil.example:9090", authorization=BEARER), POLICY, (403, "host")),
        # No token configured: state changes are off, whatever is sent.
        ("POST", _h(host="127.0.0.1:9090"), AdminPolicy(), (403, "off")),
        ("POST", _h(host="127.0.0.1:9090", authorization="Bearer "), AdminPolicy(), (403, "off")),
        ("GET", _h(host="127.0.0.1:9090"), AdminPolicy(), None),
    ],
)
def test_check(method: str, headers: dict[str, str], policy: AdminPolicy, expected: tuple[int, str] | None) -> None:
    refusal = check(method, "/-/reload" if method == "POST" else "/metrics", headers, policy, method == "POST")
    assert (None if refusal is None else (refusal.status, refusal.reason)) == expected
    if refusal is not None:
        assert TOKEN not in refusal.message


@pytest.mark.parametrize("value", ["", "x" * 32, "  " + "y" * 64 + "\n"])
def test_parse_token_accepts(value: str) -> None:
    assert parse_token(value) == value.strip()


@pytest.mark.parametrize("value", ["short", "x" * 31, "x" * 32 + " x", "é" * 40, "x" * 32 + "\x00"])
def test_parse_token_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_token(value)


# --- through the real operations listener ----------------------------------------------------------


@pytest.fixture()
def ops_proxy(standins: StandIns, tmp_path: Path) -> Iterator[ProxyProcess]:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_YAML)
    proc = start_proxy(standins, path, SSO_PROXY_RELOAD_INTERVAL="0", SSO_PROXY_ADMIN_HOSTS="ops.internal")
    yield proc
    proc.stop()


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (httpx would fix the Host header); the status and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def refused(proxy: ProxyProcess) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in proxy.scrape().items()
        if name == "sso_proxy_admin_refused_total"
    }


def test_reload_needs_the_token_and_refuses_cross_site_and_foreign_hosts(ops_proxy: ProxyProcess) -> None:
    url = f"{ops_proxy.admin}/-/reload"
    before = refused(ops_proxy)
    assert httpx.post(url, headers=ADMIN_AUTH).json()["result"] == "unchanged"
    reply = httpx.post(url)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.headers["cache-control"] == "no-store"
    assert httpx.post(url, headers={"authorization": "Bearer " + "x" * len(ADMIN_TOKEN)}).status_code == 401
    # What a web page can send cross-site without a preflight: a text/plain POST.
    page = {"origin": "https://evil.example", "sec-fetch-site": "cross-site", "content-type": "text/plain"}
    assert httpx.post(url, headers={**page, **ADMIN_AUTH}, content=b"x").status_code == 403
    assert httpx.post(url, headers={"content-type": "text/plain", **ADMIN_AUTH}, content=b"x").status_code == 415
    # DNS rebinding: the attacker's name in Host, on every endpoint, GETs included.
    for method, path in (("GET", "/routes"), ("GET", "/metrics"), ("POST", "/-/reload")):
        status, body = raw_request(
            ops_proxy.admin_port,
            f"{method} {path} HTTP/1.1\r\nHost: rebind.attacker.example:{ops_proxy.admin_port}\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode(),
        )
        assert status == 403, (method, path)
        assert b"sso_proxy_" not in body and b"sha256" not in body
    status, _ = raw_request(
        ops_proxy.admin_port, b"GET /routes HTTP/1.1\r\nHost: ops.internal:9090\r\nConnection: close\r\n\r\n"
    )
    assert status == 200  # a configured name
    status, _ = raw_request(
        ops_proxy.admin_port,
        b"GET /routes HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    assert status in (400, 403)  # two Host headers: refused, whichever layer sees it first
    after = refused(ops_proxy)
    assert after["token"] - before["token"] == 2
    assert after["cross_site"] - before["cross_site"] == 1
    assert after["content_type"] - before["content_type"] == 1
    assert after["host"] - before["host"] >= 3
    # Prometheus scraping by pod IP and the probes keep working.
    assert httpx.get(f"{ops_proxy.admin}/metrics").status_code == 200
    assert httpx.get(f"{ops_proxy.admin}/readyz").status_code == 200
    assert not any(ADMIN_TOKEN in line for line in ops_proxy.log_lines)


def test_without_a_token_the_reload_endpoint_is_off_but_sighup_still_reloads(
    standins: StandIns, tmp_path: Path
) -> None:
    import signal
    import time

    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES_YAML)
    proc = start_proxy(standins, path, SSO_PROXY_RELOAD_INTERVAL="0", SSO_PROXY_ADMIN_TOKEN="")
    try:
        reply = httpx.post(f"{proc.admin}/-/reload", headers=ADMIN_AUTH)
        assert reply.status_code == 403
        assert "SSO_PROXY_ADMIN_TOKEN" in reply.json()["error"]
        path.write_text(ROUTES_YAML.replace("state: workos", "state: legacy", 1))
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while httpx.get(f"{proc.admin}/routes").json()["connections"]["acme-okta"] != "legacy":
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.05)
    finally:
        proc.stop()
