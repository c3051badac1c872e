"""The ``sso-proxy`` commands: serve, routes (import, validate, set, mode, unknown, report, check, check-fleet),
explain, sandbox."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any, Sequence

from proxy import __version__
from proxy.config import add_flags, load_settings, unknown_env_warnings
from proxy.errors import ConfigError, InputError, RouteMapError, StartupError


def _run(coro: object) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        runner = asyncio.Runner()
    with runner:
        runner.run(coro)  # type: ignore[arg-type]


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.edge.startup import StartupSignals

    # First, before the heavy imports and the route map load: a SIGHUP now must not kill the process.
    early = StartupSignals().install()
    try:
        settings = load_settings(os.environ, vars(args))
    except ConfigError as exc:
        print(f"sso-proxy: {exc}", file=sys.stderr)
        early.restore()
        return 2
    from proxy.heap import map_large_blocks
    from proxy.logs import log_event, setup_logging
    from proxy.metrics import Metrics
    from proxy.reload import RouteStore
    from proxy.server import serve

    logger = setup_logging(settings.log_level)
    for warning in unknown_env_warnings(os.environ):
        log_event(logger, logging.WARNING, warning)
    metrics = Metrics()
    _announce_keys(settings.transaction_keys, bool(os.environ.get("SSO_PROXY_TRANSACTION_KEYS", "").strip()), metrics)
    require = None
    if settings.auth0_off:
        from proxy.retired import map_errors

        require = map_errors
        metrics.auth0_off.set(1)
    store = RouteStore(
        settings.routes, settings.workos_domain, metrics, logger, require=require, settle=settings.reload_settle
    )
    map_large_blocks()  # before the first map: a replaced map's buffers go back to the system whole
    try:
        store.load_initial()
    except RouteMapError as exc:
        why = "cannot be served with Auth0 switched off" if settings.auth0_off else "is invalid"
        print(f"sso-proxy: route map {exc.source} {why}; not starting:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        early.restore()
        return 2
    if settings.auth0_off:
        log_event(
            logger,
            logging.WARNING,
            "Auth0 switched off (SSO_PROXY_AUTH0_OFF=true): every callback goes to WorkOS, nothing is forwarded",
            retired_url=settings.retired_url or None,
        )
    try:
        _run(serve(settings, store, metrics, logger, early))
    except StartupError as exc:
        print(f"sso-proxy: {exc}", file=sys.stderr)
        return 1
    return 0


def _announce_keys(keys: tuple[bytes, ...], shared: bool, metrics: Any) -> None:
    """Which key signs and which verify, by public id: a metric for the fleet check, and a start line.
    Whether a peer can verify this replica's signing key is not known here; `routes check-fleet` knows."""
    from proxy.logs import get_logger, log_event
    from proxy.routing.txcookie import key_id

    ids = [key_id(key) for key in keys]
    metrics.transaction_keys.labels(ids[0], ",".join(ids)).set(1)
    if shared:
        log_event(get_logger(), logging.INFO, "transaction keys", signs=ids[0], verifies=ids)
    else:
        log_event(
            get_logger(),
            logging.WARNING,
            "SSO_PROXY_TRANSACTION_KEYS not set: this process binds logins with a random key of its own, which no "
            "other replica can verify (their callbacks follow the route map there)",
            signs=ids[0],
        )


def cmd_validate(args: argparse.Namespace) -> int:
    from proxy.routing.routemap import WSFED_STRATEGIES, ambiguity_warnings, cutover_warnings, load_routemap

    workos_domain = os.environ.get("WORKOS_CUSTOM_DOMAIN") or None
    try:
        route_map = load_routemap(args.path, workos_domain)
    except RouteMapError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{args.path}: invalid ({len(exc.errors)} error(s))", file=sys.stderr)
        return 1
    for warning in ambiguity_warnings(route_map) + cutover_warnings(route_map):
        print(f"{args.path}: warning: {warning}", file=sys.stderr)
    for name, conn in sorted(route_map.connections.items()):
        if conn.strategy in WSFED_STRATEGIES:  # cannot move until the customer moved to SAML
            moved = "moved_to_saml: true (may move)" if conn.moved_to_saml else "not moved to SAML (stays legacy)"
            print(f"{args.path}: {name}: {conn.strategy}, WS-Federation; {moved}")
    counts = ", ".join(f"{n} {s}" for s, n in route_map.counts_by_state().items())
    print(
        f"{args.path}: valid; {len(route_map.connections)} connections ({counts}); mode {route_map.mode}, "
        f"unknown -> {route_map.unknown}; sha256 {route_map.sha256}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from proxy.migrate.export import run_import

    return run_import(
        args.export_dir,
        args.output,
        sys.stdout,
        sys.stderr,
        os.environ.get("WORKOS_CUSTOM_DOMAIN") or None,
        prune=args.prune,
        custom_domain=args.custom_domain,
        workos_mapping=args.workos_mapping,
    )


def _routes_path(args: argparse.Namespace) -> str:
    return str(args.routes or os.environ.get("SSO_PROXY_ROUTES") or "routes.yaml")


def cmd_set(args: argparse.Namespace) -> int:
    from proxy.migrate.edit import run_set
    from proxy.routing.routemap import STATES

    *names, state = args.targets
    if state not in STATES:
        print(f"sso-proxy routes set: the last argument is the state, one of {', '.join(STATES)}", file=sys.stderr)
        return 2
    if bool(names) == bool(args.organization):
        print("sso-proxy routes set: give connection names or --organization ORG, not both", file=sys.stderr)
        return 2
    gate = None
    # Shadow is the step before workos: WorkOS must have the connection active for either.
    if state in ("workos", "shadow") and os.environ.get("WORKOS_API_KEY"):
        gate = _workos_gate(force=args.force)
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
        gate=gate,
        force=args.force,
    )


def _workos_gate(force: bool) -> Any:
    """With WORKOS_API_KEY set: refuse to cut over a connection WorkOS does not have active (unless --force)."""
    from proxy.migrate.edit import Change
    from proxy.migrate.workos_api import WorkosApi, WorkosApiError, readiness, refusals
    from proxy.routing.routemap import RouteMap

    def gate(route_map: RouteMap, changes: list[Change]) -> list[str]:
        names = [c.section for c in changes if c.after in ("workos", "shadow")]
        if not names:
            return []
        try:
            api = WorkosApi(os.environ.get("WORKOS_API_KEY", ""), os.environ.get("WORKOS_BASE_URL") or None)
            found = {}
            for name in names:
                wid = route_map.connections[name].workos_connection_id
                remote = api.get_connection(wid) if wid else None
                if remote is not None:
                    found[remote.id] = remote
        except WorkosApiError as exc:
            problems = [f"cannot check WorkOS: {exc}" + ("" if force else "; use --force to set it anyway")]
        else:
            problems = refusals(readiness(route_map, found), names)
        if force and problems:
            for problem in problems:
                print(f"warning (--force): {problem.removesuffix('; use --force to set it anyway')}", file=sys.stderr)
            return []
        return problems

    return gate


def cmd_check(args: argparse.Namespace) -> int:
    from proxy.migrate.workos_api import WorkosApi, WorkosApiError, readiness, render_readiness
    from proxy.routing.routemap import load_routemap

    path = _routes_path(args)
    try:
        route_map = load_routemap(path, os.environ.get("WORKOS_CUSTOM_DOMAIN") or None)
    except RouteMapError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 1
    try:
        api = WorkosApi(os.environ.get("WORKOS_API_KEY", ""), os.environ.get("WORKOS_BASE_URL") or None)
        found = {conn.id: conn for conn in api.list_connections()}
    except WorkosApiError as exc:
        print(f"sso-proxy routes check: {exc}", file=sys.stderr)
        return 1
    rows = readiness(route_map, found)
    sys.stdout.write(render_readiness(rows))
    return 0 if all(r.ready for r in rows if r.state in ("workos", "shadow")) else 3


def cmd_default(args: argparse.Namespace) -> int:
    from proxy.migrate.edit import run_default

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
    if args.prometheus and args.admin:
        print("sso-proxy routes report: give --prometheus or --admin, not both", file=sys.stderr)
        return 2
    if args.prometheus:
        from proxy.migrate.fleet import run_prometheus_report

        return run_prometheus_report(args.prometheus, args.routes, args.format)
    from proxy.migrate.report import run_admin_report

    return run_admin_report(args.admin or ["http://127.0.0.1:9090"], args.format)


def cmd_check_fleet(args: argparse.Namespace) -> int:
    """Every replica serves the map (by sha256): the runbook's gate before switching an application's flag."""
    from proxy.migrate.fleet import run_check_fleet

    if bool(args.prometheus) == bool(args.admin):
        print("sso-proxy routes check-fleet: give --prometheus URL or --admin URL ...", file=sys.stderr)
        return 2
    return run_check_fleet(args.prometheus, args.admin, args.sha256, _routes_path(args))


def cmd_explain(args: argparse.Namespace) -> int:
    from proxy.migrate.explain import (
        EXIT_INPUT,
        data_urlencode,
        explain,
        parse_raw_request,
        raw_request_cookies,
        read_input,
    )

    route_map_path = args.routes or os.environ.get("SSO_PROXY_ROUTES") or "routes.yaml"
    url = args.url or ""
    body = b""
    form = True
    method = ""
    cookie = args.cookie or ""
    try:
        if args.request:
            if args.data_parts or args.data_file:
                raise InputError("--request holds the whole request: give no -d, --data-urlencode or --data-file")
            saved = read_input(args.request, "--request")
            method, target, body, form = parse_raw_request(saved, args.request)
            url = url or target
            cookie = cookie or raw_request_cookies(saved)
        elif args.data_file:
            if args.data_parts:
                raise InputError("--data-file holds the whole body: give no -d or --data-urlencode with it")
            body = read_input(args.data_file, "--data-file").strip()
        if args.data_parts:
            body = b"&".join(
                data_urlencode(value, lambda path: read_input(path, "--data-urlencode"))
                if kind == "urlencode"
                else value.encode()
                for kind, value in args.data_parts
            )
    except InputError as exc:
        print(f"sso-proxy explain: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if not url:
        print("sso-proxy explain: give a callback URL or --request FILE", file=sys.stderr)
        return EXIT_INPUT
    method = (args.method or method or ("POST" if body else "GET")).upper()
    return explain(route_map_path, url, body, form, sys.stdout, sys.stderr, method, cookie)


# The sandbox's listeners by the name its errors use: the flag that moves each, and the variable of
# `make run` that passes it.
SANDBOX_PORTS = {
    "public listener": ("--port", "PORT"),
    "operations listener": ("--admin-port", "ADMIN_PORT"),
    "Auth0 stand-in": ("--auth0-port", "AUTH0_PORT"),
    "WorkOS stand-in": ("--workos-port", "WORKOS_PORT"),
    "WorkOS API stand-in": ("--workos-api-port", "WORKOS_API_PORT"),
}


def port_hint(message: str, via_make: bool) -> str:
    """A port-in-use error names the flag that moves that listener, or under `make run` its variable."""
    generic = " (choose another with its flag)"
    for name, (flag, variable) in SANDBOX_PORTS.items():
        if message.startswith(f"{name} port ") and message.endswith(generic):
            how = f"make run {variable}=<port>" if via_make else f"{flag} <port>"
            return f"{message.removesuffix(generic)} (choose another: {how})"
    return message


def cmd_sandbox(args: argparse.Namespace) -> int:
    from proxy.sandbox.run import SandboxPlan, parse_origin, run_sandbox

    try:
        plan = SandboxPlan(
            routes=args.routes,
            host=args.host,
            port=args.port,
            admin_port=args.admin_port,
            auth0_port=args.auth0_port,
            workos_port=args.workos_port,
            workos_api_port=args.workos_api_port,
            proxy_origin=parse_origin(args.proxy_origin) if args.proxy_origin else None,
            migrated=None if args.migrated is None else tuple(m.strip() for m in args.migrated.split(",") if m.strip()),
            standins_only=args.standins_only,
            auth0_state_form=args.auth0_state_form,
        )
        _run(run_sandbox(plan, sys.stdout))
    except ConfigError as exc:
        print(f"sso-proxy sandbox: {port_hint(str(exc), args.via_make)}", file=sys.stderr)
        return 2
    except StartupError as exc:  # a port in use
        print(f"sso-proxy sandbox: {exc}", file=sys.stderr)
        return 1
    except RouteMapError as exc:
        print(f"sso-proxy sandbox: route map {exc.source} is invalid:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    return 0


def _edit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--routes", default=None, help="route map file (env SSO_PROXY_ROUTES, default routes.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="print the diff and the audit line; write nothing")
    parser.add_argument(
        "--by", metavar="WHO", help="who makes the change, for the audit line (default $USER, else the login name)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sso-proxy",
        description="Routes each Auth0 SSO callback to WorkOS or Auth0 by a route map, one connection at a time. "
        "Commands: serve, routes (import, validate, set, mode, unknown, report, check), explain, sandbox.",
    )
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
        "--workos-mapping",
        metavar="FILE",
        help="WorkOS's Auth0-to-WorkOS ID mapping (CSV or JSON): fills workos_connection_id and organization; "
        "every row that matches no connection is reported",
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
    set_.add_argument(
        "--organization",
        metavar="ORG",
        action="append",
        help="every connection of ORG; repeat it for a connection several organizations share (it moves only "
        "when all of them are named)",
    )
    set_.add_argument(
        "--force",
        action="store_true",
        help="with WORKOS_API_KEY set, cut over even connections WorkOS does not have active",
    )
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

    chk = routes_cmds.add_parser(
        "check",
        help="each connection's state in WorkOS (WORKOS_API_KEY, WORKOS_BASE_URL)",
        description="Lists the WorkOS connections (all pages) and prints, per connection of the route map, "
        "whether its workos_connection_id exists and is active. Exit 0: every connection in state workos "
        "is ready; 3: one is not; 1: the map or the WorkOS API could not be read.",
    )
    chk.add_argument("--routes", default=None, help="route map file (env SSO_PROXY_ROUTES, default routes.yaml)")
    chk.set_defaults(func=cmd_check)
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
        help="operations listener URL (default http://127.0.0.1:9090; repeat for each replica, or give a headless "
        "Service's name: every address it resolves to is asked, each replica once)",
    )
    rep.add_argument(
        "--prometheus",
        metavar="URL",
        help="read every replica's counters from Prometheus (e.g. http://prometheus:9090): counts since each "
        "connection's state changed, across restarts and scale-downs",
    )
    rep.add_argument(
        "--routes",
        default=None,
        help="with --prometheus: the route map whose states and state_changed times to report on "
        "(default: what the fleet exports)",
    )
    rep.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    rep.set_defaults(func=cmd_report)
    fleet = routes_cmds.add_parser(
        "check-fleet",
        help="exit 0 when every replica serves the route map (by sha256)",
        description="Before switching an application's flag to WorkOS (and after a rollback), confirm every "
        "replica serves the map: each replica's sha256 against the file's (or --sha256). Exit 0: all do; "
        "1: not yet (or a replica is down); 2: bad input.",
    )
    fleet.add_argument("--prometheus", metavar="URL", help="ask Prometheus (sso_proxy_routemap_info, up)")
    fleet.add_argument(
        "--admin", action="append", default=None, metavar="URL", help="ask each replica's GET /routes instead"
    )
    fleet.add_argument("--routes", default=None, help="the route map (env SSO_PROXY_ROUTES, default routes.yaml)")
    fleet.add_argument("--sha256", default=None, help="the sha256 to expect instead of the file's")
    fleet.set_defaults(func=cmd_check_fleet)

    exp = commands.add_parser(
        "explain",
        help="print the decision for a callback, sending nothing",
        description="Prints the connection a callback belongs to, how it was identified, the decision and why, "
        "as the server would decide it with this route map. Sends nothing.",
        epilog="exit status: 0 decided WorkOS (307 to WorkOS); 10 decided Auth0 (forwarded: legacy, fallback, "
        "kill switch, shadow, unknown with defaults.unknown auth0, or not a callback: passed through); "
        "2 input error (bad argument, unreadable or malformed file, invalid route map).",
    )
    exp.add_argument("url", nargs="?", help="the callback URL, e.g. 'https://login.example.com/login/callback?...'")
    exp.add_argument(
        "--data",
        "-d",
        dest="data_parts",
        action="append",
        type=lambda value: ("data", value),
        metavar="DATA",
        help="form body (application/x-www-form-urlencoded) as given; repeat to join with &, as curl does",
    )
    exp.add_argument(
        "--data-urlencode",
        dest="data_parts",
        action="append",
        type=lambda value: ("urlencode", value),
        metavar="NAME=VALUE",
        help="a form field whose value is url-encoded, as curl does (also VALUE, =VALUE, NAME@FILE, @FILE); "
        "e.g. --data-urlencode SAMLResponse=PHNhbWxw... (a raw base64 value keeps its + and =)",
    )
    exp.add_argument("--data-file", help="a file holding the form body, already url-encoded")
    exp.add_argument("--request", help="a file holding a saved raw HTTP request (request line, headers, body)")
    exp.add_argument("--method", "-X", help="the request method (default POST with a body, else GET)")
    exp.add_argument(
        "--cookie",
        "-b",
        help="the request's Cookie header, as curl -b takes it ('sso_proxy_tx_<id>=...'); a binding cookie is "
        "checked with SSO_PROXY_TRANSACTION_KEYS from the environment (a saved --request's Cookie headers are read)",
    )
    exp.add_argument("--routes", default=None, help="route map file (env SSO_PROXY_ROUTES, default routes.yaml)")
    exp.set_defaults(func=cmd_explain)

    sandbox = commands.add_parser(
        "sandbox",
        help="the proxy plus local stand-ins for Auth0 and WorkOS",
        description="Runs local stand-ins for Auth0 and WorkOS and, unless --standins-only, the proxy in front of "
        "them. Prints every address and secret it uses, and one curl command per path.",
    )
    sandbox.add_argument(
        "--routes",
        default="routes.yaml",
        help="route map the proxy serves; the WorkOS stand-in handles its connections in state workos "
        "(read once at start; default routes.yaml)",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address of every listener (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8080, help="the proxy's public listener (default 8080)")
    sandbox.add_argument("--admin-port", type=int, default=9090, help="the proxy's operations listener (default 9090)")
    sandbox.add_argument("--auth0-port", type=int, default=8081, help="the Auth0 stand-in (default 8081)")
    sandbox.add_argument("--workos-port", type=int, default=8082, help="the WorkOS stand-in (default 8082)")
    sandbox.add_argument(
        "--workos-api-port", type=int, default=8083, help="the WorkOS API stand-in (WORKOS_BASE_URL; default 8083)"
    )
    sandbox.add_argument(
        "--proxy-origin",
        metavar="URL",
        help="where the WorkOS stand-in sends the callbacks it cannot handle (with fallback=auth0): the proxy "
        "under test, e.g. http://127.0.0.1:8000 (default: the sandbox's public listener)",
    )
    sandbox.add_argument(
        "--standins-only",
        action="store_true",
        help="run only the two stand-ins, for a proxy you run yourself; prints the settings it needs",
    )
    sandbox.add_argument(
        "--migrated",
        metavar="NAMES",
        help="comma-separated connections the WorkOS stand-in handles; others are sent back with fallback=auth0 "
        "(default: every connection in state workos in --routes)",
    )
    # Given by `make run`: errors then name its variables (PORT=...) instead of the flags.
    sandbox.add_argument("--via-make", action="store_true", help=argparse.SUPPRESS)
    sandbox.add_argument(
        "--auth0-state-form",
        choices=("auth0", "opaque"),
        default="auth0",
        help="the state the Auth0 stand-in issues: auth0 (Auth0's own form, base64url MessagePack {h, n, tid, cid}) "
        "or opaque (another form: the binding cookie alone routes, and sso_proxy_witness_disagreements_total counts)",
    )
    sandbox.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
