"""Watch the end-to-end flows hop by hop: ``python -m tests.e2e.watch [--mode form] [--keep]``.

Starts the same world the suite uses (IdPs, stand-ins, the real proxy), drives Chromium through
each flow once and prints every hop the browser made, what the receiving end got, whether the SAML
signature still verifies there, and the decision the proxy counted. Each flow starts where a real
login starts (the app at Auth0 or at WorkOS, or the IdP), because the stand-ins, like the services,
refuse a state they never issued. Exits 1, with the whole reason, when a flow does not end where it
should. ``--keep`` leaves everything running and prints the URLs to open in your own Chromium (with
the printed host mapping). Needs `make test`'s environment (Chromium, the e2e packages).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from .browser import ARGS, launch, travel
from .flows import Start, check_saml_arrived, idp_initiated, sp_initiated
from .servers import StandIn
from .world import ACME, HOOLI, INITECH, UMBRELLA, UMBRELLA_EXTRA, UNMAPPED_OIDC, Idps, Stack, counted, running_world


def _flows(idps: Idps, stack: Stack) -> list[tuple[str, Callable[[], Start | str], str]]:
    app = f"{stack.app_origin}/callback"
    at_auth0 = {"client_id": "globex-web", "response_type": "code", "connection": UNMAPPED_OIDC}
    return [
        ("1. cut-over SAML (IdP-initiated) -> WorkOS", lambda: idp_initiated(idps, stack, ACME, "both"), "workos"),
        (
            "1b. cut-over SAML (SP-initiated: the app started it at WorkOS) -> WorkOS",
            lambda: sp_initiated(idps, stack, ACME, "both", at="workos"),
            "workos",
        ),
        ("2. legacy SAML -> Auth0", lambda: idp_initiated(idps, stack, INITECH, "both"), app),
        (
            "3. cut-over, unknown to WorkOS -> fallback=auth0 -> Auth0",
            lambda: idp_initiated(idps, stack, UMBRELLA, "response", UMBRELLA_EXTRA),
            app,
        ),
        (
            "6a. OIDC form_post id_token (the app started it at WorkOS) -> WorkOS",
            lambda: f"{stack.workos_origin}/sso/authorize?connection={HOOLI}",
            "workos",
        ),
        (
            "6b. OIDC code+state (Auth0 started it; no connection named) -> default -> fallback -> Auth0",
            lambda: f"{stack.login}/authorize?{urlencode(at_auth0)}",
            app,
        ),
    ]


def _print_received(name: str, server: StandIn, idps: Idps, start: Start | str) -> None:
    for got in server.requests():
        print(f"     {name} received {got.method} {got.path}?{got.query} ({len(got.body)} body bytes)")
        if (isinstance(start, Start) and got.path == "/login/callback") or "/sso/" in got.path:
            if isinstance(start, Start):
                try:
                    check_saml_arrived(got, idps, start)
                    print("       SAML signature verifies, SAMLResponse and RelayState unchanged")
                except Exception as exc:
                    print(f"       SAML check FAILED: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.watch", description=__doc__)
    parser.add_argument("--mode", choices=["307", "form"], default="307", help="the proxy's redirect mode")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl+C")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sso-proxy-watch-") as tmp, running_world(Path(tmp)) as world:
        stack, idps = world.stacks[args.mode], world.idps
        print(f"proxy ({args.mode} mode)  {stack.login}   ops http://127.0.0.1:{stack.proxy.admin_port}/metrics")
        print(f"WorkOS stand-in      {stack.workos_origin}")
        print(f"Auth0 stand-in       {stack.auth0.origin}")
        print(f"IdP                  {idps.origin}   app {stack.app_origin}")
        print(f"proxy log            {stack.proxy.log}\n")
        flows = _flows(idps, stack)
        stopped = []
        with launch(Path(tmp) / "profile") as context:
            for title, make_start, until in flows:
                stack.clear()
                start = make_start()
                url = start.url if isinstance(start, Start) else start
                before = stack.proxy.callbacks()
                print(title)
                try:
                    trip = travel(context, url, stack.workos_callback if until == "workos" else until)
                except AssertionError as exc:
                    print(f"   STOPPED: {exc}\n")
                    stopped.append(title)
                    continue
                for hop in trip.hops:
                    print(f"   {hop.method:4} {hop.status} {hop.url[:150]}")
                _print_received("WorkOS", stack.workos, idps, start)
                _print_received("Auth0", stack.auth0, idps, start)
                for labels, delta in counted(before, stack.proxy.callbacks()).items():
                    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
                    print(f"   sso_proxy_callbacks_total{{{shown}}} +{delta:g}")
                print()
        if args.keep:
            print("Open these in a Chromium started with:")
            print(f"  chromium '{next(a for a in ARGS if a.startswith('--host-resolver-rules'))}'")
            for title, make_start, _ in flows:
                start = make_start()
                print(f"  {title}\n    {start.url if isinstance(start, Start) else start}")
            print("\nCtrl+C stops everything.")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
    if stopped:
        print(f"{len(stopped)} of {len(flows)} flows did not end where they should: {'; '.join(stopped)}")
        return 1
    print(f"all {len(flows)} flows ended where they should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
