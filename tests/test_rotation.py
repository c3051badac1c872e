"""Rotating ``SSO_PROXY_TRANSACTION_KEYS`` in three rolls through two real replicas (issue 22).

1. add the new key second everywhere (it only verifies); 2. make it first (it signs); 3. drop the
old one (after one TTL). Pod by pod, as a Deployment rolls, with Auth0-started logins bound on one
replica and coming back through the other, and logins in flight across each restart: not one may
take a WorkOS round trip. The one-step rotation the docs used to give (new key first at once) is
shown to detour, which is why the rolls are three.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import ProxyProcess, StandIns, start_proxy

OLD, NEW = "old-key-" + "o" * 32, "new-key-" + "n" * 32
ROLLS = [OLD, f"{OLD},{NEW}", f"{NEW},{OLD}", NEW]


def restart(proc: ProxyProcess, keys: str) -> ProxyProcess:
    """The same pod address with the next roll's Secret."""
    proc.stop()
    env = {**proc.env, "SSO_PROXY_TRANSACTION_KEYS": keys}
    return ProxyProcess(env=env, args=proc.args, port=proc.port, admin_port=proc.admin_port).start()


def begin(proxy: ProxyProcess) -> tuple[str, str]:
    """An Auth0-started OIDC login through ``proxy``: (its state, the binding cookie)."""
    started = httpx.get(f"{proxy.url}/authorize?client_id=app&connection=initech-entra", timeout=10)
    assert started.status_code == 302, started.text
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    cookie = next(v for v in started.headers.get_list("set-cookie") if v.startswith("sso_proxy_tx_"))
    return state, cookie.split(";", 1)[0]


def finish(proxy: ProxyProcess, login: tuple[str, str]) -> int:
    state, cookie = login
    back = httpx.get(f"{proxy.url}/login/callback?code=c&state={state}", headers={"cookie": cookie}, timeout=10)
    return back.status_code


@pytest.fixture()
def pair(standins: StandIns, routes_file: Path) -> Iterator[list[ProxyProcess]]:
    procs = [start_proxy(standins, routes_file, SSO_PROXY_TRANSACTION_KEYS=ROLLS[0]) for _ in range(2)]
    yield procs
    for proc in procs:
        proc.stop()


def test_three_rolls_take_no_login_through_workos(pair: list[ProxyProcess], standins: StandIns) -> None:
    standins.clear()
    finished = 0
    for keys in ROLLS[1:]:
        for i in (1, 0):  # pod by pod: b, then a
            # Logins in flight across this pod's restart, started on either replica.
            in_flight = [begin(pair[0]), begin(pair[1])]
            pair[i] = restart(pair[i], keys)
            for login, proxy in zip(in_flight, (pair[1], pair[0]), strict=True):
                assert finish(proxy, login) == 302  # to the app, through Auth0
                finished += 1
            # Mid-roll (one pod on the new Secret, one on the old) and after: every pairing.
            for start_on in pair:
                for end_on in pair:
                    assert finish(end_on, begin(start_on)) == 302
                    finished += 1
    assert finished == 3 * 2 * (2 + 4)
    assert standins.received("workos") == []  # not one WorkOS round trip
    callbacks = sum(
        value
        for proc in pair
        for (name, labels), value in proc.scrape().items()
        if name == "sso_proxy_callbacks_total" and ("reason", "auth0_transaction") in labels
    )
    assert callbacks >= 4  # the last roll's pairings, on the replicas as they run now


def test_the_one_step_rotation_detours(pair: list[ProxyProcess], standins: StandIns) -> None:
    """The new key first at once: a login the restarted pod binds fails on a pod not yet restarted."""
    standins.clear()
    pair[1] = restart(pair[1], f"{NEW},{OLD}")
    assert finish(pair[0], begin(pair[1])) == 307  # unbound on a: to WorkOS and back, a detour


def test_the_keys_are_announced_by_id_never_by_value(pair: list[ProxyProcess], standins: StandIns) -> None:
    import json

    from proxy.routing.txcookie import key_id

    pair[1] = restart(pair[1], f"{NEW},{OLD}")
    line = next(json.loads(x) for x in pair[1].log_lines if '"msg":"transaction keys"' in x)
    assert (line["signs"], line["verifies"]) == (key_id(NEW.encode()), [key_id(NEW.encode()), key_id(OLD.encode())])
    assert not any(NEW in x or OLD in x for x in pair[1].log_lines)
    samples = pair[1].scrape()
    ids = f"{key_id(NEW.encode())},{key_id(OLD.encode())}"
    assert samples[("sso_proxy_transaction_keys_info", (("signs", key_id(NEW.encode())), ("verifies", ids)))] == 1


def test_a_random_key_is_warned_about(standins: StandIns, routes_file: Path) -> None:
    proc = start_proxy(standins, routes_file)
    try:
        assert any('"level":"warning"' in x and "SSO_PROXY_TRANSACTION_KEYS not set" in x for x in proc.log_lines)
    finally:
        proc.stop()
