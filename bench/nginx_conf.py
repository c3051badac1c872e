"""nginx configurations for the benchmark: the fast upstream stand-in, and the reference proxy.

- ``upstream_conf``: a stand-in for Auth0 that answers every request (GET or POST, body read and
  discarded) with a small 200 and a ``Set-Cookie``, and serves a large file at ``/big``.
- ``reference_conf``: nginx doing the proxy's job where it can, generated from the same route
  map: ``map $arg_connection`` chooses a 307 to WorkOS or ``proxy_pass`` to the upstream
  (``fallback=auth0`` forces the forward; ``defaults.unknown`` and ``defaults.mode`` respected);
  every other path is proxied. It cannot read a connection from the SAML XML, so a callback
  without ``?connection`` follows ``defaults.unknown`` (same status as the service, less work).

Both run with one worker process (the service is one process too), access log off.

    python bench/nginx_conf.py --routes routes.yaml --port 18080 --upstream-port 18090
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import yaml

_SAFE = re.compile(r"^[A-Za-z0-9._~:@+-]+$")


def _common(prefix: str) -> str:
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
"""


def _http_common(prefix: str) -> str:
    return f"""    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    sendfile on;
    tcp_nopush on;
    server_tokens off;
"""


PUBLIC_HOST = "login.bench.test"  # the service's SSO_PROXY_PUBLIC_HOST in the benchmark
# The Auth0 stand-in listens on another loopback address: the service refuses an origin that names one
# of its own public hosts (wrk addresses the service as 127.0.0.1), as a request to it would loop.
UPSTREAM_HOST = "127.0.0.2"
IDP_LOCATION = (
    "https://idp.bench.test/oauth2/v1/authorize?client_id=0oa1b2c3d4&response_type=code&scope=openid%20email"
    f"&redirect_uri=https%3A%2F%2F{PUBLIC_HOST}%2Flogin%2Fcallback&state="
    + "Fe26.2**"
    + "k" * 40
    + "&nonce="
    + "n" * 32
)


def upstream_conf(prefix: str, port: int, big_dir: str) -> str:
    """The Auth0 stand-in: small 200 for everything, a large file at /big."""
    return (
        _common(prefix)
        + f"""http {{
{_http_common(prefix)}
    server {{
        listen {UPSTREAM_HOST}:{port} backlog=4096;
        client_max_body_size 2m;
        client_body_buffer_size 2m;
        location = /big {{
            default_type application/octet-stream;
            alias {big_dir}/big.bin;
        }}
        location = /authorize_idp {{
            # What Auth0's /authorize answers for an enterprise or social connection: a 302 to the
            # IdP with state and a redirect_uri on the custom domain (the service binds it, issue 10).
            add_header Set-Cookie "auth0=bench; Path=/; Secure; HttpOnly; SameSite=None" always;
            return 302 "{IDP_LOCATION}";
        }}
        location / {{
            default_type text/plain;
            add_header Set-Cookie "auth0=bench; Path=/; Secure; HttpOnly; SameSite=None" always;
            return 200 "upstream ok\\n";
        }}
    }}
}}
"""
    )


def reference_conf(
    prefix: str,
    port: int,
    upstream_port: int,
    routes: dict,
    workos_origin: str = "https://auth.example.test",
    client_id: str = "client_bench",
) -> str:
    """nginx doing the proxy's job, from a parsed route map."""
    defaults = routes.get("defaults") or {}
    unknown = defaults.get("unknown", "workos")
    mode = defaults.get("mode", "normal")
    lines = []
    for name, conn in sorted((routes.get("connections") or {}).items()):
        if not _SAFE.match(str(name)):
            continue  # nginx map keys with odd characters would need quoting; not in the bench map
        state = "workos" if conn.get("state") == "workos" else "auth0"
        lines.append(f"        {name} {state};")
    route_map = "\n".join(lines)
    # mode auth0 (kill switch) and shadow both send every callback to Auth0.
    forced = "" if mode == "normal" else "        set $go auth0;\n"
    return (
        _common(prefix)
        + f"""http {{
{_http_common(prefix)}
    map $arg_connection $sso_route {{
        default {"workos" if unknown == "workos" else "auth0"};
{route_map}
    }}
    upstream auth0 {{
        server {UPSTREAM_HOST}:{upstream_port};
        keepalive 512;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 1m;
        client_body_buffer_size 1m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {UPSTREAM_HOST}:{upstream_port};
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header True-Client-IP $remote_addr;
        proxy_buffering off;
        location = /login/callback {{
            set $go $sso_route;
            if ($arg_fallback = auth0) {{ set $go auth0; }}
{forced}            if ($go = workos) {{
                add_header Cache-Control no-store always;
                return 307 {workos_origin}/sso/{client_id}/auth0/callback?$args;
            }}
            proxy_pass http://auth0;
        }}
        location / {{
            proxy_pass http://auth0;
        }}
    }}
}}
"""
    )


def write(prefix: str, text: str) -> str:
    os.makedirs(prefix, exist_ok=True)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(prefix, sub), exist_ok=True)
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", required=True)
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--upstream-port", type=int, default=18090)
    ap.add_argument("--upstream", action="store_true", help="print the upstream stand-in instead")
    args = ap.parse_args(argv)
    if args.upstream:
        sys.stdout.write(upstream_conf("/tmp/bench-nginx-up", args.upstream_port, "/tmp/bench-nginx-up"))
    else:
        with open(args.routes) as fh:
            routes = yaml.safe_load(fh)
        sys.stdout.write(reference_conf("/tmp/bench-nginx-ref", args.port, args.upstream_port, routes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
