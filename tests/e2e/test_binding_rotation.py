"""Issue 23 in Chromium: a key rotation between a login's /authorize and its callback, two replicas.

Replicas ``a`` and ``b`` of one proxy (TLS, ``defaults.unknown: workos``, 307), sharing
``SSO_PROXY_TRANSACTION_KEYS`` as pods of one Deployment do. Each login starts on ``b``
(``https://login.customer.test:<b>/authorize``) and the Auth0 stand-in's public origin is ``a``'s, so
the IdP sends the browser back to ``a``: a login bound by one pod and answered through the other, as
behind one Service (cookies are per host, not per port). The user waits at the IdP's sign-in page
(an OIDC code login and a SAML HTTP-POST login, each in its tab, of connections cut over to WorkOS)
while the replicas are restarted with the next Secret, then signs in. Twice, as
tests/e2e/test_binding_witness.py: the Auth0 stand-in issuing Auth0's own state form, and another.

- Three rolls (deploy/README.md): rolls 1 and 2 happen while logins wait, one login started on a pod
  already signing with the new key and answered through a pod still on roll 1. Every login comes back
  bound (``auth0_transaction``) with zero WorkOS requests, whatever the state's form.
- One step (the new key first at once): ``b`` restarted first signs with a key ``a`` does not know yet.
  With Auth0's form the logins go to Auth0 by their state (``auth0_state``), zero WorkOS requests;
  with another form each goes through WorkOS and back (``fallback``, solicited) and still signs in.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from playwright.sync_api import BrowserContext, Page

from .app_page import WELCOME, create_app_page
from .browser import launch
from .idp import OidcIdp, SamlIdp, SamlSp, create_idp_app
from .pki import make_key_pair
from .servers import Labels, ProxyProcess, StandIn, ThreadedServer, free_port, http, parse_metrics
from .test_binding_matrix import CLIENT_ID, TlsServer, TlsStandIn, audience, conn_name, make_tls, routes_for

pytestmark = pytest.mark.e2e

OIDC, SAML = conn_name("oidc-code", "workos"), conn_name("saml-post", "workos")


def key() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Pair:
    """Two replicas of one proxy, the stand-ins and IdP behind them; restarted in place."""

    form: str
    replicas: dict[str, ProxyProcess]  # "a" (callbacks come back here), "b" (logins start here)
    keys: dict[str, str]  # the Secret each replica runs with now
    env: dict[str, str]
    routes: Path
    tmp: Path
    auth0: StandIn
    workos: TlsStandIn
    app: TlsStandIn
    oidc: OidcIdp
    spki: str

    def restart(self, name: str, keys: str) -> None:
        """A pod of the Deployment restarted with the next Secret, at the same address."""
        old = self.replicas[name]
        old.stop()
        env = {**self.env, "SSO_PROXY_TRANSACTION_KEYS": keys}
        new = ProxyProcess(self.routes, env, self.tmp / f"proxy-{name}-{len(self.keys)}-{secrets.token_hex(2)}.log")
        new.port, new.admin_port = old.port, old.admin_port
        self.replicas[name] = new.start().wait_ready()
        self.keys[name] = keys

    def counter(self, replica: str, name: str) -> dict[Labels, float]:
        return parse_metrics(http("GET", f"{self.replicas[replica].admin}/metrics")[1].decode(), name)

    def start_url(self, connection: str) -> str:
        query = {"client_id": "globex-web", "response_type": "code", "connection": connection,
                 "redirect_uri": f"https://app.globex.test:{self.app.port}/callback",
                 "state": "app-" + secrets.token_urlsafe(6)}  # fmt: skip
        return f"https://login.customer.test:{self.replicas['b'].port}/authorize?{urlencode(query)}"


@pytest.fixture(scope="module", params=["auth0", "opaque"])
def pair(request: pytest.FixtureRequest, e2e_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    from proxy.routing.routemap import parse_routemap
    from proxy.sandbox.auth0_standin import create_auth0_standin
    from proxy.sandbox.standin import UpstreamIdp
    from proxy.sandbox.workos_standin import create_workos_standin

    form = str(request.param)
    tmp = tmp_path_factory.mktemp(f"rotation-{form}")
    tls = make_tls(tmp / "tls", ("login.customer.test", "idp.customer.test", "auth.workos.test", "app.globex.test"))
    cname_key = secrets.token_urlsafe(24)
    routes = tmp / "routes.yaml"
    text = yaml.safe_dump(routes_for("workos"), sort_keys=False)
    routes.write_text(text)
    started: list[ThreadedServer] = []
    replicas: dict[str, ProxyProcess] = {}
    try:
        app = TlsStandIn("app.globex.test", tls)
        started.append(app.start(create_app_page()))
        idp_server = TlsServer("idp.customer.test", tls)
        idp_origin = f"https://idp.customer.test:{idp_server.port}"
        upstream = {
            OIDC: UpstreamIdp("oidc", f"{idp_origin}/oidc/authorize", client_id=f"client-{OIDC}"),
            SAML: UpstreamIdp("saml", f"{idp_origin}/tls/sso/post", binding="post", entity_id=audience(SAML)),
        }
        auth0 = StandIn("auth0 stand-in", headers={"cname-api-key": cname_key})
        workos = TlsStandIn("workos stand-in", tls)
        keys = key()
        env = {
            "WORKOS_CUSTOM_DOMAIN": f"auth.workos.test:{workos.port}",
            "WORKOS_CLIENT_ID": CLIENT_ID,
            "AUTH0_FALLBACK_ORIGIN": auth0.origin,
            "AUTH0_CNAME_API_KEY": cname_key,
            "SSO_PROXY_TLS_CERT": str(tls.chain),
            "SSO_PROXY_TLS_KEY": str(tls.key),
            "SSO_PROXY_DRAIN_SECONDS": "0",
            "SSO_PROXY_SHUTDOWN_TIMEOUT": "5",
            "PYTHONUNBUFFERED": "1",
        }
        # One Service name for both pods: each takes the other's address as its own (a login b binds
        # names a's /login/callback, as behind one Service both are the same host).
        ports = {name: (free_port(), free_port()) for name in ("a", "b")}
        env["SSO_PROXY_PUBLIC_HOST"] = ",".join(f"login.customer.test:{port}" for port, _ in ports.values())
        for name, (port, admin) in ports.items():
            log = tmp / f"proxy-{name}.log"
            replicas[name] = ProxyProcess(routes, {**env, "SSO_PROXY_TRANSACTION_KEYS": keys}, log)
            replicas[name].port, replicas[name].admin_port = port, admin
        back = f"https://login.customer.test:{replicas['a'].port}"  # where the IdP and WorkOS send the browser
        app_url = f"https://app.globex.test:{app.port}/callback"
        standin = create_auth0_standin(cname_key, app_url, upstream, public_origin=back, state_form=form)
        started.append(auth0.start(standin))
        started.append(
            workos.start(create_workos_standin(CLIENT_ID, back, [OIDC, SAML], parse_routemap(text), upstream))
        )
        sp = SamlSp(SAML, audience(SAML), (f"{back}/login/callback",))
        saml = SamlIdp(f"{idp_origin}/tls/metadata", f"{idp_origin}/tls/sso/redirect",
                       make_key_pair(tmp / "pki", "tls", "idp.customer.test/tls"), [sp])  # fmt: skip
        oidc = OidcIdp(issuer=f"{idp_origin}/oidc", prompt=True)
        started.append(idp_server.start(create_idp_app({"tls": saml}, oidc)))
        for proxy in replicas.values():
            proxy.start()
        for proxy in replicas.values():
            proxy.wait_ready()
        yield Pair(form, replicas, {"a": keys, "b": keys}, env, routes, tmp, auth0, workos, app, oidc, tls.spki)
    finally:
        for proxy in replicas.values():
            proxy.stop()
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="module")
def chromium(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Its own Playwright, before the session browser starts (see test_binding_witness.py)."""
    with launch(tmp_path_factory.mktemp(f"chromium-rotation-{pair.form}"), pair.spki, 20_000) as context:
        yield context


def at_the_idp(context: BrowserContext, pair: Pair, connection: str) -> Page:
    """A tab with an Auth0 login of ``connection`` started on b, waiting at the IdP's sign-in page."""
    tab = context.new_page()
    tab.goto(pair.start_url(connection))
    tab.wait_for_selector("#sign-in")
    return tab


def sign_in(pair: Pair, tab: Page) -> None:
    with tab.expect_event("load", predicate=lambda p: p.url.startswith(f"https://app.globex.test:{pair.app.port}/")):
        tab.click("#sign-in")
    assert WELCOME in tab.inner_text("body")
    tab.close()


def grown(before: dict[Labels, float], after: dict[Labels, float]) -> dict[str, float]:
    """Callbacks by reason (or fallbacks by solicited) that moved between two scrapes."""
    out: dict[str, float] = {}
    for labels, value in after.items():
        moved = value - before.get(labels, 0.0)
        if moved:
            label = dict(labels).get("reason") or "solicited=" + dict(labels).get("solicited", "")
            out[label] = out.get(label, 0.0) + moved
    return out


def workos_callbacks(pair: Pair) -> int:
    return len([r for r in pair.workos.requests() if r.path == f"/sso/{CLIENT_ID}/auth0/callback"])


def clear(pair: Pair, context: BrowserContext) -> None:
    context.clear_cookies()
    for server in (pair.auth0, pair.app, pair.workos):
        server.clear()


def test_three_rolls_while_logins_wait_at_the_idp(pair: Pair, chromium: BrowserContext) -> None:
    clear(pair, chromium)
    old, new = pair.keys["a"].split(",")[0], key()
    waiting = [at_the_idp(chromium, pair, OIDC), at_the_idp(chromium, pair, SAML)]  # bound by b with OLD
    pair.restart("b", f"{old},{new}")  # roll 1
    pair.restart("a", f"{old},{new}")
    pair.restart("b", f"{new},{old}")  # roll 2, first pod: b signs with NEW, a (roll 1) verifies it
    waiting.append(at_the_idp(chromium, pair, OIDC))  # bound by b with NEW
    before = pair.counter("a", "sso_proxy_callbacks_total")
    for tab in waiting:  # every callback through a, still on roll 1
        sign_in(pair, tab)
    assert workos_callbacks(pair) == 0  # zero WorkOS round trips
    assert grown(before, pair.counter("a", "sso_proxy_callbacks_total")) == {"auth0_transaction": 3.0}
    arrived = [r for r in pair.auth0.requests() if r.path == "/login/callback"]
    assert len(arrived) == 3 and all("sso_proxy_tx_" in (r.header("cookie") or "") for r in arrived)
    pair.restart("a", f"{new},{old}")  # roll 2 done; roll 3 (NEW alone) after one TTL


def test_the_one_step_rotation_mid_roll(pair: Pair, chromium: BrowserContext) -> None:
    clear(pair, chromium)
    current, newer = pair.keys["a"], key()
    pair.restart("b", f"{newer},{current.split(',')[0]}")  # the new key first at once; a not restarted yet
    waiting = [at_the_idp(chromium, pair, OIDC), at_the_idp(chromium, pair, SAML)]  # bound by b with NEWER
    callbacks = pair.counter("a", "sso_proxy_callbacks_total")
    fallbacks = pair.counter("a", "sso_proxy_fallbacks_total")
    for tab in waiting:  # a cannot verify NEWER: both come back unbound
        sign_in(pair, tab)
    reasons = grown(callbacks, pair.counter("a", "sso_proxy_callbacks_total"))
    assert len([r for r in pair.auth0.requests() if r.path == "/login/callback"]) == 2  # both signed in at Auth0
    if pair.form == "auth0":
        assert workos_callbacks(pair) == 0  # zero WorkOS round trips: the state's form routed them
        assert reasons == {"auth0_state": 2.0}, reasons
    else:
        assert workos_callbacks(pair) == 2  # each through WorkOS and back
        # OIDC code names no connection (defaults.unknown: workos); SAML by its Audience (mapped).
        assert reasons == {"unknown_default": 1.0, "mapped": 1.0, "fallback": 2.0}, reasons
        assert grown(fallbacks, pair.counter("a", "sso_proxy_fallbacks_total")) == {"solicited=true": 2.0}
    pair.restart("a", pair.keys["b"])  # the roll finishes
