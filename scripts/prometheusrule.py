#!/usr/bin/env python3
"""Write deploy/prometheus/sso-proxy-prometheusrule.yaml from deploy/prometheus/sso-proxy-rules.yaml.

The raw rules file is the one source (promtool checks and tests it; `rule_files:` loads it). The
PrometheusRule is the same `groups:` list, comments included, under `spec:`, for the Prometheus
Operator. Run after changing the rules:

    python3 scripts/prometheusrule.py          # rewrite the PrometheusRule
    python3 scripts/prometheusrule.py --check  # exit 1 if it is out of date (tests/test_deploy.py)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "sso-proxy-rules.yaml"
TARGET = ROOT / "deploy" / "prometheus" / "sso-proxy-prometheusrule.yaml"

HEADER = """\
# GENERATED from sso-proxy-rules.yaml by scripts/prometheusrule.py: edit that file, then run the
# script (tests/test_deploy.py fails while the two differ).
#
# The alert rules for the Prometheus Operator. `release: kube-prometheus-stack` is that chart's
# default ruleSelector; change it to whatever your Prometheus selects.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: sso-proxy
  labels:
    release: kube-prometheus-stack
spec:
"""


def render(rules_text: str) -> str:
    """The rules file's body from its `groups:` line on, indented under spec:."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(("  " + line if line.strip() else "") + "\n" for line in lines[start:])
    return HEADER + body


def main(argv: list[str]) -> int:
    wanted = render(RULES.read_text())
    if argv[1:] == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != wanted:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python3 scripts/prometheusrule.py", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    TARGET.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
