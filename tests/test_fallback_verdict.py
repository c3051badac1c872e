"""A fallback is counted by Auth0's verdict on it (issue 20, item 9), through the real server.

Anyone can add ``fallback=auth0`` to a URL, and anyone can collect the cookie that marks a callback
as sent to WorkOS by this proxy (it is set on any callback it redirects), so ``solicited="true"``
alone is forgeable. What a stranger cannot forge is Auth0 accepting the callback: a redirect without
``error``. ``sso_proxy_fallbacks_total{verdict}`` says which, and the alerts read accepted ones only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ProxyProcess, StandIns, start_against
from tests.hostile_kit import RawUpstream, exchange, get, status_of

FORM = {"content-type": "application/x-www-form-urlencoded"}


def fallbacks(proc: ProxyProcess, connection: str, solicited: str, verdict: str) -> float:
    labels = (("connection", connection), ("solicited", solicited), ("verdict", verdict))
    return proc.scrape().get(("sso_proxy_fallbacks_total", labels), 0.0)


def fallback_lines(proc: ProxyProcess, connection: str) -> list[dict[str, object]]:
    time.sleep(0.2)  # the log line is written after the response
    lines = [json.loads(line) for line in proc.log_lines if line.startswith("{")]
    return [
        line
        for line in lines
        if line.get("msg") == "callback" and line.get("reason") == "fallback" and line.get("connection") == connection
    ]


def test_forged_solicited_fallbacks_are_refused_by_auth0_and_counted_so(proxy: ProxyProcess) -> None:
    """The issue's forgery: fetch the marker cookie for a made-up state, then send fallback=auth0 with it."""
    before = {v: fallbacks(proxy, "acme-okta", "true", v) for v in ("accepted", "refused")}
    callback = f"{proxy.url}/login/callback?connection=acme-okta&state=A1"
    for _ in range(3):
        marked = httpx.get(callback, timeout=10)  # a 307 to WorkOS, and the marker cookie, for anyone
        assert marked.status_code == 307
        cookie = marked.headers["set-cookie"].split(";", 1)[0]
        assert cookie.startswith("sso_proxy_wx=")
        forged = httpx.get(callback + "&fallback=auth0", headers={"cookie": cookie}, timeout=10)
        assert forged.status_code == 400  # the Auth0 stand-in refuses a state it did not issue, as Auth0 does
    assert fallbacks(proxy, "acme-okta", "true", "refused") == before["refused"] + 3
    assert fallbacks(proxy, "acme-okta", "true", "accepted") == before["accepted"]
    line = fallback_lines(proxy, "acme-okta")[-1]
    assert (line["solicited"], line["verdict"], line["status"]) == ("true", "refused", 400)


def test_a_fallback_auth0_accepts_is_accepted(proxy: ProxyProcess, standins: StandIns) -> None:
    """A login Auth0 started comes back through WorkOS with fallback=auth0: Auth0 takes it (302 to the app)."""
    started = standins.start("globex-adfs")
    before = fallbacks(proxy, "globex-adfs", "false", "accepted")
    response = httpx.post(
        f"{proxy.url}/login/callback?connection=globex-adfs&fallback=auth0",
        content=f"SAMLResponse=PHNhbWw%2B&RelayState={started.state}",
        headers=FORM,
        timeout=10,
    )
    assert response.status_code == 302
    assert fallbacks(proxy, "globex-adfs", "false", "accepted") == before + 1
    line = fallback_lines(proxy, "globex-adfs")[-1]
    assert (line["solicited"], line["verdict"]) == ("false", "accepted")


# --- Auth0's answers, byte for byte (RawUpstream) ---------------------------------------------------


@pytest.fixture(scope="module")
def raw_proxy(upstream: RawUpstream, routes: Path) -> Iterator[ProxyProcess]:
    proc = start_against(upstream, routes)
    yield proc
    proc.stop()


def answer(status: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    head = [b"HTTP/1.1 " + status, *headers, b"content-length: " + str(len(body)).encode()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("response", "verdict"),
    [
        (answer(b"302 Found", b"location: https://app.example.com/cb?code=c&state=s"), "accepted"),
        (answer(b"302 Found", b"location: /authorize/resume?state=s"), "accepted"),
        (answer(b"303 See Other", b"location: https://app.example.com/cb?errors_seen=0"), "accepted"),
        (answer(b"302 Found", b"location: https://app.example.com/cb?error=access_denied&state=s"), "refused"),
        (answer(b"302 Found", b"location: https://app.example.com/cb?state=s&error=invalid_request"), "refused"),
        (answer(b"302 Found", b"location: https://app.example.com/cb#error=access_denied"), "refused"),
        (answer(b"302 Found"), "refused"),  # a redirect to nowhere
        (answer(b"400 Bad Request", body=b"invalid state"), "refused"),
        (answer(b"403 Forbidden", body=b"no"), "refused"),
        (answer(b"500 Internal Server Error", body=b"oops"), "refused"),
        (answer(b"200 OK", b"content-type: text/html", body=b"<h1>Oops, something went wrong</h1>"), "refused"),
    ],
    ids=[
        "302-app",
        "302-resume",
        "303-errors_seen",
        "302-error",
        "302-error-later",
        "302-fragment-error",
        "302-no-location",
        "400",
        "403",
        "500",
        "200-page",
    ],
)
def test_auth0s_answer_is_the_verdict(
    raw_proxy: ProxyProcess, upstream: RawUpstream, response: bytes, verdict: str
) -> None:
    upstream.response = response
    try:
        before = fallbacks(raw_proxy, "globex-adfs", "false", verdict)
        sent = exchange(raw_proxy.port, get(b"/login/callback?connection=globex-adfs&code=c&state=s&fallback=auth0"))
        assert status_of(sent) == int(response[9:12])  # passed back unchanged
        assert fallbacks(raw_proxy, "globex-adfs", "false", verdict) == before + 1
    finally:
        upstream.response = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n"
