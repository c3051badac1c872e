"""Session fixtures: keys, IdPs, stand-ins, two proxies (307 and form mode) and one Chromium.

Everything starts once per session on loopback ports; each test gets a clean request log on every
receiving end and a fresh tab, and measures the proxy's counters as a before/after difference.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator

import pytest
import yaml
from playwright.sync_api import BrowserContext

from .app_page import create_app_page
from .browser import chromium_path, launch
from .idp import XMLSEC1
from .servers import ProxyProcess, StandIn, ThreadedServer
from .world import (
    ACME,
    HOOLI,
    HOOLI_CLIENT_ID,
    MIGRATED,
    MODES,
    UMBRELLA,
    WORKOS_CLIENT_ID,
    Idps,
    Stack,
    World,
    auth0_audience,
    route_map,
    start_idps,
)


@pytest.fixture(scope="session")
def e2e_tools() -> None:
    """Chromium and xmlsec1 are system packages; without them skip here, fail under CI."""
    missing = [name for name, found in (("chromium", chromium_path()), ("xmlsec1", shutil.which(XMLSEC1))) if not found]
    if missing:
        message = f"end-to-end suite needs: apt-get install -y {' '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def world(e2e_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from proxy.routemap import Connection, make_routemap
    from proxy.sandbox import create_auth0_standin, create_workos_standin

    # What WorkOS knows: the connections already set up there, by the identifiers it reads.
    workos_knows = make_routemap(
        [
            Connection(ACME, "saml", "workos", audiences=(auth0_audience(ACME),)),
            Connection(HOOLI, "oidc", "workos", client_ids=(HOOLI_CLIENT_ID,)),
        ]
    )

    tmp = tmp_path_factory.mktemp("e2e")
    cname_key = secrets.token_urlsafe(24)
    started: list[ThreadedServer] = []
    proxies: list[ProxyProcess] = []
    try:
        app = StandIn("app.globex.test")
        started.append(app.start(create_app_page()))
        auth0 = StandIn("auth0 stand-in", headers={"cname-api-key": cname_key})
        app_url = f"http://app.globex.test:{app.port}/callback"
        started.append(auth0.start(create_auth0_standin(cname_api_key=cname_key, app_url=app_url)))

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
            proxy = ProxyProcess(routes, env, tmp / f"proxy-{mode}.log")
            origin = f"http://login.customer.test:{proxy.port}"
            app_ = create_workos_standin(WORKOS_CLIENT_ID, origin, MIGRATED, workos_knows)
            started.append(workos.start(app_))
            pending[mode] = (proxy, workos)

        idps = start_idps(tmp, [proxy.port for proxy, _ in pending.values()])
        started.append(idps.server)
        conf = route_map()
        connections = conf["connections"]
        assert isinstance(connections, dict)
        connections[UMBRELLA]["issuers"] = [idps.saml["umbrella"].entity_id]
        routes.write_text(yaml.safe_dump(conf, sort_keys=False))

        for proxy, _ in pending.values():
            proxies.append(proxy.start())
        for proxy in proxies:
            proxy.wait_ready()
        stacks = {mode: Stack(mode, proxy, workos, auth0, app) for mode, (proxy, workos) in pending.items()}
        yield World(stacks, idps)
    finally:
        for proxy in proxies:
            proxy.stop()
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
def browser(e2e_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with launch(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def context(browser: BrowserContext) -> BrowserContext:
    """The shared browser with no cookies left from an earlier test."""
    browser.clear_cookies()
    return browser


@pytest.fixture
def idps(world: World) -> Idps:
    return world.idps


@pytest.fixture(params=MODES, ids=[f"redirect={mode}" for mode in MODES])
def stack(request: pytest.FixtureRequest, world: World) -> Stack:
    """The stack for one redirect mode, its receiving ends' logs cleared."""
    chosen = world.stacks[request.param]
    chosen.clear()
    return chosen
