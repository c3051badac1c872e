"""Route map and import at scale: seconds to validate / import N connections (issue 11, finding 9).

Writes a route map and an SSO export package of N generated connections into a temporary
directory, then times, in this process:

- ``parse``: :func:`proxy.routing.routemap.parse_routemap` of the route map (what a reload does);
- ``validate``: ``sso-proxy routes validate`` (the CLI path, same parse plus the summary);
- ``import``: :func:`proxy.migrate.export.run_import` of the package to a new file (read CSVs, build,
  render, re-validate, write);
- ``set``: ``sso-proxy routes set`` of one connection (compose, edit, validate, write);

and prints the seconds and peak RSS of each. Usage::

    python bench/routemap_scale.py                 # 20,000 connections
    python bench/routemap_scale.py -n 200000 --only import
"""

from __future__ import annotations

import argparse
import csv
import io
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.migrate.edit import run_set
from proxy.migrate.export import run_import
from proxy.routing.routemap import parse_routemap


def routes_yaml(n: int) -> str:
    out = ["version: 1", "defaults:", "  unknown: workos", "  mode: normal", "connections:"]
    for i in range(n):
        if i % 2:
            out += [
                f"  conn-{i:06d}:",
                "    protocol: oidc",
                f"    state: {'workos' if i % 3 else 'legacy'}",
                f"    organization: org_{i:06d}",
                f"    client_ids: [client-{i:06d}]",
                f"    issuers: [https://idp-{i:06d}.example.com]",
            ]
        else:
            out += [
                f"  conn-{i:06d}:",
                "    protocol: saml",
                f"    state: {'workos' if i % 3 else 'legacy'}",
                f"    organization: org_{i:06d}",
                f"    audiences: ['urn:auth0:globex-prod:conn-{i:06d}']",
                f"    issuers: ['http://www.okta.com/exk{i:06d}']",
                f"    acs_urls: ['https://globex-prod.eu.auth0.com/login/callback?connection=conn-{i:06d}']",
            ]
    return "\n".join(out) + "\n"


def export_package(root: Path, n: int) -> None:
    sso = root / "sso"
    sso.mkdir(parents=True)
    (root / "manifest.json").write_text('{"sourceTenant": "globex-prod.eu.auth0.com"}')
    routes = io.StringIO()
    saml = io.StringIO()
    oidc = io.StringIO()
    rw = csv.writer(routes)
    sw = csv.writer(saml)
    ow = csv.writer(oidc)
    rw.writerow(["externalId", "provider", "protocol", "cutoverState", "organizationExternalId", "sourceAcsUrl"])
    sw.writerow(["externalId", "organizationExternalId", "idpEntityId", "customEntityId", "x509Cert"])
    ow.writerow(["externalId", "organizationExternalId", "clientId", "clientSecret", "discoveryEndpoint"])
    for i in range(n):
        name = f"conn-{i:06d}"
        protocol = "oidc" if i % 2 else "saml"
        acs = f"https://globex-prod.eu.auth0.com/login/callback?connection={name}"
        rw.writerow([name, "auth0", protocol, "legacy", f"org_{i:06d}", acs])
        if protocol == "saml":
            sw.writerow([name, f"org_{i:06d}", f"http://www.okta.com/exk{i:06d}", "", "MIIC" + "A" * 200])
        else:
            ow.writerow(
                [
                    name,
                    f"org_{i:06d}",
                    f"client-{i:06d}",
                    "s3cr3t",
                    f"https://idp-{i:06d}.example.com/.well-known/openid-configuration",
                ]
            )
    (sso / "proxy_routes.csv").write_text(routes.getvalue())
    (sso / "saml_connections.csv").write_text(saml.getvalue())
    (sso / "oidc_connections.csv").write_text(oidc.getvalue())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20000, help="connections (default 20000)")
    parser.add_argument("--only", choices=("parse", "validate", "import", "set"), action="append")
    args = parser.parse_args()
    steps = args.only or ["parse", "validate", "import", "set"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = routes_yaml(args.n)
        (root / "routes.yaml").write_text(text)
        export_package(root / "export", args.n)
        sink = io.StringIO()
        print(f"{args.n} connections, route map {len(text) / 1e6:.1f} MB")
        for step in steps:
            started = time.perf_counter()
            cpu = time.process_time()
            if step == "parse":
                parse_routemap(text.encode(), "routes.yaml")
            elif step == "validate":
                from proxy.cli import main as cli

                old = sys.stdout
                sys.stdout = sink
                try:
                    code = cli(["routes", "validate", str(root / "routes.yaml")])
                finally:
                    sys.stdout = old
                assert code == 0
            elif step == "import":
                code = run_import(str(root / "export"), str(root / "imported.yaml"), sink, sink)
                assert code == 0, sink.getvalue()[-2000:]
            else:
                code = run_set(str(root / "routes.yaml"), f"conn-{args.n // 2:06d}", "workos", sink, sink)
                assert code == 0, sink.getvalue()[-2000:]
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
            print(f"{step:9s} {took:8.2f} s wall {cpu:8.2f} s CPU   peak RSS {peak_rss_mb():7.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
