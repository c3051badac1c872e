"""The end user's IP reaches Auth0 as Auth0 documents it (issue 20, item 6), through the real server.

Auth0, "Configure Custom Domains with Self-Managed Certificates", section "Original client ip
address": the proxy sets X-Forwarded-For to the end user's IP address, "Just one ip address is
expected"; the custom domain's ``custom_client_ip_header`` may name another header (true-client-ip,
cf-connecting-ip, x-azure-clientip). ``RawUpstream`` shows the exact bytes Auth0 would receive; the
Auth0 stand-in refuses a forwarded request that breaks the contract.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import CNAME_KEY, ROOT, ProxyProcess, StandIns, proxy_env, start_against
from tests.hostile_kit import RawUpstream, exchange, get, status_of


def header_lines(request: bytes, name: bytes) -> list[bytes]:
    head = request.split(b"\r\n\r\n", 1)[0]
    return [
        line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:] if line.split(b":", 1)[0].lower() == name
    ]


SPOOFS = (b"x-forwarded-for: 6.6.6.6, 1.2.3.4", b"x-forwarded-for: 7.7.7.7", b"true-client-ip: 6.6.6.6")


@pytest.mark.parametrize(
    ("env", "sent", "ip_headers"),
    [
        # Default: X-Forwarded-For alone, the peer; never the client's chain, never a True-Client-IP.
        ({}, SPOOFS, {b"x-forwarded-for": [b"127.0.0.1"], b"true-client-ip": []}),
        # x-forwarded-for named: the same, and still one header (it went out twice before).
        (
            {"AUTH0_CLIENT_IP_HEADER": "x-forwarded-for"},
            SPOOFS,
            {b"x-forwarded-for": [b"127.0.0.1"], b"true-client-ip": []},
        ),
        # Another header the custom domain reads: sent too, the same one address.
        (
            {"AUTH0_CLIENT_IP_HEADER": "cf-connecting-ip"},
            (*SPOOFS, b"cf-connecting-ip: 6.6.6.6"),
            {b"x-forwarded-for": [b"127.0.0.1"], b"cf-connecting-ip": [b"127.0.0.1"], b"true-client-ip": []},
        ),
        # Behind a trusted proxy: the right-most untrusted entry, alone.
        (
            {"SSO_PROXY_TRUSTED_PROXIES": "127.0.0.1/32,10.0.0.0/8"},
            (b"x-forwarded-for: 6.6.6.6, 198.51.100.7, 10.1.2.3",),
            {b"x-forwarded-for": [b"198.51.100.7"]},
        ),
        # A trusted proxy that sends none: the proxy itself (what Auth0 would assume anyway).
        ({"SSO_PROXY_TRUSTED_PROXIES": "127.0.0.1/32"}, (), {b"x-forwarded-for": [b"127.0.0.1"]}),
    ],
    ids=["default", "x-forwarded-for", "cf-connecting-ip", "trusted-chain", "trusted-none"],
)
def test_auth0_gets_one_x_forwarded_for_with_one_address(
    upstream: RawUpstream,
    routes: Path,
    env: dict[str, str],
    sent: tuple[bytes, ...],
    ip_headers: dict[bytes, list[bytes]],
) -> None:
    proc = start_against(upstream, routes, **env)
    try:
        upstream.requests.clear()
        assert status_of(exchange(proc.port, get(b"/authorize", *sent))) == 200
        request = upstream.wait_requests(1)[0]
    finally:
        proc.stop()
    for name, expected in ip_headers.items():
        assert header_lines(request, name) == expected, name
    assert b"6.6.6.6" not in request and b"7.7.7.7" not in request


@pytest.mark.parametrize("value", ["x-real-ip", "true_client_ip", "forwarded"])
def test_an_ip_header_auth0_does_not_read_stops_the_start_with_one_line(routes: Path, value: str) -> None:
    env = proxy_env("http://127.0.0.1:9", "127.0.0.1:9", AUTH0_CLIENT_IP_HEADER=value)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--routes", str(routes), "--port", "0", "--admin-port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "AUTH0_CLIENT_IP_HEADER" in line]
    assert len(lines) == 1 and "true-client-ip, cf-connecting-ip, x-azure-clientip" in lines[0]


# --- the Auth0 stand-in checks the contract ------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded_for", "status"),
    [
        ([], 400),
        (["198.51.100.7", "198.51.100.8"], 400),  # two headers
        (["198.51.100.7, 10.0.0.1"], 400),  # a list
        (["not-an-address"], 400),
        (["198.51.100.7:443"], 400),  # an address with a port is not an address
        (["unknown"], 400),
        ([""], 400),
        (["198.51.100.7"], 200),
        (["2001:db8::7"], 200),
    ],
)
def test_auth0_standin_refuses_a_request_without_one_address(
    standins: StandIns, forwarded_for: list[str], status: int
) -> None:
    headers = [("cname-api-key", CNAME_KEY), *(("x-forwarded-for", value) for value in forwarded_for)]
    response = httpx.get(f"{standins.auth0.origin}/some/path", headers=headers, timeout=10)
    assert response.status_code == status, response.text
    if status == 400:
        assert "X-Forwarded-For" in response.text


def test_every_request_the_proxy_forwards_passes_the_standin(proxy: ProxyProcess, standins: StandIns) -> None:
    """Through the real proxy the stand-in sees one address even when the client sent a chain."""
    standins.clear()
    response = httpx.get(f"{proxy.url}/some/path", headers={"x-forwarded-for": "6.6.6.6, 7.7.7.7"}, timeout=10)
    assert response.status_code == 200, response.text
    received = standins.received("auth0")[-1]
    assert [v for k, v in received["headers"] if k == "x-forwarded-for"] == ["127.0.0.1"]
