"""Micro-benchmark: transaction binding on the request path (issue 10; target <= 10 µs each).

- the binding check per callback (``Binder.auth0_binding``): no cookie; a full cookie (8 logins in
  flight) whose entry matches the callback's ``state``; a full cookie that binds nothing (every tag
  compared); a full cookie and a SAML POST callback matched by RelayState;
- the check and the removal of the login cookie it used (the forward path's Set-Cookie);
- inspecting a passthrough response head (``PassthroughHook.head``): a 302 to Auth0's own page
  (relative, nothing bound), a 302 to an IdP (OIDC, bound: a login cookie of its own), a 302 with
  a SAML Redirect-binding AuthnRequest (inflate + root scan, bound), and a 200 JSON response (not
  a page). A bind reads the list of logins in flight (one other; or a full one, 8, so the oldest is
  dropped: three Set-Cookie headers), never their cookies (they ride only on /login/callback).

    python bench/micro_binding.py [--number N] [--repeat R]

Prints, in µs per call, the best of R rounds; a round times N calls of every case in turn (so a
slow spell of a shared machine costs every case one round, not one case all of its runs), by this
process's CPU time (``time.process_time``: time spent descheduled is not counted); the
HMAC-SHA256 count per call is printed beside it. Every case is checked for
the right answer first. A check is timed on a fresh ``Callback`` per call (its fields are read once
and kept on it) and printed net of making one, which the app does for the decision anyway.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
import timeit
import zlib
from typing import Any, Callable
from urllib.parse import urlencode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proxy.routing import txcookie
from proxy.routing.binding import AUTH0_PURPOSE, Binder, PassthroughHook
from proxy.routing.callback import Callback
from proxy.routing.logins import Login
from proxy.routing.txcookie import Keys
from proxy.sandbox.standin import authn_request

NOW = 1_800_000_000.0
HOST = [(b"host", b"login.globex.com"), (b"user-agent", b"Mozilla/5.0"), (b"accept", b"text/html")]


def request_with_cookie(binder: Binder, states: list[str]) -> list[tuple[bytes, bytes]]:
    """A callback's headers from a browser with a login cookie for each of ``states``."""
    pairs = []
    for state in states:
        set_cookie = binder.bind([], Login("oidc_state", (state, "_" + state)), NOW)[0]
        pairs.append(set_cookie.split(b";", 1)[0])
    return [*HOST, (b"cookie", b"; ".join([b"auth0=s%3Aabc.def", b"did=s%3Av0%3A123", *pairs]))]


Case = tuple[Callable[[], Any], Callable[[Any], bool], Callable[[], Any] | None]


def cases() -> dict[str, Case]:
    binder = Binder(Keys((b"k" * 32,)), 600)
    rotating = Binder(Keys((b"n" * 32, b"k" * 32)), 600)  # during a key rotation: two keys verify
    states = [f"state-{i:02d}-" + "x" * 24 for i in range(8)]
    full = request_with_cookie(binder, states)
    # A fresh Callback per call: a callback's fields are read once and kept on it, so a reused one
    # would time the cached reads. The figures printed are net of making the Callback (the app
    # makes it for the decision anyway), measured alone in the same run.
    oidc_query = b"code=4%2F0AX4XfWh&state=" + states[3].encode()
    other_query = b"code=abc&state=not-bound-" + b"y" * 24
    saml_body = b"SAMLResponse=" + b"PHNhbWw" * 1400 + b"&RelayState=" + states[5].encode()

    def oidc() -> Callback:
        return Callback(oidc_query)

    def other() -> Callback:
        return Callback(other_query)

    def saml() -> Callback:
        return Callback(b"", saml_body, True)

    callback = "https://login.globex.com/login/callback"
    idp = "https://idp.acme.com/authorize?" + urlencode(
        {
            "client_id": "0oa1b2c3",
            "response_type": "code",
            "redirect_uri": callback,
            "scope": "openid email",
            "state": "Fe26.2**" + "z" * 40,
            "nonce": "n" * 32,
        }
    )
    request = authn_request("_" + "a" * 32, callback, "urn:auth0:globex-prod:acme-okta")
    saml_redirect = "https://idp.acme.com/sso?" + urlencode(
        {"SAMLRequest": base64.b64encode(zlib.compress(request)[2:-4]).decode(), "RelayState": "r" * 40}
    )
    counted: list[str] = []

    # A response to /authorize: the request never carries the login cookies (Path=/login/callback),
    # only the list of logins in flight (Path=/): here a full one, so the oldest is dropped too.
    # The list as this service writes it: the ids and their tag (an unsigned list is no list).
    def signed(ids: bytes) -> bytes:
        return txcookie.list_cookie(b"__Host-sso_proxy_logins=", ids, 600, binder.keys, AUTH0_PURPOSE).split(b";")[0]

    listed = signed(b".".join(b"%011d" % n for n in range(8)))
    authorize = [*HOST, (b"cookie", b"auth0=s%3Aabc.def; did=s%3Av0%3A123; " + listed)]
    hook = PassthroughHook(binder, authorize, NOW, counted.append)
    one = [*HOST, (b"cookie", b"auth0=s%3Aabc.def; did=s%3Av0%3A123; " + signed(b"00000000000"))]
    first = PassthroughHook(binder, one, NOW, counted.append)  # one other login in flight
    relative = [(b"location", b"/u/login?state=abc"), (b"content-type", b"text/html")]
    to_idp = [(b"location", idp.encode()), (b"content-type", b"text/html")]
    to_saml = [(b"location", saml_redirect.encode())]
    json_ok = [(b"content-type", b"application/json"), (b"content-length", b"512")]

    return {
        "check: no cookie": (lambda: binder.auth0_binding(list(HOST), oidc(), NOW), lambda r: not r.bound, oidc),
        "check: 8 in flight, state bound": (lambda: binder.auth0_binding(full, oidc(), NOW), lambda r: r.bound, oidc),
        "check: 8 in flight, not bound": (
            lambda: binder.auth0_binding(full, other(), NOW),
            lambda r: not r.bound,
            other,
        ),
        "check: 8 in flight, SAML RelayState": (
            lambda: binder.auth0_binding(full, saml(), NOW),
            lambda r: r.bound,
            saml,
        ),
        "check: 8 in flight, bound, 2 keys": (
            lambda: rotating.auth0_binding(full, oidc(), NOW),
            lambda r: r.bound,
            oidc,
        ),
        "check and removal Set-Cookie (forward path)": (
            lambda: binder.used_cookie(binder.auth0_binding(full, oidc(), NOW)),
            lambda r: r is not None,
            oidc,
        ),
        "head: 302 relative (Auth0 page)": (lambda: hook.head(302, relative), lambda r: r == ([], 0), None),
        "head: 302 to an OIDC IdP (bind, 1 other in flight)": (
            lambda: first.head(302, to_idp),
            lambda r: len(r[0]) == 2,
            None,
        ),
        "head: 302 to an OIDC IdP (bind, 8 in flight: oldest dropped)": (
            lambda: hook.head(302, to_idp),
            lambda r: len(r[0]) == 3,
            None,
        ),
        "head: 302 SAML Redirect (bind, 8 in flight)": (
            lambda: hook.head(302, to_saml),
            lambda r: len(r[0]) == 3,
            None,
        ),
        "head: 200 JSON (untouched)": (lambda: hook.head(200, json_ok), lambda r: r == ([], 0), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=2000, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=30, help="rounds; each times every case once")
    args = parser.parse_args()
    all_cases = cases()
    real_finish = txcookie._finish
    hmacs: dict[str, int] = {}
    for name, (call, check, _) in all_cases.items():
        assert check(call()), name
        calls = [0]

        def counting(inner: Any, outer: Any, data: bytes, _calls: list[int] = calls) -> bytes:
            _calls[0] += 1
            return real_finish(inner, outer, data)

        txcookie._finish = counting
        call()
        txcookie._finish = real_finish
        hmacs[name] = calls[0]

    # Rounds, each timing every case (and the Callback it makes) once, keeping each one's best: on
    # a shared machine a slow spell then costs one round of every case, not all of one case's.
    timed: dict[str, Callable[[], Any]] = {"(a Python no-op call, for scale)": lambda: None}
    for name, (call, _, made) in all_cases.items():
        timed[name] = call
        if made is not None:
            timed["made: " + name] = made
    best = dict.fromkeys(timed, float("inf"))
    for _ in range(args.repeat):
        for name, call in timed.items():
            seconds = timeit.timeit(call, number=args.number, timer=time.process_time)
            best[name] = min(best[name], seconds / args.number * 1e6)
    print(f"{'(a Python no-op call, for scale)':48s} {best['(a Python no-op call, for scale)']:7.2f} µs")
    for name in all_cases:
        net = best[name] - best.get("made: " + name, 0.0)
        print(f"{name:48s} {net:7.2f} µs  ({hmacs[name]} HMAC)")


if __name__ == "__main__":
    main()
