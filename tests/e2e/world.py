"""The world the end-to-end scenarios run in: the customer's connections, hosts and servers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .app_page import create_app_page
from .idp import OidcIdp, SamlIdp, SamlSp, create_idp_app
from .pki import make_key_pair
from .servers import Labels, ProxyProcess, StandIn, ThreadedServer

if TYPE_CHECKING:
    from proxy.sandbox.standin import UpstreamIdp

TENANT = "globex"
WORKOS_CLIENT_ID = "client_e2e"
MODES = ("307", "form")

# The customer's connections, as the route map knows them.
ACME = "acme-okta"  # SAML, cut over, and WorkOS has it
INITECH = "initech-adfs"  # SAML, still on Auth0
UMBRELLA = "umbrella-ping"  # SAML, cut over in the map, but WorkOS does not know it yet
HOOLI = "hooli-entra"  # OIDC, cut over, WorkOS has it
HOOLI_CLIENT_ID = "0oa-hooli-web"
MIGRATED = frozenset({ACME, HOOLI})  # what the WorkOS stand-in signs in
# umbrella-ping's Auth0 connection has a custom SP entity ID, so only the IdP's Issuer names it.
UMBRELLA_ENTITY_ID = "https://globex.example/saml/umbrella"
# umbrella's IdP-initiated ACS URL carries more parameters, to check the proxy keeps them in order.
UMBRELLA_EXTRA = "&organization=org_umbrella&x=2&a=1"


def auth0_audience(connection: str) -> str:
    return f"urn:auth0:{TENANT}:{connection}"


@dataclass(frozen=True, slots=True)
class Stack:
    """One proxy and the stand-ins behind it."""

    mode: str
    proxy: ProxyProcess
    workos: StandIn
    auth0: StandIn
    app: StandIn

    @property
    def login(self) -> str:
        """The Auth0 custom domain as the browser sees it (this proxy)."""
        return f"http://login.customer.test:{self.proxy.port}"

    @property
    def workos_origin(self) -> str:
        return f"http://auth.workos.test:{self.workos.port}"

    @property
    def workos_callback(self) -> str:
        return f"{self.workos_origin}/sso/{WORKOS_CLIENT_ID}/auth0/callback"

    @property
    def app_origin(self) -> str:
        return f"http://app.globex.test:{self.app.port}"

    def clear(self) -> None:
        for server in (self.workos, self.auth0, self.app):
            server.clear()


@dataclass(frozen=True, slots=True)
class Idps:
    """The customer's identity providers and the page that serves them."""

    server: ThreadedServer
    saml: dict[str, SamlIdp]  # IdP tenant name -> IdP; one tenant per connection
    oidc: OidcIdp

    @property
    def origin(self) -> str:
        return f"http://idp.customer.test:{self.server.port}"

    def for_connection(self, connection: str) -> SamlIdp:
        return next(idp for idp in self.saml.values() if connection in idp.sps)

    def tenant_of(self, connection: str) -> str:
        return next(name for name, idp in self.saml.items() if connection in idp.sps)


@dataclass(frozen=True, slots=True)
class World:
    stacks: dict[str, Stack]
    idps: Idps


def route_map(umbrella_issuer: str) -> dict[str, object]:
    return {
        "version": 1,
        "defaults": {"unknown": "workos", "mode": "normal"},
        "connections": {
            ACME: {"protocol": "saml", "state": "workos", "audiences": [auth0_audience(ACME)]},
            INITECH: {"protocol": "saml", "state": "legacy", "audiences": [auth0_audience(INITECH)]},
            UMBRELLA: {"protocol": "saml", "state": "workos", "issuers": [umbrella_issuer]},
            HOOLI: {"protocol": "oidc", "state": "workos", "client_ids": [HOOLI_CLIENT_ID]},
        },
    }


def start_idps(tmp: Path, proxy_ports: list[int]) -> Idps:
    server = ThreadedServer("idp.customer.test")
    origin = f"http://idp.customer.test:{server.port}"

    def acs_urls(connection: str, extra: str = "") -> tuple[str, ...]:
        idp_initiated = [
            f"http://login.customer.test:{port}/login/callback?connection={connection}{extra}" for port in proxy_ports
        ]
        sp_initiated = [f"http://login.customer.test:{port}/login/callback" for port in proxy_ports]
        return (*idp_initiated, *sp_initiated)

    sps = {
        "acme": SamlSp(ACME, auth0_audience(ACME), acs_urls(ACME)),
        "initech": SamlSp(INITECH, auth0_audience(INITECH), acs_urls(INITECH)),
        # IdP-initiated for umbrella posts to an ACS URL with more parameters, to check their order.
        "umbrella": SamlSp(UMBRELLA, UMBRELLA_ENTITY_ID, acs_urls(UMBRELLA, UMBRELLA_EXTRA)),
    }
    saml = {
        name: SamlIdp(
            f"{origin}/{name}/metadata",
            f"{origin}/{name}/sso/redirect",
            make_key_pair(tmp / "pki", name, f"idp.customer.test/{name}"),
            [sp],
        )
        for name, sp in sps.items()
    }
    oidc = OidcIdp(issuer=f"{origin}/oidc")
    server.start(create_idp_app(saml, oidc))
    return Idps(server, saml, oidc)


UNMAPPED_OIDC = "globex-unmapped"  # an OIDC connection the route map does not know (code flow: unidentifiable)


def upstream_idps(idps: Idps) -> dict[str, UpstreamIdp]:
    """Each connection's IdP, as the Auth0 and WorkOS stand-ins start a login there."""
    from proxy.sandbox.standin import UpstreamIdp

    out = {
        connection: UpstreamIdp("saml", idp.sso_url, entity_id=idp.sps[connection].entity_id)
        for idp in idps.saml.values()
        for connection in idp.sps
    }
    authorize = f"{idps.origin}/oidc/authorize"
    out[HOOLI] = UpstreamIdp("oidc", authorize, client_id=HOOLI_CLIENT_ID, response_type="id_token")
    out[UNMAPPED_OIDC] = UpstreamIdp("oidc", authorize, client_id=UNMAPPED_OIDC)
    return out


def labels(protocol: str, connection: str, decision: str, reason: str, identified_by: str) -> Labels:
    return frozenset(
        {
            "protocol": protocol,
            "connection": connection,
            "decision": decision,
            "reason": reason,
            "identified_by": identified_by,
        }.items()
    )


def counted(before: dict[Labels, float], after: dict[Labels, float]) -> dict[Labels, float]:
    """The counter samples that moved between two scrapes, and by how much."""
    moved = {key: after[key] - before.get(key, 0.0) for key in after}
    return {key: delta for key, delta in moved.items() if delta}


@contextmanager
def running_world(tmp: Path) -> Iterator[World]:
    """Start the app page, the Auth0 stand-in, per redirect mode a WorkOS stand-in and a proxy,
    and the IdPs; stop them all on exit."""
    from proxy.routing.routemap import Connection, make_routemap
    from proxy.sandbox.auth0_standin import create_auth0_standin
    from proxy.sandbox.workos_standin import create_workos_standin

    # What WorkOS knows: the connections already set up there, by the identifiers it reads.
    workos_knows = make_routemap(
        [
            Connection(ACME, "saml", "workos", audiences=(auth0_audience(ACME),)),
            Connection(HOOLI, "oidc", "workos", client_ids=(HOOLI_CLIENT_ID,)),
        ]
    )
    cname_key = secrets.token_urlsafe(24)
    started: list[ThreadedServer] = []
    proxies: list[ProxyProcess] = []
    try:
        app = StandIn("app.globex.test")
        started.append(app.start(create_app_page()))
        auth0 = StandIn("auth0 stand-in", headers={"cname-api-key": cname_key})
        app_url = f"http://app.globex.test:{app.port}/callback"

        routes = tmp / "routes.yaml"
        pending: dict[str, tuple[ProxyProcess, StandIn]] = {}
        for mode in MODES:
            workos = StandIn(f"workos stand-in ({mode})")
            env = {
                "WORKOS_CUSTOM_DOMAIN": f"auth.workos.test:{workos.port}",
                "WORKOS_CLIENT_ID": WORKOS_CLIENT_ID,
                "AUTH0_FALLBACK_ORIGIN": auth0.origin,
                "AUTH0_CNAME_API_KEY": cname_key,
                "SSO_PROXY_WORKOS_SCHEME": "http",
                "SSO_PROXY_REDIRECT_MODE": mode,
                "SSO_PROXY_DRAIN_SECONDS": "0",
                "SSO_PROXY_SHUTDOWN_TIMEOUT": "5",
                "PYTHONUNBUFFERED": "1",
            }
            pending[mode] = (ProxyProcess(routes, env, tmp / f"proxy-{mode}.log"), workos)

        idps = start_idps(tmp, [proxy.port for proxy, _ in pending.values()])
        started.append(idps.server)
        # How Auth0 and WorkOS send a browser to each connection's IdP when they start a login.
        upstream = upstream_idps(idps)
        # States of another form than Auth0's own: over plain http the binding cookie (Secure) never
        # comes back, and these flows are the map's and the fallback's; Auth0's own form (the second
        # witness, issue 23) is measured over TLS in test_binding_witness.py.
        standin = create_auth0_standin(cname_api_key=cname_key, app_url=app_url, idps=upstream, state_form="opaque")
        started.append(auth0.start(standin))
        for proxy, workos in pending.values():
            origin = f"http://login.customer.test:{proxy.port}"
            started.append(
                workos.start(create_workos_standin(WORKOS_CLIENT_ID, origin, MIGRATED, workos_knows, upstream))
            )
        routes.write_text(yaml.safe_dump(route_map(idps.saml["umbrella"].entity_id), sort_keys=False))

        for proxy, _ in pending.values():
            proxies.append(proxy.start())
        for proxy in proxies:
            proxy.wait_ready()
        yield World({mode: Stack(mode, proxy, workos, auth0, app) for mode, (proxy, workos) in pending.items()}, idps)
    finally:
        for proxy in proxies:
            proxy.stop()
        for server in reversed(started):
            server.stop()
