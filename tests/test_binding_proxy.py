"""Transaction binding through the running server: Auth0 starts a login through the proxy, the
callback comes back (to the same replica or another with the same keys) and goes to Auth0.

The browser is played by hand: the Set-Cookie the proxy adds is sent back as a Cookie header, as a
browser does over https (httpx's cookie jar keeps ``Secure`` cookies off plain http; the browser
suite runs the same flows over TLS).
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import brotli
import httpx
import pytest
import zstandard

from proxy.sandbox.auth0_standin import create_auth0_standin
from proxy.sandbox.standin import UpstreamIdp
from proxy.sandbox.workos_standin import create_workos_standin
from tests.conftest import CLIENT_ID, CNAME_KEY, MIGRATED, ROUTES_YAML, ProxyProcess, StandIns, ThreadServer, free_port
from tests.conftest import start_proxy as start_proxy_on
from tests.samples import saml_form, saml_xml

KEYS = "k" * 32 + "," + "old-key-" + "o" * 30
FORM = {"content-type": "application/x-www-form-urlencoded"}
IDPS = {
    "initech-entra": UpstreamIdp("oidc", "https://idp.initech.test/authorize"),
    "acme-okta": UpstreamIdp("saml", "https://idp.acme.test/sso"),
    "hooli-ping": UpstreamIdp("saml", "https://idp.hooli.test/sso", binding="post"),
}


@pytest.fixture(scope="module")
def bstandins() -> Iterator[StandIns]:
    proxy_port = free_port()
    # States of another form than Auth0's own (issue 23): these tests are of the cookie alone; the
    # second witness (Auth0's state form) is tested in tests/test_witness.py.
    auth0 = ThreadServer(create_auth0_standin(CNAME_KEY, idps=IDPS, state_form="opaque")).start()
    workos = ThreadServer(create_workos_standin(CLIENT_ID, f"http://127.0.0.1:{proxy_port}", MIGRATED)).start()
    yield StandIns(auth0, workos, proxy_port)
    auth0.stop()
    workos.stop()


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("binding") / "routes.yaml"
    path.write_text(ROUTES_YAML)
    return path


@pytest.fixture(scope="module")
def replicas(bstandins: StandIns, routes: Path) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    """Two replicas sharing keys (the second lists them rotated: any listed key verifies)."""
    first_key, second_key = KEYS.split(",")
    a = start_proxy_on(bstandins, routes, port=bstandins.proxy_port, SSO_PROXY_TRANSACTION_KEYS=KEYS)
    b = start_proxy_on(bstandins, routes, SSO_PROXY_TRANSACTION_KEYS=f"{second_key},{first_key}")
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture(scope="module")
def stranger(bstandins: StandIns, routes: Path) -> Iterator[ProxyProcess]:
    """A replica with its own random key (SSO_PROXY_TRANSACTION_KEYS unset)."""
    proc = start_proxy_on(bstandins, routes)
    yield proc
    proc.stop()


def cookie_pair(response: httpx.Response, name: str = "sso_proxy_tx_") -> str | None:
    """The name=value of the first Set-Cookie whose name starts with ``name``."""
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(name):
            return value.split(";", 1)[0]
    return None


def start(proxy: ProxyProcess, connection: str) -> httpx.Response:
    """/authorize as a browser sends it: without the binding cookies (Path=/login/callback)."""
    return httpx.get(f"{proxy.url}/authorize?client_id=app&connection={connection}", timeout=10)


def metric(proxy: ProxyProcess, name: str, **labels: str) -> float:
    return proxy.scrape().get((name, tuple(sorted(labels.items()))), 0.0)


def test_an_oidc_login_auth0_started_goes_back_to_auth0_on_any_replica(
    replicas: tuple[ProxyProcess, ProxyProcess], bstandins: StandIns
) -> None:
    a, b = replicas
    before = metric(a, "sso_proxy_bindings_total", kind="oidc_state")
    started = start(a, "initech-entra")
    assert started.status_code == 302
    location = started.headers["location"]
    assert location.startswith("https://idp.initech.test/authorize?")
    params = parse_qs(urlsplit(location).query)
    assert params["redirect_uri"] == [f"{a.url}/login/callback"]
    state = params["state"][0]
    set_cookie = next(v for v in started.headers.get_list("set-cookie") if v.startswith("sso_proxy_tx_"))
    for attribute in ("Path=/login/callback", "Max-Age=600", "Secure", "HttpOnly", "SameSite=None"):
        assert attribute in set_cookie
    assert metric(a, "sso_proxy_bindings_total", kind="oidc_state") == before + 1
    cookie = cookie_pair(started)
    assert cookie is not None and state not in cookie
    # Logged at info with its kind and request id, and nothing of the login's values (issue 22).
    bound = [json.loads(line) for line in a.log_lines if '"msg":"login bound"' in line]
    assert bound and bound[-1]["kind"] == "oidc_state" and bound[-1]["request_id"]
    assert bound[-1]["level"] == "info" and bound[-1]["path"] == "/authorize"
    assert not any(state in line for line in a.log_lines)

    # Without the cookie the code+state callback names nothing: defaults.unknown (workos).
    plain = httpx.get(f"{b.url}/login/callback?code=c1&state={state}", timeout=10)
    assert plain.status_code == 307

    # With it, on the other replica: Auth0 started it, Auth0 gets it; the entry is removed.
    bstandins.clear()
    back = httpx.get(f"{b.url}/login/callback?code=c1&state={state}", headers={"cookie": cookie}, timeout=10)
    assert back.status_code == 302  # Auth0 stand-in: to the app
    (arrived,) = bstandins.received("auth0")
    assert arrived["query"] == f"code=c1&state={state}"
    assert bstandins.received("workos") == []
    cookies = back.headers.get_list("set-cookie")
    assert any(c.startswith("auth0=") for c in cookies)  # Auth0's own cookies pass untouched
    assert any(c.startswith(cookie.split("=", 1)[0] + "=;") and "Max-Age=0" in c for c in cookies)
    assert metric(b, "sso_proxy_callbacks_total", protocol="oidc", connection="_unknown", decision="auth0",
                  reason="auth0_transaction", identified_by="none") == 1  # fmt: skip


def test_a_replica_with_other_keys_follows_the_map(
    replicas: tuple[ProxyProcess, ProxyProcess], stranger: ProxyProcess
) -> None:
    a, _ = replicas
    started = start(a, "initech-entra")
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    cookie = cookie_pair(started)
    assert cookie is not None
    back = httpx.get(f"{stranger.url}/login/callback?code=c&state={state}", headers={"cookie": cookie}, timeout=10)
    assert back.status_code == 307  # not verifiable here: the map decides, as before binding


def test_several_logins_in_flight(replicas: tuple[ProxyProcess, ProxyProcess]) -> None:
    """Three tabs start a login each before any comes back. /authorize never carries the binding
    cookies (a browser sends them only to /login/callback), so each login gets a cookie of its own;
    the browser's jar keeps them all, and each callback uses and deletes its own."""
    a, b = replicas
    jar: dict[str, str] = {}
    states = []
    for _ in range(3):
        started = start(a, "initech-entra")
        states.append(parse_qs(urlsplit(started.headers["location"]).query)["state"][0])
        pair = cookie_pair(started)
        assert pair is not None
        name, value = pair.split("=", 1)
        jar[name] = value
    assert len(jar) == 3
    for state in (states[1], states[2], states[0]):
        cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
        back = httpx.get(f"{b.url}/login/callback?code=c&state={state}", headers={"cookie": cookie}, timeout=10)
        assert back.status_code == 302
        deleted = cookie_pair(back)
        assert deleted is not None and deleted.endswith("=")
        jar.pop(deleted[:-1])
        # Each is used once: the same state again, with what the browser has left, is no longer bound.
        cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
        again = httpx.get(f"{b.url}/login/callback?code=c&state={state}", headers={"cookie": cookie}, timeout=10)
        assert again.status_code == 307
    assert jar == {}


def _saml_login(proxy: ProxyProcess, connection: str) -> tuple[str, str, str]:
    """Start a SAML login; (RelayState, AuthnRequest ID, cookie)."""
    return _saml_login_from(start(proxy, connection))


def _saml_login_from(started: httpx.Response) -> tuple[str, str, str]:
    """(RelayState, AuthnRequest ID, the Cookie header the browser then sends to the callback: the
    login's cookie and the list of logins in flight)."""
    login, listed = cookie_pair(started), cookie_pair(started, "__Host-sso_proxy_logins")
    assert login is not None and listed is not None
    cookie = f"{login}; {listed}"
    if started.status_code == 302:  # HTTP-Redirect binding
        query = parse_qs(urlsplit(started.headers["location"]).query)
        xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
        relay = query["RelayState"][0]
    else:  # HTTP-POST binding: an auto-post page
        assert started.status_code == 200 and "text/html" in started.headers["content-type"]
        page = started.text
        relay = page.split('name="RelayState" value="', 1)[1].split('"', 1)[0]
        encoded = page.split('name="SAMLRequest" value="', 1)[1].split('"', 1)[0]
        xml = base64.b64decode(encoded)
    request_id = xml.decode().split(' ID="', 1)[1].split('"', 1)[0]
    return relay, request_id, cookie


@pytest.mark.parametrize("connection", ["acme-okta", "hooli-ping"], ids=["redirect-binding", "post-binding"])
def test_a_saml_login_auth0_started_goes_back_to_auth0(
    replicas: tuple[ProxyProcess, ProxyProcess], bstandins: StandIns, connection: str
) -> None:
    a, b = replicas
    kind_before = metric(a, "sso_proxy_bindings_total", kind="saml_relaystate")
    relay, request_id, cookie = _saml_login(a, connection)
    assert metric(a, "sso_proxy_bindings_total", kind="saml_relaystate") == kind_before + 1
    audience = f"urn:auth0:globex-prod:{connection}"
    # The connection is cut over (state workos): without the cookie the response goes to WorkOS.
    body = saml_form(saml_xml(audience=audience), relay_state=relay).encode()
    assert httpx.post(f"{b.url}/login/callback", content=body, headers=FORM, timeout=10).status_code == 307
    # With it, by RelayState.
    bstandins.clear()
    reply = httpx.post(f"{b.url}/login/callback", content=body, headers={**FORM, "cookie": cookie}, timeout=10)
    assert reply.status_code == 302
    assert [r["path"] for r in bstandins.received("auth0")] == ["/login/callback"]
    # An IdP that drops RelayState: the response's InResponseTo names the request.
    relay, request_id, cookie = _saml_login(a, connection)
    xml = saml_xml(audience=audience).replace(
        b"<saml2p:Response ", f'<saml2p:Response InResponseTo="{request_id}" '.encode()
    )
    assert request_id.encode() in xml
    body = saml_form(xml, relay_state=None).encode()
    reply = httpx.post(f"{b.url}/login/callback", content=body, headers={**FORM, "cookie": cookie}, timeout=10)
    assert reply.status_code == 302


DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "br": brotli.decompress,
    "zstd": lambda body: zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True).read(),
    "gzip": gzip.decompress,
    "identity": lambda body: body,
}


@pytest.mark.parametrize("encoding", DECODERS)
def test_an_auto_post_page_in_any_encoding_a_browser_accepts_is_bound(
    replicas: tuple[ProxyProcess, ProxyProcess], bstandins: StandIns, encoding: str
) -> None:
    """Auth0's edge compresses the HTTP-POST binding's page as the browser allows (browsers ask
    for br and zstd): the proxy reads it to bind the login and passes the bytes on as they came."""
    a, b = replicas
    url = f"{a.url}/authorize?client_id=app&connection=hooli-ping"
    with httpx.stream("GET", url, headers={"accept-encoding": encoding}, timeout=10) as started:
        raw = b"".join(started.iter_raw())
    assert started.status_code == 200
    assert started.headers.get("content-encoding", "identity") == encoding
    page = DECODERS[encoding](raw).decode()
    relay = page.split('name="RelayState" value="', 1)[1].split('"', 1)[0]
    cookie = cookie_pair(started)
    assert cookie is not None
    body = saml_form(saml_xml(audience="urn:auth0:globex-prod:hooli-ping"), relay_state=relay).encode()
    reply = httpx.post(f"{b.url}/login/callback", content=body, headers={**FORM, "cookie": cookie}, timeout=10)
    assert reply.status_code == 302  # to Auth0, which issued that RelayState


def _recoded(cookie: str, change: Callable[[bytearray], None]) -> str:
    name, value = cookie.split("=", 1)
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    change(raw)
    return name + "=" + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_tampered_cookie_is_no_binding(replicas: tuple[ProxyProcess, ProxyProcess]) -> None:
    """Every byte of a login cookie is covered (issue 20, item 8): a changed MAC, a stretched expiry,
    a changed format byte, an oversized or garbage cookie binds nothing (the callback follows the
    map: 307 to WorkOS)."""
    a, b = replicas
    started = start(a, "initech-entra")
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    cookie = cookie_pair(started)
    assert cookie is not None

    def flip_macs(raw: bytearray) -> None:
        raw[5] ^= 1  # both MAC slots of the record (an OIDC login repeats its one MAC)
        raw[13] ^= 1

    def stretch(raw: bytearray) -> None:
        raw[1:5] = b"\xff\xff\xff\xff"

    def reformat(raw: bytearray) -> None:
        raw[0] ^= 1

    name = cookie.split("=", 1)[0]
    tampered = [_recoded(cookie, change) for change in (flip_macs, stretch, reformat)]
    for bad in (*tampered, f"{name}=" + "A" * 5000, f"{name}=%%%", "sso_proxy_tx=" + "A" * 28):
        reply = httpx.get(f"{b.url}/login/callback?code=c&state={state}", headers={"cookie": bad}, timeout=10)
        assert reply.status_code == 307
    reply = httpx.get(f"{b.url}/login/callback?code=c&state={state}", headers={"cookie": cookie}, timeout=10)
    assert reply.status_code == 302


def test_a_smuggled_list_is_not_read(replicas: tuple[ProxyProcess, ProxyProcess]) -> None:
    """Issue 20, item 8: ``sib=1 __Host-sso_proxy_logins=<ids>`` is one cookie (``sib``) whose value
    holds a space, not two (RFC 6265 section 5.4). The proxy reads the real list after it: it
    neither deletes the login cookies the smuggled one names nor writes those ids back."""
    a, _ = replicas
    first = start(a, "initech-entra")
    real = cookie_pair(first, "__Host-sso_proxy_logins")
    login = cookie_pair(first)
    assert real is not None and login is not None
    login_id = login.split("=", 1)[0].removeprefix("sso_proxy_tx_")
    smuggled_ids = [f"Smuggled{n:03d}" for n in range(8)]
    smuggled = "__Host-sso_proxy_logins=" + ".".join(smuggled_ids)
    url = f"{a.url}/authorize?client_id=app&connection=initech-entra"
    second = httpx.get(url, headers={"cookie": f"sib=1 {smuggled}; {real}"}, timeout=10)
    assert second.status_code == 302
    written = cookie_pair(second, "__Host-sso_proxy_logins")
    assert written is not None and login_id in written
    set_cookies = " ".join(second.headers.get_list("set-cookie"))
    assert not any(smuggled_id in set_cookies for smuggled_id in smuggled_ids)


def test_planted_login_cookies_do_not_push_the_real_one_out(
    replicas: tuple[ProxyProcess, ProxyProcess], bstandins: StandIns
) -> None:
    """Issue 20, item 8: 64 cookies named like login cookies, planted by a sibling domain ahead of
    the real one, do not hide it. The IdP dropped RelayState, so the login is found by its
    AuthnRequest's ID in the cookies the (``__Host-``) list names, not by scanning names."""
    a, b = replicas
    started = start(a, "acme-okta")
    _, request_id, cookie = _saml_login_from(started)
    planted = "; ".join(f"sso_proxy_tx_{n:011d}=" + "A" * 44 for n in range(64))
    xml = saml_xml(audience="urn:auth0:globex-prod:acme-okta").replace(
        b"<saml2p:Response ", f'<saml2p:Response InResponseTo="{request_id}" '.encode()
    )
    body = saml_form(xml, relay_state=None).encode()
    bstandins.clear()
    headers = {**FORM, "cookie": f"{planted}; {cookie}"}
    reply = httpx.post(f"{b.url}/login/callback", content=body, headers=headers, timeout=10)
    assert reply.status_code == 302  # to Auth0, which started it
    assert [r["path"] for r in bstandins.received("auth0")] == ["/login/callback"]


def test_binding_off(bstandins: StandIns, routes: Path) -> None:
    proc = start_proxy_on(bstandins, routes, SSO_PROXY_TRANSACTION_BINDING="false")
    try:
        started = start(proc, "initech-entra")
        assert started.status_code == 302
        assert cookie_pair(started) is None
    finally:
        proc.stop()


def test_passthrough_that_starts_nothing_is_untouched(replicas: tuple[ProxyProcess, ProxyProcess]) -> None:
    a, _ = replicas
    plain = httpx.get(f"{a.url}/authorize?client_id=app", timeout=10)  # to Auth0's own login page
    assert plain.status_code == 302 and cookie_pair(plain) is None
    big = httpx.get(f"{a.url}/_standin/big?bytes=300000", timeout=10)
    assert len(big.content) == 300000


def test_fallbacks_of_callbacks_this_proxy_sent_are_solicited(
    replicas: tuple[ProxyProcess, ProxyProcess], bstandins: StandIns
) -> None:
    """hooli-ping is cut over in the map but unknown to WorkOS: WorkOS bounces it (issue 10 item 6)."""
    a, b = replicas
    body = saml_form(saml_xml(audience="urn:auth0:globex-prod:hooli-ping")).encode()
    labels = {"connection": "hooli-ping"}
    before = {
        s: metric(b, "sso_proxy_fallbacks_total", **labels, solicited=s, verdict="accepted") for s in ("true", "false")
    }
    sent = httpx.post(f"{a.url}/login/callback?connection=hooli-ping", content=body, headers=FORM, timeout=10)
    assert sent.status_code == 307
    cookie = cookie_pair(sent, "sso_proxy_wx")
    assert cookie is not None
    bounced = httpx.post(sent.headers["location"], content=body, headers=FORM, timeout=10)
    assert bounced.status_code == 307 and bounced.headers["location"].endswith("&fallback=auth0")
    # The load balancer sends the bounced callback to the other replica: the same keys verify it.
    returned = bounced.headers["location"].replace(a.url, b.url)
    assert returned != bounced.headers["location"]
    back = httpx.post(returned, content=body, headers={**FORM, "cookie": cookie}, timeout=10)
    assert back.status_code == 302  # forwarded to Auth0
    assert cookie_pair(back, "sso_proxy_wx") == "sso_proxy_wx="  # used once
    # The same URL without the cookie (anyone can add fallback=auth0): forwarded, counted as unsolicited.
    again = httpx.post(returned, content=body, headers=FORM, timeout=10)
    assert again.status_code == 302
    # IdP-initiated SAML naming its connection: Auth0 accepts it (a 302 to the app), so both are accepted.
    assert metric(b, "sso_proxy_fallbacks_total", **labels, solicited="true", verdict="accepted") == before["true"] + 1
    assert (
        metric(b, "sso_proxy_fallbacks_total", **labels, solicited="false", verdict="accepted") == before["false"] + 1
    )
    # The fallback's log line says which it was, and Auth0's verdict; other callbacks carry no such field.
    lines = [json.loads(line) for line in b.log_lines if '"msg":"callback"' in line]
    fallbacks = [line for line in lines if line["reason"] == "fallback" and line["connection"] == "hooli-ping"]
    assert [line["solicited"] for line in fallbacks[-2:]] == ["true", "false"]
    assert [line["verdict"] for line in fallbacks[-2:]] == ["accepted", "accepted"]
    assert all("solicited" not in line for line in lines if line["reason"] != "fallback")
