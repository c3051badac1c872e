"""The ``sso-proxy`` commands: serve, routes import/validate/set, explain, sandbox."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Sequence, TextIO
from urllib.parse import quote, urlsplit

from proxy import __version__
from proxy.config import add_flags, load_settings
from proxy.errors import ConfigError, RouteMapError


def _run(coro: object) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        runner = asyncio.Runner()
    with runner:
        runner.run(coro)  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.logs import setup_logging
    from proxy.metrics import Metrics
    from proxy.reload import RouteStore
    from proxy.server import serve

    try:
        settings = load_settings(os.environ, vars(args))
    except ConfigError as exc:
        print(f"sso-proxy: {exc}", file=sys.stderr)
        return 2
    logger = setup_logging(settings.log_level)
    metrics = Metrics()
    require = None
    if settings.auth0_off:
        from proxy.retired import map_errors

        require = map_errors
        metrics.auth0_off.set(1)
    store = RouteStore(settings.routes, settings.workos_domain, metrics, logger, require)
    try:
        store.load_initial()
    except RouteMapError as exc:
        print(f"sso-proxy: route map {exc.source} is invalid; not starting:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    _run(serve(settings, store, metrics, logger))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from proxy.routemap import ambiguity_warnings, load_routemap

    workos_domain = os.environ.get("WORKOS_CUSTOM_DOMAIN") or None
    try:
        route_map = load_routemap(args.path, workos_domain)
    except RouteMapError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{args.path}: invalid ({len(exc.errors)} error(s))", file=sys.stderr)
        return 1
    for warning in ambiguity_warnings(route_map):
        print(f"{args.path}: warning: {warning}", file=sys.stderr)
    counts = ", ".join(f"{n} {s}" for s, n in route_map.counts_by_state().items())
    print(
        f"{args.path}: valid; {len(route_map.connections)} connections ({counts}); mode {route_map.mode}, "
        f"unknown -> {route_map.unknown}; sha256 {route_map.sha256}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from proxy.export import run_import

    return run_import(
        args.export_dir,
        args.output,
        sys.stdout,
        sys.stderr,
        os.environ.get("WORKOS_CUSTOM_DOMAIN") or None,
        prune=args.prune,
        custom_domain=args.custom_domain,
    )


def _routes_path(args: argparse.Namespace) -> str:
    return str(args.routes or os.environ.get("SSO_PROXY_ROUTES") or "routes.yaml")


def cmd_set(args: argparse.Namespace) -> int:
    from proxy.edit import run_set
    from proxy.routemap import STATES

    *names, state = args.targets
    if state not in STATES:
        print(f"sso-proxy routes set: the last argument is the state, one of {', '.join(STATES)}", file=sys.stderr)
        return 2
    if bool(names) == (args.organization is not None):
        print("sso-proxy routes set: give connection names or --organization ORG, not both", file=sys.stderr)
        return 2
    return run_set(
        _routes_path(args),
        names,
        state,
        sys.stdout,
        sys.stderr,
        os.environ.get("WORKOS_CUSTOM_DOMAIN") or None,
        organization=args.organization,
        dry_run=args.dry_run,
        by=args.by,
    )


def cmd_default(args: argparse.Namespace) -> int:
    from proxy.edit import run_default

    return run_default(
        _routes_path(args),
        args.routes_command,
        args.value,
        sys.stdout,
        sys.stderr,
        os.environ.get("WORKOS_CUSTOM_DOMAIN") or None,
        dry_run=args.dry_run,
        by=args.by,
    )


def cmd_report(args: argparse.Namespace) -> int:
    import time

    from proxy.progress import fetch_progress, render_report, report_rows

    snapshots = []
    since: list[str] = []
    for admin in args.admin or ["http://127.0.0.1:9090"]:
        try:
            progress, started = fetch_progress(admin)
        except ValueError as exc:
            print(f"sso-proxy routes report: {exc}", file=sys.stderr)
            return 1
        snapshots.append(progress)
        since.extend([started] if started else [])
    rows = report_rows(snapshots)
    sys.stdout.write(render_report(rows, time.time(), max(since) if since else None))
    return 0


def parse_raw_request(data: bytes) -> tuple[str, str, bytes, bool]:
    """A saved raw HTTP/1.1 request -> (method, target, body, is_form); the body is kept byte for byte."""
    cut = min((i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0), default=len(data))
    head = data[:cut]
    body = data[cut:].removeprefix(b"\r\n\r\n" if data[cut : cut + 4] == b"\r\n\r\n" else b"\n\n")
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    method, target = ([*lines[0].split(" "), "", ""])[:2]
    form = any(
        line.lower().startswith("content-type:") and "x-www-form-urlencoded" in line.lower() for line in lines[1:]
    )
    return method.upper(), target, body.rstrip(b"\r\n") if form else body, form


def explain(route_map_path: str, url: str, body: bytes, form: bool, out: TextIO, method: str = "POST") -> int:
    """Print the decision the server would make for this callback, and why."""
    from proxy.app import CALLBACK_PATHS
    from proxy.callback import Callback
    from proxy.decide import decide
    from proxy.routemap import load_routemap

    workos_domain = os.environ.get("WORKOS_CUSTOM_DOMAIN") or None
    try:
        route_map = load_routemap(route_map_path, workos_domain)
    except RouteMapError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 1
    parts = urlsplit(url)
    if parts.path not in CALLBACK_PATHS or method not in ("GET", "POST"):
        out.write(
            f"{method} {parts.path or '/'} is not a GET or POST to /login/callback: passed through to Auth0 unchanged\n"
        )
        return 0
    # As a browser sends it: anything outside URL characters percent-encoded as UTF-8.
    query = quote(parts.query, safe="&=%+;/:?@!$'()*,~").encode("ascii")
    decision = decide(Callback(query, body, form), route_map)
    identity = decision.identity
    conn = route_map.connections.get(identity.connection) if identity.connection else None
    out.write(
        f"route map:      {route_map_path} (sha256 {route_map.sha256[:12]}, mode {route_map.mode}, "
        f"unknown -> {route_map.unknown})\n"
    )
    out.write(f"protocol:       {decision.protocol}\n")
    out.write(
        f"connection:     {identity.connection or '(unknown)'}" + (f" (state {conn.state})" if conn else "") + "\n"
    )
    out.write(
        f"identified by:  {identity.identified_by}"
        + (f" = {identity.hint}" if identity.hint else "")
        + (" (SAMLResponse/id_token present but unreadable)" if identity.unparseable else "")
        + "\n"
    )
    out.write(f"decision:       {decision.action}\n")
    out.write(
        f"reason:         {decision.reason}"
        + (f" (normal mode would send it to {decision.would})" if decision.would else "")
        + "\n"
    )
    if decision.action == "workos":
        if os.environ.get("WORKOS_CUSTOM_DOMAIN") and os.environ.get("WORKOS_CLIENT_ID"):
            from proxy.app import workos_target

            settings = load_settings({"AUTH0_FALLBACK_ORIGIN": "https://auth0.invalid", **os.environ})
            out.write(f"target:         307 {workos_target(settings, conn, query)}\n")
        else:
            out.write(
                "target:         307 to the WorkOS callback (set WORKOS_CUSTOM_DOMAIN and WORKOS_CLIENT_ID "
                "to see the URL)\n"
            )
    else:
        out.write(
            "target:         forwarded to AUTH0_FALLBACK_ORIGIN"
            + (" with fallback removed" if decision.reason == "fallback" else "")
            + "\n"
        )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    route_map_path = args.routes or os.environ.get("SSO_PROXY_ROUTES") or "routes.yaml"
    url = args.url or ""
    body = b""
    form = True
    method = ""
    if args.request:
        with open(args.request, "rb") as fh:
            method, target, body, form = parse_raw_request(fh.read())
        url = url or target
    elif args.data_file:
        with open(args.data_file, "rb") as fh:
            body = fh.read().strip()
    elif args.data is not None:
        body = args.data.encode()
    if not url:
        print("sso-proxy explain: give a callback URL or --request FILE", file=sys.stderr)
        return 2
    method = (args.method or method or ("POST" if body else "GET")).upper()
    return explain(route_map_path, url, body, form, sys.stdout, method)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from proxy.sandbox import run_sandbox

    migrated = tuple(m.strip() for m in args.migrated.split(",") if m.strip())
    try:
        _run(
            run_sandbox(
                args.routes,
                args.host,
                args.port,
                args.admin_port,
                args.auth0_port,
                args.workos_port,
                migrated,
                sys.stdout,
            )
        )
    except (ConfigError, RouteMapError) as exc:
        print(f"sso-proxy sandbox: {exc}", file=sys.stderr)
        return 2
    return 0


def _edit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--routes", default=None, help="route map file (env SSO_PROXY_ROUTES, default routes.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="print the diff and the audit line; write nothing")
    parser.add_argument("--by", metavar="WHO", help="who makes the change, for the audit line (default $USER)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sso-proxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sso-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    add_flags(serve)
    serve.set_defaults(func=cmd_serve)

    routes = commands.add_parser("routes", help="build, check and change the route map")
    routes_cmds = routes.add_subparsers(dest="routes_command", required=True)
    imp = routes_cmds.add_parser("import", help="build a route map from an SSO export package")
    imp.add_argument("export_dir", help="the package root or its sso/ folder")
    imp.add_argument("-o", "--output", default="routes.yaml", help="where to write it; - for stdout")
    imp.add_argument(
        "--prune",
        action="store_true",
        help="drop connections of the existing map that are not in this export (default: keep and list them)",
    )
    imp.add_argument(
        "--custom-domain",
        metavar="HOST",
        help="the Auth0 custom domain this proxy serves: connections whose recorded callback URLs are not on "
        "it are marked reachability: unconfirmed (their IdP may post to Auth0 directly)",
    )
    imp.set_defaults(func=cmd_import)
    val = routes_cmds.add_parser("validate", help="exit 0 when the route map is valid")
    val.add_argument("path")
    val.set_defaults(func=cmd_validate)
    set_ = routes_cmds.add_parser(
        "set",
        help="change connections' state in place, atomically",
        description="Set the state of the named connections (or of every connection of an organization), "
        "keeping comments and order; validated, written atomically; prints one audit line.",
    )
    set_.add_argument(
        "targets", nargs="+", metavar="CONN [CONN ...] STATE", help="connection names, then legacy|workos"
    )
    set_.add_argument("--organization", metavar="ORG", help="every connection whose organization is ORG")
    _edit_flags(set_)
    set_.set_defaults(func=cmd_set)
    for key, choices, what in (
        ("mode", ("normal", "auth0", "shadow"), "defaults.mode: normal, auth0 (kill switch), shadow"),
        ("unknown", ("workos", "auth0"), "defaults.unknown: where unidentified callbacks go"),
    ):
        default = routes_cmds.add_parser(key, help=f"set {what}")
        default.add_argument("value", choices=choices)
        _edit_flags(default)
        default.set_defaults(func=cmd_default)

    rep = routes_cmds.add_parser(
        "report",
        help="which connections are done, which still see Auth0 traffic, which were never seen",
        description="Reads GET /routes of running proxies (one --admin per replica; counts are summed) and "
        "prints each connection's state, last callback, callbacks by decision, fallbacks and reachability.",
    )
    rep.add_argument(
        "--admin",
        action="append",
        default=None,
        metavar="URL",
        help="operations listener URL (default http://127.0.0.1:9090; repeat for each replica)",
    )
    rep.set_defaults(func=cmd_report)

    exp = commands.add_parser("explain", help="print the decision for a callback, sending nothing")
    exp.add_argument("url", nargs="?", help="the callback URL, e.g. 'https://login.example.com/login/callback?...'")
    exp.add_argument("--data", "-d", help="the form body (application/x-www-form-urlencoded)")
    exp.add_argument("--data-file", help="a file holding the form body")
    exp.add_argument("--request", help="a file holding a saved raw HTTP request")
    exp.add_argument("--method", "-X", help="the request method (default POST with a body, else GET)")
    exp.add_argument("--routes", default=None, help="route map file (env SSO_PROXY_ROUTES, default routes.yaml)")
    exp.set_defaults(func=cmd_explain)

    sandbox = commands.add_parser("sandbox", help="the proxy plus local stand-ins for Auth0 and WorkOS")
    sandbox.add_argument("--routes", default="routes.yaml")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8080)
    sandbox.add_argument("--admin-port", type=int, default=9090)
    sandbox.add_argument("--auth0-port", type=int, default=8081)
    sandbox.add_argument("--workos-port", type=int, default=8082)
    sandbox.add_argument(
        "--migrated",
        default="acme-okta,initech-entra",
        help="connections the WorkOS stand-in knows (others are sent back with fallback=auth0)",
    )
    sandbox.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
