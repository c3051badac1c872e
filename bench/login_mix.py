"""Whole logins through two replicas behind a round-robin balancer: who started each, where it ended.

The load harness of logins. Two real replicas (``python -m proxy serve``, sharing
``SSO_PROXY_TRANSACTION_KEYS``, as tests/test_rotation.py starts them) behind a round-robin TCP
balancer (one connection per request, so consecutive requests of one login land on either replica;
a replica is taken out of rotation before it restarts, as a Service does with a pod that is not
ready), in front of the repository's own Auth0 and WorkOS stand-ins (proxy/sandbox/), which refuse a
state they did not issue. Many simulated browsers, each with its own cookie jar, drive whole logins
at the HTTP level (the browser's requests, and the IdP's answer played by the browser, as an IdP's
page makes it post back):

- ``auth0-oidc`` / ``auth0-saml``: the app starts the login at Auth0 (``/authorize?connection=`` on
  the custom domain, through the proxy) for a connection cut over to WorkOS (``initech-entra``, an
  OIDC code flow whose callback names no connection; ``acme-okta``, SAML, the IdP answering the
  AuthnRequest with ``InResponseTo`` and the RelayState). It must end at Auth0, with no request to
  WorkOS;
- ``workos-oidc`` / ``workos-saml``: the same connections, started at WorkOS's own authorize
  endpoint: must end at WorkOS;
- ``idp-saml`` (IdP-initiated, ``acme-okta``: WorkOS) and ``idp-legacy`` (``globex-adfs``, still on
  Auth0: Auth0).

A login "ends" at Auth0 when the Auth0 stand-in signs it in (a 302 to the app), at WorkOS when the
WorkOS stand-in does (200); anything else (a refusal, a 5xx, a dropped connection, more than 8
hops) is an error: a login lost. A WorkOS round trip of an Auth0-started login is a request it made to
the WorkOS stand-in (then sent back with ``fallback=auth0``).

Scenarios (``--scenario``, repeatable; default all):

- ``baseline``: the mix, cookies kept;
- ``dropped``: the mix, every browser's cookies dropped between the start and the IdP's answer (a
  fresh context before the callback);
- ``tabs12-seq``, ``tabs20-seq``: beside the mix, browsers that start 12 or 20 Auth0 logins one after
  another (each start's cookies stored before the next), then answer them oldest first;
- ``tabs12-burst``, ``tabs20-burst``: the same, all started at once;
- ``rotate-3roll``: the mix while the replicas are restarted pod by pod through the three rolls of
  deploy/README.md (``OLD,NEW``; ``NEW,OLD``; after one TTL, ``NEW``), logins waiting at the IdP across
  each restart;
- ``rotate-1step``: the same with the new key first at once (``NEW,OLD``), for comparison.

Printed per scenario: logins by who started them and where each ended, WorkOS round trips of
Auth0-started logins (target 0), the callbacks by reason, solicited fallbacks, the witnesses'
disagreement counter (all summed over both replicas, across restarts), the most login cookies a
browser held and the longest Cookie header a callback carried, errors.

Usage::

    python bench/login_mix.py                           # every scenario, Auth0's state form, 20 s each
    python bench/login_mix.py --state-form opaque       # the Auth0 stand-in issuing another form
    python bench/login_mix.py --scenario dropped -c 16 -d 30 --json out.json
    python bench/login_mix.py --quick                   # small counts (tests/test_login_mix.py)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import re
import secrets
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.sandbox.auth0_standin import create_auth0_standin  # noqa: E402
from proxy.sandbox.workos_standin import create_workos_standin  # noqa: E402
from tests.conftest import (  # noqa: E402
    CLIENT_ID,
    CNAME_KEY,
    IDPS,
    MIGRATED,
    ROUTES_YAML,
    ProxyProcess,
    ThreadServer,
    free_port,
    proxy_env,
)
from tests.samples import saml_xml  # noqa: E402

SCENARIOS = (
    "baseline",
    "dropped",
    "tabs12-seq",
    "tabs20-seq",
    "tabs12-burst",
    "tabs20-burst",
    "rotate-3roll",
    "rotate-1step",
)
# The mix: (kind, weight). Half the logins are Auth0-started, as during a migration's first waves.
MIX = (
    ("auth0-oidc", 3),
    ("auth0-saml", 3),
    ("workos-oidc", 1),
    ("workos-saml", 1),
    ("idp-saml", 1),
    ("idp-legacy", 1),
)
EXPECTED = {
    "auth0-oidc": "auth0",
    "auth0-saml": "auth0",
    "workos-oidc": "workos",
    "workos-saml": "workos",
    "idp-saml": "workos",
    "idp-legacy": "auth0",
}
CONNECTION = {
    "auth0-oidc": "initech-entra",
    "auth0-saml": "acme-okta",
    "workos-oidc": "initech-entra",
    "workos-saml": "acme-okta",
    "idp-saml": "acme-okta",
    "idp-legacy": "globex-adfs",
}
MAX_HOPS = 8
FORM = {"content-type": "application/x-www-form-urlencoded"}
COUNTERS = (
    "sso_proxy_callbacks_total",
    "sso_proxy_fallbacks_total",
    "sso_proxy_witness_disagreements_total",
)


# --- a browser's cookies (only what the proxy and Auth0 set on the custom domain) ------------------


@dataclass
class Jar:
    """One browser's cookies for the custom domain: name -> (value, path). Set-Cookie is applied as a
    browser does for these attributes (Path, Max-Age=0 deletes); every cookie here is host-only."""

    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)

    def store(self, set_cookies: list[str]) -> None:
        for line in set_cookies:
            pair, *attributes = [part.strip() for part in line.split(";")]
            name, _, value = pair.partition("=")
            path, deleted = "/", False
            for attribute in attributes:
                key, _, arg = attribute.partition("=")
                if key.lower() == "path" and arg.startswith("/"):
                    path = arg
                elif key.lower() == "max-age" and arg.strip().lstrip("-").isdigit() and int(arg) <= 0:
                    deleted = True
            if deleted:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = (value, path)

    def header(self, path: str) -> str:
        """The Cookie header for a request to ``path`` (RFC 6265 section 5.1.4 path-match)."""
        sent = [
            f"{name}={value}"
            for name, (value, cookie_path) in sorted(self.cookies.items(), key=lambda kv: -len(kv[1][1]))
            if path == cookie_path or path.startswith(cookie_path.rstrip("/") + "/")
        ]
        return "; ".join(sent)

    def logins(self) -> int:
        """Login cookies held (one per Auth0 login in flight)."""
        return sum(1 for name, (value, _) in self.cookies.items() if name.startswith("sso_proxy_tx_") and value)

    def clear(self) -> None:
        self.cookies.clear()


# --- the balancer ----------------------------------------------------------------------------------


class RoundRobin:
    """A TCP balancer: each connection to the next replica in rotation (a replica taken out is
    skipped, one that refuses is skipped too). Runs its own loop in a thread."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.out: set[int] = set()
        self.turn = 0
        self.per_replica: Counter[int] = Counter()
        self.active: Counter[int] = Counter()  # connections open to each replica now
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="round-robin", daemon=True)
        self.server: asyncio.Server | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RoundRobin:
        self.thread.start()
        if not self.started.wait(10):
            raise RuntimeError("balancer did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.started.set()
        self.loop.run_forever()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def stop(self) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in range(len(self.ports)):
            index = self.turn % len(self.ports)
            self.turn += 1
            if index in self.out:
                continue
            try:
                upstream = await asyncio.open_connection("127.0.0.1", self.ports[index])
            except OSError:
                continue
            self.per_replica[index] += 1
            break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self.active[index] += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                try:
                    dst.close()
                except OSError:
                    pass

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.active[index] -= 1

    def drain(self, index: int, deadline: float = 10.0) -> None:
        """Wait until no connection to replica ``index`` is open (it is out of rotation already), as
        a pod's drain period lets the requests it holds finish before it stops."""
        end = time.monotonic() + deadline
        while self.active[index] > 0 and time.monotonic() < end:
            time.sleep(0.02)


# --- the world: stand-ins, two replicas, the balancer -----------------------------------------------


def metric_totals(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Counter[tuple[str, ...]]:
    """The counters this harness reports, by (metric, the labels it reports on)."""
    out: Counter[tuple[str, ...]] = Counter()
    for (name, labels), value in samples.items():
        pairs = dict(labels)
        if name == "sso_proxy_callbacks_total":
            out[(name, pairs["reason"], pairs["decision"])] += value
        elif name == "sso_proxy_fallbacks_total":
            out[(name, pairs["solicited"], pairs.get("verdict", ""))] += value
        elif name == "sso_proxy_witness_disagreements_total":
            out[(name, pairs["protocol"])] += value
    return out


@dataclass
class World:
    state_form: str
    ttl: int
    auth0: ThreadServer
    workos: ThreadServer
    balancer: RoundRobin
    replicas: list[ProxyProcess]
    routes: Path
    keys: str
    gone: Counter[tuple[str, ...]] = field(default_factory=Counter)  # counted by replicas since restarted
    restarts: int = 0

    def counters(self) -> Counter[tuple[str, ...]]:
        """What every replica counted since the world started, restarts included."""
        total = Counter(self.gone)
        for replica in self.replicas:
            total.update(metric_totals(replica.scrape()))
        return total

    def restart(self, index: int, keys: str) -> None:
        """Replica ``index`` out of rotation, stopped (its counters kept), started with ``keys``, back."""
        self.balancer.out.add(index)
        self.balancer.drain(index)
        old = self.replicas[index]
        self.gone.update(metric_totals(old.scrape()))
        old.stop()
        env = {**old.env, "SSO_PROXY_TRANSACTION_KEYS": keys}
        self.replicas[index] = ProxyProcess(env=env, args=old.args, port=old.port, admin_port=old.admin_port).start()
        self.balancer.out.discard(index)
        self.restarts += 1

    def workos_callbacks(self) -> int:
        import httpx

        received = httpx.get(f"{self.workos.origin}/_standin/requests", timeout=30).json()
        return sum(1 for r in received if r["path"] == f"/sso/{CLIENT_ID}/auth0/callback")


def new_key(tag: str) -> str:
    return f"{tag}-" + secrets.token_urlsafe(32)


@contextmanager
def running_world(tmp: Path, state_form: str = "auth0", ttl: int = 600) -> Iterator[World]:
    balancer_port = free_port()
    auth0 = ThreadServer(create_auth0_standin(CNAME_KEY, idps=IDPS, state_form=state_form)).start()
    workos = ThreadServer(
        create_workos_standin(CLIENT_ID, f"http://127.0.0.1:{balancer_port}", MIGRATED, idps=IDPS)
    ).start()
    routes = tmp / "routes.yaml"
    routes.write_text(ROUTES_YAML)
    keys = new_key("old")
    replicas: list[ProxyProcess] = []
    balancer: RoundRobin | None = None
    try:
        for _ in range(2):
            port, admin = free_port(), free_port()
            env = proxy_env(
                auth0.origin,
                f"127.0.0.1:{workos.port}",
                SSO_PROXY_TRANSACTION_KEYS=keys,
                SSO_PROXY_TRANSACTION_TTL=str(ttl),
                SSO_PROXY_RELOAD_INTERVAL="0",
                SSO_PROXY_LOG_LEVEL="warning",
            )
            args = ["--routes", str(routes), "--port", str(port), "--admin-port", str(admin)]
            replicas.append(ProxyProcess(env=env, args=args, port=port, admin_port=admin).start())
        balancer = RoundRobin([r.port for r in replicas])
        balancer.port = balancer_port
        balancer.start()
        yield World(state_form, ttl, auth0, workos, balancer, replicas, routes, keys)
    finally:
        if balancer is not None:
            balancer.stop()
        for replica in replicas:
            replica.stop()
        auth0.stop()
        workos.stop()


# --- one login, hop by hop -------------------------------------------------------------------------


@dataclass
class Tally:
    """What one scenario's logins did, as the browsers saw it."""

    started: Counter[str] = field(default_factory=Counter)  # kind -> logins started
    ended: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, auth0|workos|error: why)
    workos_trips: Counter[str] = field(default_factory=Counter)  # kind -> requests made to WorkOS
    most_logins_held: int = 0  # login cookies one browser held at once
    longest_cookie_header: int = 0  # bytes of the Cookie header on a callback
    wrong_side: int = 0  # ended signed in, but at the other side than its starter

    def lost(self) -> int:
        return sum(n for (_, end), n in self.ended.items() if end not in ("auth0", "workos"))

    def auth0_started_trips(self) -> int:
        return sum(n for kind, n in self.workos_trips.items() if kind.startswith("auth0-"))


@dataclass
class Started:
    kind: str
    state: str  # state or RelayState
    request_id: str | None = None


class Browsers:
    """The shared HTTP client (one connection per request, no cookie handling of its own) and the hops."""

    def __init__(self, world: World, session: aiohttp.ClientSession, tally: Tally) -> None:
        self.world = world
        self.session = session
        self.tally = tally
        self.lb = world.balancer.origin

    async def request(
        self, jar: Jar | None, method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """One request; the custom domain's cookies from and into ``jar``. (status, Location, body)."""
        sent = dict(headers or {})
        on_domain = url.startswith(self.lb)
        if jar is not None and on_domain:
            cookie = jar.header(urlsplit(url).path)
            if cookie:
                sent["cookie"] = cookie
                if urlsplit(url).path == "/login/callback":
                    self.tally.longest_cookie_header = max(self.tally.longest_cookie_header, len(cookie))
        async with self.session.request(method, url, data=body, headers=sent, allow_redirects=False) as reply:
            text = await reply.text(errors="replace")
            if jar is not None and on_domain:
                jar.store(reply.headers.getall("set-cookie", []))
            return reply.status, reply.headers.get("location", ""), text

    async def start(self, jar: Jar, kind: str) -> Started:
        """Send the browser to the IdP as the starter does; return what the IdP will echo back."""
        connection = CONNECTION[kind]
        if kind.startswith("auth0-"):
            url = f"{self.lb}/authorize?client_id=app&connection={connection}"
            status, location, _ = await self.request(jar, "GET", url)
        else:
            url = f"{self.world.workos.origin}/sso/authorize?connection={connection}"
            status, location, _ = await self.request(None, "GET", url)
        if status != 302:
            raise LoginError(f"start {status}")
        query = parse_qs(urlsplit(location).query)
        if "SAMLRequest" in query:
            xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
            request_id = re.search(r' ID="([^"]+)"', xml)
            return Started(kind, query["RelayState"][0], request_id.group(1) if request_id else None)
        return Started(kind, query["state"][0])

    def answer(self, login: Started) -> tuple[str, str, bytes | None, dict[str, str]]:
        """The IdP's answer, as the browser sends it to the custom domain: (method, url, body, headers)."""
        if login.kind.endswith("-oidc"):
            code = secrets.token_urlsafe(12)
            return "GET", f"{self.lb}/login/callback?{urlencode({'code': code, 'state': login.state})}", None, {}
        audience = f"urn:auth0:globex-prod:{CONNECTION[login.kind]}"
        xml = saml_xml(audience=audience)
        if login.request_id is not None:
            xml = xml.replace(b' ID="id1" ', f' ID="id1" InResponseTo="{login.request_id}" '.encode(), 1)
        fields = {"SAMLResponse": base64.b64encode(xml).decode(), "RelayState": login.state}
        return "POST", f"{self.lb}/login/callback", urlencode(fields).encode(), FORM

    async def finish(self, jar: Jar, login: Started) -> None:
        """Follow the callback to its end; record where it ended."""
        method, url, body, headers = self.answer(login)
        await self.follow(jar, login.kind, method, url, body, headers)

    async def idp_initiated(self, jar: Jar, kind: str) -> None:
        connection = CONNECTION[kind]
        xml = saml_xml(audience=f"urn:auth0:globex-prod:{connection}")
        body = urlencode({"SAMLResponse": base64.b64encode(xml).decode()}).encode()
        url = f"{self.lb}/login/callback?connection={connection}"
        await self.follow(jar, kind, "POST", url, body, FORM)

    async def follow(
        self, jar: Jar, kind: str, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> None:
        workos = self.world.workos.origin
        for _ in range(MAX_HOPS):
            if url.startswith(workos):
                self.tally.workos_trips[kind] += 1
            status, location, text = await self.request(jar, method, url, body, headers)
            if status == 302 and "state=app-state" in location:
                return self.end(kind, "auth0")
            if status == 200 and "Signed in through WorkOS" in text:
                return self.end(kind, "workos")
            if status in (307, 308) and location:
                url = location  # method and body kept
                continue
            if status == 400 and "invalid state" in text:
                return self.end(kind, "error: Auth0 refused the state")
            return self.end(kind, f"error: {status} at {urlsplit(url).path}")
        return self.end(kind, "error: too many hops")

    def end(self, kind: str, where: str) -> None:
        self.tally.ended[(kind, where)] += 1
        if where in ("auth0", "workos") and where != EXPECTED[kind]:
            self.tally.wrong_side += 1


class LoginError(Exception):
    pass


# --- what the browsers do --------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """How much load: ``browsers`` running the mix; each either for ``duration`` seconds or
    ``logins`` logins; ``idp_wait``: the longest a user stays on the IdP's page (uniform 0..idp_wait)."""

    browsers: int = 12
    duration: float = 20.0
    logins: int | None = None  # per browser, instead of a duration
    idp_wait: float = 0.3
    tab_browsers: int = 4
    tab_rounds: int | None = None  # per tab browser, instead of the duration


async def one_login(browsers: Browsers, jar: Jar, kind: str, drop: bool, idp_wait: float) -> None:
    browsers.tally.started[kind] += 1
    try:
        if kind.startswith("idp-"):
            await asyncio.sleep(random.uniform(0, idp_wait))
            await browsers.idp_initiated(jar, kind)
            return
        login = await browsers.start(jar, kind)
        browsers.tally.most_logins_held = max(browsers.tally.most_logins_held, jar.logins())
        await asyncio.sleep(random.uniform(0, idp_wait))
        if drop:
            jar.clear()  # a fresh context before the callback
        await browsers.finish(jar, login)
    except LoginError as exc:
        browsers.end(kind, f"error: {exc}")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        browsers.end(kind, f"error: {type(exc).__name__}")


async def mix_browser(browsers: Browsers, load: Load, drop: bool, until: Callable[[int], bool]) -> None:
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    jar = Jar()
    done = 0
    while not until(done):
        await one_login(browsers, jar, random.choice(kinds), drop, load.idp_wait)
        done += 1


async def tab_browser(browsers: Browsers, load: Load, tabs: int, burst: bool, until: Callable[[int], bool]) -> None:
    """``tabs`` Auth0 logins started one after another (or at once), then answered oldest first."""
    rounds = 0
    while not until(rounds):
        jar = Jar()
        kinds = [("auth0-oidc", "auth0-saml")[i % 2] for i in range(tabs)]
        for kind in kinds:
            browsers.tally.started[kind] += 1
        try:
            if burst:
                started = list(await asyncio.gather(*(browsers.start(jar, kind) for kind in kinds)))
            else:
                started = [await browsers.start(jar, kind) for kind in kinds]
        except (TimeoutError, LoginError, aiohttp.ClientError, OSError) as exc:
            for kind in kinds:
                browsers.end(kind, f"error: start of a tab: {type(exc).__name__}")
            rounds += 1
            continue
        browsers.tally.most_logins_held = max(browsers.tally.most_logins_held, jar.logins())
        await asyncio.sleep(random.uniform(0, load.idp_wait))
        for login in started:
            try:
                await browsers.finish(jar, login)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                browsers.end(login.kind, f"error: {type(exc).__name__}")
        rounds += 1


# --- scenarios -------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    state_form: str
    seconds: float
    tally: Tally
    counted: dict[str, float]  # the replicas' counters over the scenario
    workos_received: int  # callbacks the WorkOS stand-in received over the scenario
    rolls: list[str] = field(default_factory=list)
    per_replica: dict[int, int] = field(default_factory=dict)  # connections the balancer sent each replica

    def as_json(self) -> dict[str, Any]:
        t = self.tally
        return {
            "scenario": self.scenario,
            "state_form": self.state_form,
            "seconds": round(self.seconds, 1),
            "started": dict(t.started),
            "ended": {f"{kind} -> {end}": n for (kind, end), n in sorted(t.ended.items())},
            "workos_round_trips_of_auth0_started": t.auth0_started_trips(),
            "workos_requests_by_kind": dict(t.workos_trips),
            "workos_callbacks_received": self.workos_received,
            "lost": t.lost(),
            "wrong_side": t.wrong_side,
            "most_login_cookies_held": t.most_logins_held,
            "longest_callback_cookie_header": t.longest_cookie_header,
            "counted": self.counted,
            "rolls": self.rolls,
            "connections_per_replica": self.per_replica,
        }


def diff(after: Counter[tuple[str, ...]], before: Counter[tuple[str, ...]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in sorted(after):
        grown = after[key] - before.get(key, 0.0)
        if grown:
            short = {
                "sso_proxy_callbacks_total": "callbacks",
                "sso_proxy_fallbacks_total": "fallbacks",
                "sso_proxy_witness_disagreements_total": "disagreements",
            }[key[0]]
            out[" ".join((short, *key[1:]))] = grown
    return out


async def rotate(world: World, steps: list[str], pause: float, ttl_wait: float, log: list[str]) -> None:
    """Restart the replicas pod by pod through ``steps`` (each a whole roll), ``pause`` seconds apart,
    and ``ttl_wait`` before the last step when it drops the old key."""
    for number, keys in enumerate(steps, start=1):
        if number == 3:
            await asyncio.sleep(ttl_wait)  # roll 3 only after one TTL
        for index in (1, 0):
            await asyncio.to_thread(world.restart, index, keys)
            log.append(f"{time.strftime('%H:%M:%S')} roll {number}: replica {index} signs {keys.split(',')[0][:3]}")
            await asyncio.sleep(pause)


async def run_scenario(world: World, scenario: str, load: Load) -> Result:
    tally = Tally()
    before = world.counters()
    workos_before = world.workos_callbacks()
    rolls: list[str] = []
    sent_before = Counter(world.balancer.per_replica)
    began = time.monotonic()
    rotation: asyncio.Task[None] | None = None
    if scenario.startswith("rotate-"):
        old = world.keys.split(",")[0]
        new = new_key("new")
        steps = [f"{old},{new}", f"{new},{old}", new] if scenario == "rotate-3roll" else [f"{new},{old}"]
        world.keys = steps[-1]
        # Each pod is restarted out of rotation; logins wait at the IdP up to idp_wait, so one TTL of
        # this harness is idp_wait plus the slowest hop: the TTL the replicas were given.
        ttl_wait = world.ttl + 1.0
        rotation = asyncio.create_task(rotate(world, steps, max(1.0, 2 * load.idp_wait), ttl_wait, rolls))

    def until_for(limit: int | None) -> Callable[[int], bool]:
        def until(done: int) -> bool:
            if rotation is not None:
                return rotation.done() and (limit is None or done >= limit)
            if limit is not None:
                return done >= limit
            return time.monotonic() - began >= load.duration

        return until

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout) as s:
        browsers = Browsers(world, s, tally)
        drop = scenario == "dropped"
        tasks: list[Awaitable[None]] = [
            mix_browser(browsers, load, drop, until_for(load.logins)) for _ in range(load.browsers)
        ]
        if scenario.startswith("tabs"):
            tabs = int(scenario[4:6])
            burst = scenario.endswith("-burst")
            tasks += [
                tab_browser(browsers, load, tabs, burst, until_for(load.tab_rounds)) for _ in range(load.tab_browsers)
            ]
        await asyncio.gather(*tasks)
        if rotation is not None:
            await rotation
    seconds = time.monotonic() - began
    counted = diff(world.counters(), before)
    per_replica = dict(sorted((Counter(world.balancer.per_replica) - sent_before).items()))
    received = world.workos_callbacks() - workos_before
    return Result(scenario, world.state_form, seconds, tally, counted, received, rolls, per_replica)


def run(
    scenarios: list[str], load: Load, state_form: str = "auth0", ttl: int = 10, tmp: Path | None = None
) -> list[Result]:
    """Every scenario in one world (the replicas restarted only by the rotation scenarios)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="login-mix-") as scratch:
        with running_world(tmp or Path(scratch), state_form, ttl) as world:
            return [asyncio.run(run_scenario(world, scenario, load)) for scenario in scenarios]


# --- report ----------------------------------------------------------------------------------------


def report(result: Result) -> str:
    t = result.tally
    lines = [
        f"== {result.scenario} (Auth0 stand-in state form: {result.state_form}; {result.seconds:.1f} s, "
        f"{sum(t.started.values())} logins, {sum(t.started.values()) / max(result.seconds, 0.001):.0f}/s)",
    ]
    for kind in sorted(t.started):
        ends = {end: n for (k, end), n in t.ended.items() if k == kind}
        shown = ", ".join(f"{end} {n}" for end, n in sorted(ends.items()))
        trips = t.workos_trips.get(kind, 0)
        lines.append(f"  {kind:<12} started {t.started[kind]:>5}  ended: {shown}  (WorkOS requests {trips})")
    lines.append(
        f"  WorkOS round trips of Auth0-started logins: {t.auth0_started_trips()}   "
        f"lost: {t.lost()}   ended at the wrong side: {t.wrong_side}"
    )
    lines.append(
        f"  WorkOS stand-in callbacks received: {result.workos_received}   most login cookies one browser held: "
        f"{t.most_logins_held}   longest Cookie header on a callback: {t.longest_cookie_header} bytes"
    )
    lines.append(f"  connections per replica (balancer): {result.per_replica}")
    for name, value in result.counted.items():
        lines.append(f"  {name}: {value:g}")
    lines.extend(f"  {roll}" for roll in result.rolls)
    return "\n".join(lines)


QUICK = Load(browsers=3, logins=6, idp_wait=0.05, tab_browsers=1, tab_rounds=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all")
    parser.add_argument("--state-form", choices=("auth0", "opaque"), default="auth0")
    parser.add_argument("-c", "--browsers", type=int, default=12, help="browsers running the mix")
    parser.add_argument("-d", "--duration", type=float, default=20.0, help="seconds per scenario")
    parser.add_argument("--tab-browsers", type=int, default=4, help="browsers opening tabs (tabs scenarios)")
    parser.add_argument("--idp-wait", type=float, default=0.3, help="longest wait at the IdP, seconds")
    parser.add_argument("--ttl", type=int, default=10, help="the replicas' SSO_PROXY_TRANSACTION_TTL, seconds")
    parser.add_argument("--quick", action="store_true", help="small counts, to check the harness runs")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    load = QUICK if args.quick else Load(args.browsers, args.duration, None, args.idp_wait, args.tab_browsers, None)
    ttl = 3 if args.quick else args.ttl
    results = run(args.scenario or list(SCENARIOS), load, args.state_form, ttl)
    for result in results:
        print(report(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_json() for r in results], indent=2) + "\n")
    lost = sum(r.tally.lost() for r in results)
    trips = sum(r.tally.auth0_started_trips() for r in results)
    print(f"total: lost {lost}, WorkOS round trips of Auth0-started logins {trips}")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
