"""Issue 10 end to end: every login ends at whoever started it, in Chromium, with the proxy over TLS.

The proxy, the IdP, WorkOS and the app serve https with a certificate from a CA made at test time
(Chromium trusts exactly those keys; the Auth0 stand-in is reached only by the proxy); the binding
cookie is ``SameSite=None; Secure`` and must ride the IdP's cross-site POST back.
Logins start where real ones do: at Auth0 (``/authorize?connection=`` on the custom domain, through
the proxy), at WorkOS (its own authorize endpoint, never through the proxy), or at the IdP
(IdP-initiated SAML). The IdP is real (pysaml2, joserfc); the stand-ins refuse a callback they did
not start, as Auth0 and WorkOS do. Three proxies share the transaction keys: ``defaults.unknown``
auth0 and workos answering WorkOS-bound callbacks with a 307, and one with ``unknown: workos`` and
``SSO_PROXY_REDIRECT_MODE=form`` (an auto-submitting page instead of the 307). Matrix, one test per cell:

- protocol: OIDC code (back channel), OIDC form_post (front channel), SAML HTTP-Redirect binding,
  SAML HTTP-POST binding (how the starter sends the AuthnRequest; the IdP always posts back);
- the connection's state: legacy / workos; ``defaults.unknown``: auth0 / workos (307 proxies);
- started by: Auth0 (every cell), WorkOS (connections on workos; not OIDC code with unknown auth0,
  which the proxy cannot identify: ``routes set`` warns about exactly that), the IdP (SAML only);
- social (``google-oauth2``, state ``unmapped``): an Auth0 social connection, which no SSO export
  and so no route map lists; the IdP plays the social provider (OAuth2 code flow back to
  ``/login/callback``). Started by Auth0 only, for both ``defaults.unknown``: it must reach Auth0
  without one request to WorkOS, by its binding alone;
- form redirect mode (ids ending ``-redirect_form``): SAML HTTP-POST binding, connection on workos,
  started by Auth0 (back to Auth0, no WorkOS request), WorkOS and the IdP (to WorkOS through the
  proxy's auto-post page, every field re-posted unchanged).

Beside the matrix: the binding cookie's attributes on the way out and its removal; and a callback
WorkOS bounces (``fallback=auth0``: a connection cut over in the map that WorkOS does not have yet)
after the form-mode page sent it there, which must end at Auth0 counted as a solicited fallback.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import BrowserContext

from proxy.sandbox.auth0_standin import accepted_encoding

from .app_page import WELCOME, create_app_page
from .browser import launch, travel
from .idp import OidcIdp, SamlIdp, SamlSp, create_idp_app
from .pki import make_key_pair
from .servers import Labels, ProxyProcess, Recorded, StandIn, ThreadedServer, parse_metrics

pytestmark = pytest.mark.e2e

TENANT = "globex"
CLIENT_ID = "client_matrix"
PROTOCOLS = ("oidc-code", "oidc-post", "saml-redirect", "saml-post")
STATES = ("legacy", "workos")
UNKNOWNS = ("auth0", "workos")
# The proxies: (defaults.unknown, SSO_PROXY_REDIRECT_MODE).
PROXIES = (("auth0", "307"), ("workos", "307"), ("workos", "form"))
WORKOS_TEXT = "Signed in through WorkOS"
# An Auth0 social connection: Auth0 knows it, no SSO export (so no route map) and no WorkOS lists it.
SOCIAL = "google-oauth2"
SOCIAL_CLIENT_ID = "globex-google-oauth-client"  # the OAuth client Auth0's social connection uses
# Cut over in every route map but not set up in WorkOS yet: WorkOS sends its callbacks back (fallback=auth0).
PENDING = "saml-post-pending"


def conn_name(protocol: str, state: str) -> str:
    return f"{protocol}-{state}"


def audience(name: str) -> str:
    return f"urn:auth0:{TENANT}:{name}"


@dataclass(frozen=True, slots=True)
class Cell:
    """One login of the matrix: its connection, the proxy it goes through, and who starts it."""

    protocol: str  # oidc-code | oidc-post | saml-redirect | saml-post | social
    state: str  # legacy | workos | unmapped (social: in no route map)
    unknown: str  # the proxy's defaults.unknown
    started_by: str  # auth0 | workos | idp
    redirect: str = "307"  # the proxy's redirect mode: 307 | form

    @property
    def connection(self) -> str:
        return SOCIAL if self.protocol == "social" else conn_name(self.protocol, self.state)

    @property
    def id(self) -> str:
        suffix = "" if self.redirect == "307" else f"-redirect_{self.redirect}"
        return f"{self.protocol}-{self.state}-unknown_{self.unknown}-by_{self.started_by}{suffix}"


def cells() -> list[Cell]:
    """Every cell the matrix covers."""
    out = []
    for protocol in PROTOCOLS:
        for state in STATES:
            for unknown in UNKNOWNS:
                out.append(Cell(protocol, state, unknown, "auth0"))
                if state == "workos" and not (protocol == "oidc-code" and unknown == "auth0"):
                    out.append(Cell(protocol, state, unknown, "workos"))
                if protocol.startswith("saml"):
                    out.append(Cell(protocol, state, unknown, "idp"))
    out += [Cell("social", "unmapped", unknown, "auth0") for unknown in UNKNOWNS]
    out += [Cell("saml-post", "workos", "workos", by, "form") for by in ("auth0", "workos", "idp")]
    return out


# --- TLS: a CA and the custom domain's certificate, made now ---------------------------------------


@dataclass(frozen=True, slots=True)
class Tls:
    """The test PKI: one server certificate for every host the browser visits, and its CA."""

    chain: Path  # server certificate + CA certificate (PEM)
    key: Path
    ca: Path
    spki: str  # base64 SHA-256 of the server's and the CA's public keys, comma-separated (Chromium's list)

    def context(self) -> ssl.SSLContext:
        """A client context trusting only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_tls(directory: Path, hosts: tuple[str, ...]) -> Tls:
    """A CA and a server certificate for ``hosts`` (and 127.0.0.1, for the tests' own requests)."""
    import datetime
    import ipaddress

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sso-proxy e2e CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(h) for h in hosts), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    chain = directory / "login.crt"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "login.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    hashes_ = []
    for public in (key.public_key(), ca_key.public_key()):
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        hashes_.append(base64.b64encode(hashlib.sha256(der).digest()).decode())
    return Tls(chain, key_file, ca_file, ",".join(hashes_))


class TlsServer(ThreadedServer):
    """A ThreadedServer serving https with the test certificate (real IdPs and WorkOS are https: an
    https page posting to http would be mixed content, which Chromium rightly stops)."""

    def __init__(self, name: str, tls: Tls) -> None:
        super().__init__(name)
        self.tls = tls

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, app: Any, **options: Any) -> Self:
        return super().start(app, ssl_certfile=str(self.tls.chain), ssl_keyfile=str(self.tls.key), **options)


class TlsStandIn(TlsServer, StandIn):
    """A recording stand-in over https; its log is read over https too, trusting only the test CA."""

    def __init__(self, name: str, tls: Tls) -> None:
        StandIn.__init__(self, name)
        self.tls = tls

    def requests(self) -> list[Recorded]:
        import httpx

        reply = httpx.get(f"{self.origin}/_standin/requests", verify=self.tls.context(), timeout=10)
        assert reply.status_code == 200
        return [
            Recorded(
                item["method"],
                item["path"],
                item["query"],
                [(k, v) for k, v in item["headers"]],
                base64.b64decode(item["body_b64"]),
            )
            for item in reply.json()
            if not item["path"].startswith("/_standin/") and item["path"] != "/favicon.ico"
        ]

    def clear(self) -> None:
        import httpx

        assert httpx.delete(f"{self.origin}/_standin/requests", verify=self.tls.context(), timeout=10).status_code in (
            200,
            204,
        )


# --- the world -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    """One proxy (one ``defaults.unknown`` and redirect mode) with its WorkOS stand-in."""

    unknown: str
    redirect: str  # SSO_PROXY_REDIRECT_MODE: 307 | form
    proxy: ProxyProcess
    workos: TlsStandIn

    @property
    def login(self) -> str:
        return f"https://login.customer.test:{self.proxy.port}"

    @property
    def workos_origin(self) -> str:
        return f"https://auth.workos.test:{self.workos.port}"

    def callbacks(self) -> dict[Labels, float]:
        return self.counter("sso_proxy_callbacks_total")

    def counter(self, name: str) -> dict[Labels, float]:
        from .servers import http

        return parse_metrics(http("GET", f"{self.proxy.admin}/metrics")[1].decode(), name)


@dataclass(frozen=True, slots=True)
class Matrix:
    sides: dict[tuple[str, str], Side]  # by (defaults.unknown, redirect mode)
    auth0: StandIn
    app: TlsStandIn
    idp: TlsServer
    oidc: OidcIdp
    saml: SamlIdp
    spki: str

    @property
    def app_origin(self) -> str:
        return f"https://app.globex.test:{self.app.port}"

    @property
    def idp_origin(self) -> str:
        return f"https://idp.customer.test:{self.idp.port}"


def routes_for(unknown: str) -> dict[str, object]:
    connections: dict[str, object] = {}
    for protocol in PROTOCOLS:
        for state in STATES:
            name = conn_name(protocol, state)
            if protocol.startswith("oidc"):
                connections[name] = {"protocol": "oidc", "state": state, "client_ids": [f"client-{name}"]}
            else:
                connections[name] = {"protocol": "saml", "state": state, "audiences": [audience(name)]}
    connections[PENDING] = {"protocol": "saml", "state": "workos", "audiences": [audience(PENDING)]}
    return {"version": 1, "defaults": {"unknown": unknown, "mode": "normal"}, "connections": connections}


@contextmanager
def running_matrix(
    tmp: Path, state_form: str = "auth0", run: tuple[tuple[str, str], ...] = PROXIES
) -> Iterator[Matrix]:
    """The matrix's world; ``state_form``: the state the Auth0 stand-in issues (its own form, or
    ``opaque``: another), ``run``: which of :data:`PROXIES` to start (tests/e2e/test_binding_witness.py)."""
    from proxy.routing.routemap import parse_routemap
    from proxy.sandbox.auth0_standin import create_auth0_standin
    from proxy.sandbox.standin import UpstreamIdp
    from proxy.sandbox.workos_standin import create_workos_standin

    cname_key = secrets.token_urlsafe(24)
    keys = ",".join(secrets.token_urlsafe(32) for _ in range(2))
    tls = make_tls(tmp / "tls", ("login.customer.test", "idp.customer.test", "auth.workos.test", "app.globex.test"))
    started: list[ThreadedServer] = []
    proxies: list[ProxyProcess] = []
    try:
        app = TlsStandIn("app.globex.test", tls)
        started.append(app.start(create_app_page()))
        idp_server = TlsServer("idp.customer.test", tls)
        idp_origin = f"https://idp.customer.test:{idp_server.port}"
        upstream: dict[str, UpstreamIdp] = {}
        for protocol in PROTOCOLS:
            for state in STATES:
                name = conn_name(protocol, state)
                if protocol == "oidc-code":
                    upstream[name] = UpstreamIdp("oidc", f"{idp_origin}/oidc/authorize", client_id=f"client-{name}")
                elif protocol == "oidc-post":
                    upstream[name] = UpstreamIdp(
                        "oidc", f"{idp_origin}/oidc/authorize", client_id=f"client-{name}", response_type="id_token"
                    )
                else:
                    binding = "post" if protocol == "saml-post" else "redirect"
                    url = f"{idp_origin}/tls/sso/{binding}"
                    upstream[name] = UpstreamIdp("saml", url, binding=binding, entity_id=audience(name))

        # Auth0 also has a social connection, started as an OAuth2 code flow (the IdP plays Google);
        # WorkOS has no social connection, and no route map lists it.
        social = UpstreamIdp("oidc", f"{idp_origin}/oidc/authorize", client_id=SOCIAL_CLIENT_ID)
        auth0 = StandIn("auth0 stand-in", headers={"cname-api-key": cname_key})
        app_url = f"https://app.globex.test:{app.port}/callback"
        auth0_idps = {**upstream, SOCIAL: social}
        started.append(
            auth0.start(
                create_auth0_standin(cname_api_key=cname_key, app_url=app_url, idps=auth0_idps, state_form=state_form)
            )
        )

        pending: list[tuple[str, str, ProxyProcess, TlsStandIn]] = []
        for unknown, redirect in run:
            routes = tmp / f"routes-{unknown}-{redirect}.yaml"
            text = yaml.safe_dump(routes_for(unknown), sort_keys=False)
            routes.write_text(text)
            workos = TlsStandIn(f"workos stand-in (unknown {unknown}, redirect {redirect})", tls)
            env = {
                "WORKOS_CUSTOM_DOMAIN": f"auth.workos.test:{workos.port}",
                "WORKOS_CLIENT_ID": CLIENT_ID,
                "AUTH0_FALLBACK_ORIGIN": auth0.origin,
                "AUTH0_CNAME_API_KEY": cname_key,
                "SSO_PROXY_TRANSACTION_KEYS": keys,
                "SSO_PROXY_TLS_CERT": str(tls.chain),
                "SSO_PROXY_TLS_KEY": str(tls.key),
                "SSO_PROXY_REDIRECT_MODE": redirect,
                "SSO_PROXY_DRAIN_SECONDS": "0",
                "SSO_PROXY_SHUTDOWN_TIMEOUT": "5",
                "PYTHONUNBUFFERED": "1",
            }
            proxy = ProxyProcess(routes, env, tmp / f"proxy-{unknown}-{redirect}.log")
            origin = f"https://login.customer.test:{proxy.port}"
            migrated = [n for n in upstream if n.endswith("-workos")]
            knows = parse_routemap(text)
            started.append(workos.start(create_workos_standin(CLIENT_ID, origin, migrated, knows, upstream)))
            pending.append((unknown, redirect, proxy, workos))

        ports = [proxy.port for _, _, proxy, _ in pending]
        sps = [
            SamlSp(
                name,
                audience(name),
                tuple(f"https://login.customer.test:{p}/login/callback?connection={name}" for p in ports)
                + tuple(f"https://login.customer.test:{p}/login/callback" for p in ports),
            )
            for name in [*upstream, PENDING]
            if name.startswith("saml")
        ]
        saml = SamlIdp(f"{idp_origin}/tls/metadata", f"{idp_origin}/tls/sso/redirect",
                       make_key_pair(tmp / "pki", "tls", "idp.customer.test/tls"), sps)  # fmt: skip
        oidc = OidcIdp(issuer=f"{idp_origin}/oidc")
        idp_server.start(create_idp_app({"tls": saml}, oidc))
        started.append(idp_server)

        for _, _, proxy, _ in pending:
            proxies.append(proxy.start())
        for proxy in proxies:
            proxy.wait_ready()
        sides = {(u, r): Side(u, r, proxy, workos) for u, r, proxy, workos in pending}
        yield Matrix(sides, auth0, app, idp_server, oidc, saml, tls.spki)
    finally:
        for proxy in proxies:
            proxy.stop()
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="module")
def matrix(e2e_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    with running_matrix(tmp_path_factory.mktemp("matrix")) as built:
        yield built


@pytest.fixture(scope="module")
def tls_browser(matrix: Matrix, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Chromium trusting exactly the test certificate's keys (no blanket certificate-error switch)."""
    with launch(tmp_path_factory.mktemp("chromium-tls"), matrix.spki, 15_000) as context:
        yield context


def start_url(matrix: Matrix, side: Side, name: str, started_by: str) -> str:
    if started_by == "auth0":
        query = {
            "client_id": "globex-web",
            "response_type": "code",
            "connection": name,
            "redirect_uri": f"{matrix.app_origin}/callback",
            "state": "app-" + secrets.token_urlsafe(6),
        }
        return f"{side.login}/authorize?{urlencode(query)}"
    if started_by == "workos":
        return f"{side.workos_origin}/sso/authorize?connection={name}"
    acs = f"{side.login}/login/callback?connection={name}"
    return f"{matrix.idp_origin}/tls/sso/init?{urlencode({'connection': name, 'acs': acs})}"


@pytest.mark.parametrize("cell", cells(), ids=[cell.id for cell in cells()])
def test_a_login_ends_where_it_started(matrix: Matrix, tls_browser: BrowserContext, cell: Cell) -> None:
    side = matrix.sides[cell.unknown, cell.redirect]
    protocol, state, started_by, name = cell.protocol, cell.state, cell.started_by, cell.connection
    tls_browser.clear_cookies()
    for server in (matrix.auth0, matrix.app, side.workos):
        server.clear()
    before = side.callbacks()
    to_auth0 = started_by == "auth0" or (started_by == "idp" and state == "legacy")
    until = f"{matrix.app_origin}/callback" if to_auth0 else f"{side.workos_origin}/sso/{CLIENT_ID}/auth0/callback"

    trip = travel(tls_browser, start_url(matrix, side, name, started_by), until)

    callback_hops = [hop for hop in trip.hops if hop.bare_url == f"{side.login}/login/callback"]
    assert callback_hops, trip.path()
    if to_auth0:
        assert WELCOME in trip.text, trip.path()
        (arrived,) = [r for r in matrix.auth0.requests() if r.path == "/login/callback"]
        assert arrived.method == ("GET" if protocol in ("oidc-code", "social") else "POST")
        if arrived.method == "GET":
            # The code Auth0 got is one the IdP issued to this connection's client, unchanged.
            (code,) = parse_qs(arrived.query)["code"]
            assert matrix.oidc.codes.get(code) == (SOCIAL_CLIENT_ID if protocol == "social" else f"client-{name}")
    else:
        assert WORKOS_TEXT in trip.text, trip.path()
        assert [r.path for r in matrix.auth0.requests()] == []  # Auth0 never saw it
        # The proxy sent it on by a 307 (method and body kept) or, in form mode, a POST by its
        # auto-submitting page re-posting every field: WorkOS got what the IdP sent, either way.
        (callback,) = callback_hops
        form_page = side.redirect == "form" and callback.method == "POST"
        assert callback.status == (200 if form_page else 307), trip.path()
        (received,) = [r for r in side.workos.requests() if r.path == f"/sso/{CLIENT_ID}/auth0/callback"]
        assert (received.method, received.query) == (callback.method, urlsplit(callback.url).query)
        if callback.method == "POST":
            assert callback.sent_body
            assert parse_qs(received.body.decode()) == parse_qs(callback.sent_body.decode())
    moved = {k: v for k, v in side.callbacks().items() if v != before.get(k, 0.0)}
    reasons = {dict(k)["reason"] for k in moved}
    if started_by == "auth0":
        # Auth0 started it: it went straight back to Auth0, with ZERO requests to WorkOS, because
        # the binding cookie came back with the IdP's (cross-site) callback.
        assert side.workos.requests() == []
        assert reasons == {"auth0_transaction"}, moved
        assert "sso_proxy_tx_" in (arrived.header("cookie") or "")
        assert [hop.status for hop in callback_hops] == [302]
        if protocol == "saml-post":
            # Chromium asks for br and zstd over https, so the auto-post page the proxy read to
            # bind this login came Brotli-compressed, as Auth0's edge sends it.
            (authorize,) = [r for r in matrix.auth0.requests() if r.path == "/authorize"]
            assert accepted_encoding(authorize.header("accept-encoding") or "") == "br"
    elif started_by == "workos":
        assert reasons == ({"unknown_default"} if protocol == "oidc-code" else {"mapped"}), moved
        (signed_in,) = side.workos.requests()[-1:]
        assert signed_in.path == f"/sso/{CLIENT_ID}/auth0/callback"
    else:
        assert reasons == {"mapped"}, moved
    # Every binding is used once: nothing is left for a replayed callback.
    left = [c["name"] for c in tls_browser.cookies(f"{side.login}/login/callback") if c["value"]]
    assert [n for n in left if n.startswith("sso_proxy_tx")] == []


def test_the_binding_cookie_is_set_on_the_way_out_and_removed_when_used(
    matrix: Matrix, tls_browser: BrowserContext
) -> None:
    """The Set-Cookie headers the browser got: the binding on Auth0's redirect to the IdP (Secure,
    HttpOnly, SameSite=None, only on the callback path), its removal on the callback's answer; Auth0's
    own cookies beside them, untouched."""
    side = matrix.sides["workos", "307"]
    tls_browser.clear_cookies()
    name = conn_name("oidc-code", "workos")
    trip = travel(tls_browser, start_url(matrix, side, name, "auth0"), f"{matrix.app_origin}/callback")
    authorize, _idp, callback, _app = trip.hops
    assert authorize.bare_url == f"{side.login}/authorize" and authorize.status == 302
    (bound,) = [c for c in authorize.set_cookies if c.startswith("sso_proxy_tx_")]
    pair, *attributes = [part.strip() for part in bound.split(";")]
    assert sorted(attributes) == sorted(["Path=/login/callback", "Max-Age=600", "Secure", "HttpOnly", "SameSite=None"])
    name = pair.split("=", 1)[0]
    assert quote(pair, safe="-_=") == pair  # a name and a base64url value: nothing to escape
    assert callback.bare_url == f"{side.login}/login/callback"
    names = [c.split("=", 1)[0] for c in callback.set_cookies]
    assert sorted(names) == sorted(["auth0", "auth0_compat", name])
    (removed,) = [c for c in callback.set_cookies if c.startswith(name + "=")]
    assert removed.startswith(name + "=;") and "Max-Age=0" in removed
    assert all(not c["name"].startswith("sso_proxy_tx") for c in tls_browser.cookies())


def test_a_callback_workos_bounces_after_the_form_page_ends_at_auth0(
    matrix: Matrix, tls_browser: BrowserContext
) -> None:
    """IdP-initiated for a connection the map has on workos but WorkOS does not have yet: the form
    page posts it to WorkOS, which sends it back (307, ``fallback=auth0``); the proxy forwards it to
    Auth0 without ``fallback``, and counts it as a fallback it solicited (its own page sent it) and
    Auth0 accepted."""
    side = matrix.sides["workos", "form"]
    tls_browser.clear_cookies()
    for server in (matrix.auth0, matrix.app, side.workos):
        server.clear()
    before = side.callbacks()
    fallbacks_before = side.counter("sso_proxy_fallbacks_total")
    workos_callback = f"/sso/{CLIENT_ID}/auth0/callback"

    trip = travel(tls_browser, start_url(matrix, side, PENDING, "idp"), f"{matrix.app_origin}/callback")

    assert WELCOME in trip.text, trip.path()
    assert [(hop.method, hop.bare_url, hop.status) for hop in trip.hops[1:]] == [
        ("POST", f"{side.login}/login/callback", 200),  # the auto-post page
        ("POST", f"{side.workos_origin}{workos_callback}", 307),  # WorkOS: not mine, fallback=auth0
        ("POST", f"{side.login}/login/callback", 302),  # forwarded to Auth0, which signs in
        ("GET", f"{matrix.app_origin}/callback", 200),
    ], trip.path()
    (bounced,) = side.workos.requests()
    assert (bounced.method, bounced.path, bounced.query) == ("POST", workos_callback, f"connection={PENDING}")
    (arrived,) = matrix.auth0.requests()
    assert (arrived.method, arrived.path, arrived.query) == ("POST", "/login/callback", f"connection={PENDING}")
    issued = {"SAMLResponse": [matrix.saml.issued[-1]]}
    assert parse_qs(bounced.body.decode()) == parse_qs(arrived.body.decode()) == issued
    moved = {k: v - before.get(k, 0.0) for k, v in side.callbacks().items() if v != before.get(k, 0.0)}
    assert sorted((dict(k)["connection"], dict(k)["reason"], v) for k, v in moved.items()) == [
        (PENDING, "fallback", 1.0),
        (PENDING, "mapped", 1.0),
    ], moved
    fallbacks = side.counter("sso_proxy_fallbacks_total")
    solicited = {k: v - fallbacks_before.get(k, 0.0) for k, v in fallbacks.items() if v != fallbacks_before.get(k, 0.0)}
    # Auth0 signed the user in (a redirect to the app without error): an accepted fallback.
    assert solicited == {frozenset({"connection": PENDING, "solicited": "true", "verdict": "accepted"}.items()): 1.0}
    # The page's mark of a callback sent to WorkOS is used once, and nothing was bound.
    left = [c["name"] for c in tls_browser.cookies(f"{side.login}/login/callback") if c["value"]]
    assert [n for n in left if n.startswith(("sso_proxy_wx", "sso_proxy_tx"))] == []


@pytest.mark.parametrize("protocol", ["oidc-code", "saml-post"])
def test_logins_in_several_tabs_each_end_at_auth0(matrix: Matrix, tls_browser: BrowserContext, protocol: str) -> None:
    """Three logins Auth0 started in three tabs, each waiting at the IdP's sign-in page before any
    comes back. A browser sends the binding cookies only to /login/callback, never to /authorize,
    so each login's binding must survive the next one's. Signed in oldest first, then newest, then
    the middle one: every one ends at Auth0, bound, with zero requests to WorkOS, on a proxy whose
    route map would send it to WorkOS."""
    side = matrix.sides["workos", "307"]
    name = conn_name(protocol, "workos")
    tls_browser.clear_cookies()
    for server in (matrix.auth0, matrix.app, side.workos):
        server.clear()
    before = side.callbacks()
    matrix.oidc.prompt = True
    tabs = []
    try:
        for _ in range(3):
            tab = tls_browser.new_page()
            tab.goto(start_url(matrix, side, name, "auth0"))
            tab.wait_for_selector("#sign-in")
            tabs.append(tab)
        for tab in (tabs[0], tabs[2], tabs[1]):
            with tab.expect_event("load", predicate=lambda p: p.url.startswith(f"{matrix.app_origin}/callback")):
                tab.click("#sign-in")
            assert WELCOME in tab.inner_text("body")
    finally:
        matrix.oidc.prompt = False
        for tab in tabs:
            tab.close()
    assert side.workos.requests() == []
    moved = {k: v - before.get(k, 0.0) for k, v in side.callbacks().items() if v != before.get(k, 0.0)}
    assert {dict(k)["reason"]: v for k, v in moved.items()} == {"auth0_transaction": 3.0}, moved
    assert len([r for r in matrix.auth0.requests() if r.path == "/login/callback"]) == 3
    # Each binding was used once: none is left.
    left = [c["name"] for c in tls_browser.cookies(f"{side.login}/login/callback") if c["value"]]
    assert [n for n in left if n.startswith("sso_proxy_tx")] == []
