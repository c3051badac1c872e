"""``sso-proxy sandbox``: the stand-ins for Auth0 and WorkOS, with (or without) the proxy.

:class:`SandboxPlan` is what it runs and prints, from its flags.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shlex
import signal
import socket
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape as xml_escape

from proxy.errors import ConfigError
from proxy.routing.routemap import RouteMap, load_routemap
from proxy.sandbox.auth0_standin import create_auth0_standin
from proxy.sandbox.standin import UpstreamIdp
from proxy.sandbox.workos_api_standin import create_workos_api_standin, workos_connection
from proxy.sandbox.workos_standin import create_workos_standin

SANDBOX_CLIENT_ID = "client_sandbox"
SANDBOX_CNAME_API_KEY = "sandbox-cname-api-key"  # fixed and printed: a local toy, never a real key
SANDBOX_WORKOS_API_KEY = "sk_test_sandbox"  # the WorkOS API stand-in's key; fixed and printed likewise


@dataclass(frozen=True, slots=True)
class SandboxPlan:
    """What ``sso-proxy sandbox`` runs, from its flags (see ``sso-proxy sandbox --help``)."""

    routes: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 9090
    auth0_port: int = 8081
    workos_port: int = 8082
    workos_api_port: int = 8083
    proxy_origin: str | None = None  # where WorkOS sends fallbacks; default: the sandbox's public listener
    migrated: tuple[str, ...] | None = None  # what WorkOS handles; default: the map's connections in state workos
    standins_only: bool = False
    # Signs the binding cookies; printed, so `sso-proxy explain -b` can read them. A fresh one per run
    # unless SSO_PROXY_TRANSACTION_KEYS is set.
    binding_key: str = field(default_factory=lambda: os.environ.get("SSO_PROXY_TRANSACTION_KEYS") or _new_key())
    auth0_state_form: str = "auth0"  # the Auth0 stand-in's state: auth0 (its own form) | opaque (another form)

    @property
    def browser_host(self) -> str:
        """The listeners' host as a browser on this machine reaches it (a container's published ports)."""
        return "localhost" if self.host in ("0.0.0.0", "::") else _url_host(self.host)  # noqa: S104

    @property
    def loopback_host(self) -> str:
        """The listeners' host as a process in the same network namespace reaches it."""
        return {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, _url_host(self.host))  # noqa: S104

    @property
    def public(self) -> str:
        """The sandbox's own public listener, as a browser reaches it."""
        return f"http://{self.browser_host}:{self.port}"

    @property
    def fallback_origin(self) -> str:
        """Where the WorkOS stand-in sends what it cannot handle: the proxy under test, else the sandbox's."""
        return self.proxy_origin or self.public

    def listeners(self) -> dict[str, int]:
        """Each listener this plan opens, by name, with its port."""
        named = {
            "Auth0 stand-in": self.auth0_port,
            "WorkOS stand-in": self.workos_port,
            "WorkOS API stand-in": self.workos_api_port,
        }
        if self.standins_only:
            return named
        return {"public listener": self.port, "operations listener": self.admin_port, **named}

    def proxy_env(self) -> dict[str, str]:
        """The settings that point a proxy at the stand-ins; printed in full, secrets included."""
        return {
            "WORKOS_CUSTOM_DOMAIN": f"{self.browser_host}:{self.workos_port}",
            "SSO_PROXY_WORKOS_SCHEME": "http",
            "WORKOS_CLIENT_ID": SANDBOX_CLIENT_ID,
            "AUTH0_FALLBACK_ORIGIN": f"http://{self.loopback_host}:{self.auth0_port}",
            "AUTH0_CNAME_API_KEY": SANDBOX_CNAME_API_KEY,
            "SSO_PROXY_TRANSACTION_KEYS": self.binding_key,
        }

    def operator_env(self) -> dict[str, str]:
        """What the operator's commands (`routes check`, the readiness gate of `routes set`) read."""
        return {
            "SSO_PROXY_ROUTES": os.path.abspath(self.routes),  # the map the sandbox serves and reloads
            "WORKOS_BASE_URL": f"http://{self.loopback_host}:{self.workos_api_port}",
            "WORKOS_API_KEY": SANDBOX_WORKOS_API_KEY,
        }


def _new_key() -> str:
    return secrets.token_urlsafe(32)  # 43 characters; the setting asks for 32 or more


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def parse_origin(value: str) -> str:
    """``--proxy-origin``: an http(s) origin (scheme, host, optional port; no path, query or user)."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or port == -1
    ):
        raise ConfigError(f"--proxy-origin: {value!r} is not an origin like http://127.0.0.1:8080")
    return f"{parts.scheme}://{parts.netloc}"


def check_plan(plan: SandboxPlan, route_map: RouteMap) -> tuple[str, ...]:
    """The connections WorkOS handles; a :class:`ConfigError` naming the first flag that cannot work."""
    ports = plan.listeners()
    for name, port in ports.items():
        if not 0 < port < 65536:
            raise ConfigError(f"{name} port {port}: must be 1-65535")
        other = next((n for n, p in ports.items() if p == port and n != name), None)
        if other is not None:
            raise ConfigError(f"{name} and {other} both on port {port}")
    if plan.migrated is None:
        return tuple(name for name, conn in route_map.connections.items() if conn.state == "workos")
    unknown = [name for name in plan.migrated if name not in route_map.connections]
    if unknown:
        raise ConfigError(f"--migrated: {', '.join(unknown)} not in the route map {plan.routes}")
    return plan.migrated


def port_in_use(host: str, port: int) -> bool:
    """Whether a listener could not bind ``host:port`` now (bound as uvicorn binds: SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False  # an unresolvable host fails later, in the listener, with its own message
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return True
    return False


def _saml_b64(audience: str, issuer: str) -> str:
    """A minimal unsigned SAMLResponse naming ``audience``: enough for the proxy to identify it."""
    xml = (
        '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><saml:Issuer>{xml_escape(issuer)}</saml:Issuer>'
        "<saml:Assertion><saml:Conditions><saml:AudienceRestriction>"
        f"<saml:Audience>{xml_escape(audience)}</saml:Audience>"
        "</saml:AudienceRestriction></saml:Conditions></saml:Assertion></samlp:Response>"
    )
    return base64.b64encode(xml.encode()).decode()


def sandbox_idps(route_map: RouteMap) -> dict[str, UpstreamIdp]:
    """An IdP address per connection of the map, so ``/authorize?connection=X`` starts a login on either
    stand-in (the sandbox has no IdP: the browser stops at the redirect, which shows the binding)."""
    return {
        name: UpstreamIdp(
            conn.protocol, f"https://idp.example.test/{name}/" + ("authorize" if conn.protocol == "oidc" else "sso")
        )
        for name, conn in route_map.connections.items()
    }


def api_connections(route_map: RouteMap, migrated: tuple[str, ...]) -> list[dict[str, object]]:
    """The WorkOS API stand-in's connections: one per connection of the map with a
    ``workos_connection_id``, active when the WorkOS stand-in handles it (``migrated``), else a
    draft, so `routes check` and the readiness gate of `routes set ... workos` say what WorkOS would."""
    out: list[dict[str, object]] = []
    for created, (name, conn) in enumerate(sorted(route_map.connections.items())):
        if conn.workos_connection_id:
            state = "active" if name in migrated else "draft"
            organization = conn.organizations[0] if conn.organizations else None
            out.append(workos_connection(conn.workos_connection_id, state, name, organization, created))
    return out


def sandbox_help(plan: SandboxPlan, route_map: RouteMap, migrated: tuple[str, ...]) -> str:
    """What the sandbox prints: every address and secret it uses, then one curl command per path."""
    public = plan.fallback_origin if plan.standins_only else plan.public
    workos = f"http://{plan.browser_host}:{plan.workos_port}"
    auth0 = f"http://{plan.browser_host}:{plan.auth0_port}"
    admin = f"http://{plan.loopback_host}:{plan.admin_port}"
    env = plan.proxy_env()
    lines = ["sso-proxy sandbox is running (Ctrl+C stops it):"]
    if not plan.standins_only:
        lines += [
            f"  public listener      {public}",
            f"  operations listener  {admin}  (/metrics /healthz /readyz /routes; POST /-/reload with "
            "SSO_PROXY_ADMIN_TOKEN set)",
        ]
    lines += [
        f"  Auth0 stand-in       {auth0}  (demands the header cname-api-key: {SANDBOX_CNAME_API_KEY},",
        "                       and X-Forwarded-For with exactly one address, the end user's)",
        f"  WorkOS stand-in      {workos}  (client id {SANDBOX_CLIENT_ID}; callback "
        f"{workos}/sso/{SANDBOX_CLIENT_ID}/auth0/callback)",
        f"    handles:           {', '.join(migrated) or '(none)'}",
        f"    sends the rest to  {plan.fallback_origin}/login/callback?...&fallback=auth0",
        f"  WorkOS API stand-in  {plan.operator_env()['WORKOS_BASE_URL']}  (connections of the map with a "
        "workos_connection_id: active where the WorkOS stand-in handles them, else draft)",
        f"  route map            {plan.routes} (read once at start by the stand-ins)",
        f"  what each stand-in received: curl -s {auth0}/_standin/requests ; curl -s {workos}/_standin/requests",
        "",
        "For the operator's commands (sso-proxy routes check, routes set with its readiness gate, explain):",
        *(f"  export {k}={shlex.quote(v)}" for k, v in plan.operator_env().items()),
        "",
    ]
    if plan.standins_only:
        port = urlsplit(public).port or (443 if public.startswith("https:") else 80)
        lines += [
            f"Run the proxy under test at {public} with these settings:",
            "  " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " \\",
            f"    sso-proxy serve --routes {shlex.quote(plan.routes)} --port {port}",
            "",
        ]
    else:
        lines += [
            "The proxy runs with (the same settings point your own `sso-proxy serve` at the stand-ins;",
            "see `sso-proxy sandbox --standins-only`):",
            *(f"  {k}={shlex.quote(v)}" for k, v in env.items()),
            "",
        ]
    lines += ["Try each path (-i shows the status and Location):", *_curl_examples(public, route_map, migrated)]
    if not plan.standins_only:
        lines += [
            "  # what the proxy decided, and the map in force",
            f"  curl -s {admin}/metrics | grep sso_proxy_callbacks_total",
            f"  curl -s {admin}/routes",
        ]
    return "\n".join([*lines, ""])


def _curl_examples(public: str, route_map: RouteMap, migrated: tuple[str, ...]) -> list[str]:
    """One curl command per path through the proxy, with connections taken from the map in force."""
    callback = f"{public}/login/callback"
    conns = route_map.connections
    # Labelled by the map's own states: only a connection cut over in the map is redirected to WorkOS.
    saml = [name for name in migrated if conns[name].protocol == "saml" and conns[name].state == "workos"]
    legacy = [name for name, conn in conns.items() if conn.state == "legacy"]
    bounced = [name for name, conn in conns.items() if conn.state == "workos" and name not in migrated]
    out: list[str] = []
    if saml:
        conn = conns[saml[0]]
        audience = conn.audiences[0] if conn.audiences else f"urn:auth0:sandbox:{saml[0]}"
        issuer = conn.issuers[0] if conn.issuers else "http://idp.example.com"
        form = shlex.quote(f"SAMLResponse={_saml_b64(audience, issuer)}")
        out += [
            "  # SAML, connection in the query, cut over -> 307 to WorkOS",
            f"  curl -i {shlex.quote(f'{callback}?connection={quote(saml[0])}')} --data-urlencode {form}",
        ]
        if conn.audiences:
            out += [
                "  # SAML, connection read from the Audience inside the response -> 307 to WorkOS",
                f"  curl -i {shlex.quote(callback)} --data-urlencode {form} -d RelayState=xyz",
            ]
    if legacy:
        out += [
            "  # legacy connection -> forwarded to Auth0 (302 to the app, Set-Cookie)",
            f"  curl -i {shlex.quote(f'{callback}?connection={quote(legacy[0])}')} -d SAMLResponse=PHNhbWw+",
        ]
    if bounced:
        out += [
            "  # cut over but unknown to WorkOS -> WorkOS sends it back with fallback=auth0 -> Auth0",
            f"  curl -iL {shlex.quote(f'{callback}?connection={quote(bounced[0])}')} -d SAMLResponse=PHNhbWw+",
        ]
    return [
        *out,
        "  # OIDC back channel (code+state, no connection) -> defaults.unknown",
        f"  curl -i {shlex.quote(f'{callback}?code=abc&state=xyz')}",
        "  # anything else is passed through to Auth0",
        f"  curl -i {shlex.quote(f'{public}/authorize?client_id=app&response_type=code')}",
        *(
            [
                "  # a login Auth0 starts: 302 to the IdP, plus the proxy's binding cookie sso_proxy_tx_<id>",
                f"  curl -i {shlex.quote(f'{public}/authorize?client_id=app&connection={quote(next(iter(conns)))}')}",
            ]
            if conns
            else []
        ),
    ]


async def run_sandbox(plan: SandboxPlan, out: TextIO) -> None:
    """The stand-ins, and unless ``standins_only`` the proxy, until Ctrl+C or SIGTERM.

    Raises :class:`ConfigError` (bad flag, port in use) or :class:`RouteMapError` before anything
    is started or printed.
    """
    from proxy.edge.listener import ListenerServer, uvicorn_config

    route_map = load_routemap(plan.routes, plan.proxy_env()["WORKOS_CUSTOM_DOMAIN"])
    migrated = check_plan(plan, route_map)
    for name, port in plan.listeners().items():
        if port_in_use(plan.host, port):
            raise ConfigError(f"{name} port {port} on {plan.host} is in use (choose another with its flag)")
    idps = sandbox_idps(route_map)
    api = ListenerServer(
        uvicorn_config(
            create_workos_api_standin(SANDBOX_WORKOS_API_KEY, api_connections(route_map, migrated)),
            plan.host,
            plan.workos_api_port,
            1.0,
        )
    )
    auth0 = ListenerServer(
        uvicorn_config(
            create_auth0_standin(SANDBOX_CNAME_API_KEY, idps=idps, state_form=plan.auth0_state_form),
            plan.host,
            plan.auth0_port,
            1.0,
        )
    )
    workos = ListenerServer(
        uvicorn_config(
            create_workos_standin(SANDBOX_CLIENT_ID, plan.fallback_origin, migrated, route_map, idps),
            plan.host,
            plan.workos_port,
            1.0,
        )
    )
    servers = (auth0, workos, api)
    standins = [asyncio.create_task(server.serve()) for server in servers]
    try:
        while not all(server.started for server in servers):
            if any(task.done() for task in standins):
                raise ConfigError(
                    f"a stand-in could not listen on {plan.host} "
                    f"(ports {plan.auth0_port}, {plan.workos_port}, {plan.workos_api_port})"
                )
            await asyncio.sleep(0.01)
        if plan.standins_only:
            out.write(sandbox_help(plan, route_map, migrated))
            out.flush()
            await _until_signal()
        else:
            await _serve_proxy(plan, route_map, migrated, out)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*standins, return_exceptions=True)


async def _until_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve_proxy(plan: SandboxPlan, route_map: RouteMap, migrated: tuple[str, ...], out: TextIO) -> None:
    from proxy.config import load_settings
    from proxy.logs import setup_logging
    from proxy.metrics import Metrics
    from proxy.reload import RouteStore
    from proxy.server import serve

    settings = load_settings(
        {
            **plan.proxy_env(),
            "SSO_PROXY_ROUTES": plan.routes,
            "SSO_PROXY_HOST": plan.host,
            "SSO_PROXY_PORT": str(plan.port),
            "SSO_PROXY_ADMIN_HOST": plan.host,
            "SSO_PROXY_ADMIN_PORT": str(plan.admin_port),
            "SSO_PROXY_DRAIN_SECONDS": "0",
            "SSO_PROXY_SHUTDOWN_TIMEOUT": "2",
            "SSO_PROXY_READ_TIMEOUT": "1.5",  # the stand-ins answer at once; below the shutdown timeout
            # POST /-/reload only with a token the operator chose (Authorization: Bearer ...).
            "SSO_PROXY_ADMIN_TOKEN": os.environ.get("SSO_PROXY_ADMIN_TOKEN", ""),
        }
    )
    logger = setup_logging(settings.log_level)
    metrics = Metrics()
    store = RouteStore(settings.routes, settings.workos_domain, metrics, logger, settle=settings.reload_settle)
    store.load_initial()
    out.write(sandbox_help(plan, route_map, migrated))
    out.flush()
    await serve(settings, store, metrics, logger)
