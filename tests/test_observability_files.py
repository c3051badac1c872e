"""The Grafana dashboard and the Prometheus rules refer only to what the service really exposes.

Every PromQL expression in ``deploy/grafana/sso-proxy-dashboard.json`` (panel targets, annotations,
template variables) and ``deploy/prometheus/sso-proxy-rules.yaml`` is checked three ways:

- each ``sso_proxy_*`` name is exposed by a running instance (``python -m proxy serve`` on loopback,
  scraped from the operations listener; ``# TYPE`` lines list every registered family, even one
  whose labelled children do not exist yet);
- each label it filters or groups on exists on that metric per ``docs/ARCHITECTURE.md`` (plus the
  target labels ``job``/``instance`` and ``le`` on histogram buckets), and on the scraped samples;
- ``promtool check rules`` parses the rules and the dashboard's queries, and ``promtool test rules``
  proves the alerts fire (and stay quiet) on synthetic series.

``promtool`` comes with the Debian package ``prometheus``; without it these tests fail, never skip.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "sso-proxy-dashboard.json"
RULES = REPO / "deploy" / "prometheus" / "sso-proxy-rules.yaml"
RULES_TEST = REPO / "deploy" / "prometheus" / "sso-proxy-rules.test.yaml"
RUNBOOK = REPO / "deploy" / "prometheus" / "README.md"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"

METRIC_RE = re.compile(r"\bsso_proxy_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset(("job", "instance"))
# Grafana's variables, replaced by something PromQL parses.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${connection}": ".*",
    "$connection": ".*",
}
PROMTOOL_MISSING = (
    "promtool not found: install the Debian package `prometheus` (apt-get install -y prometheus), "
    "which provides /usr/bin/promtool; .ci/run installs it"
)
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Expr:
    """One PromQL expression and where it came from."""

    where: str
    text: str


@dataclass(frozen=True, slots=True)
class MetricDoc:
    """A metric's row in docs/ARCHITECTURE.md."""

    kind: str
    labels: frozenset[str]
    # label -> documented values, for labels whose values are a plain list
    values: dict[str, frozenset[str]]


# --- loading the files --------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def load_rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[Expr]:
    exprs: list[Expr] = []
    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            exprs.append(Expr(f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            exprs.append(Expr(f"annotation {annotation['name']!r}", annotation["expr"]))
    return exprs


def variable_queries(dashboard: dict[str, Any]) -> list[Expr]:
    out: list[Expr] = []
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            text = query["query"] if isinstance(query, dict) else query
            out.append(Expr(f"variable {var['name']!r}", text))
    return out


def rule_list(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


def rule_exprs(rules: dict[str, Any]) -> list[Expr]:
    return [Expr(f"rule {rule.get('alert') or rule.get('record')!r}", rule["expr"]) for rule in rule_list(rules)]


def all_exprs() -> list[Expr]:
    dashboard = load_dashboard()
    return dashboard_exprs(dashboard) + variable_queries(dashboard) + rule_exprs(load_rules())


# --- docs/ARCHITECTURE.md ---------------------------------------------------------------------

_DOC_ROW = re.compile(r"^\|\s*`(sso_proxy_[a-z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|", re.MULTILINE)
_DOC_LABEL = re.compile(r"`([a-z_][a-z0-9_]*)`(?:\s*\(([^)]*)\))?")
_PLAIN_VALUE = re.compile(r"^[a-z0-9_]+$")


def documented_metrics() -> dict[str, MetricDoc]:
    docs: dict[str, MetricDoc] = {}
    for name, kind, label_cell in _DOC_ROW.findall(ARCHITECTURE.read_text(encoding="utf-8")):
        labels: set[str] = set()
        values: dict[str, frozenset[str]] = {}
        # Strip parenthesised value lists first so that a backticked value is not taken for a label.
        for label, value_list in _DOC_LABEL.findall(re.sub(r"\([^)]*\)", lambda m: m[0].replace("`", ""), label_cell)):
            labels.add(label)
            items = [item.strip() for item in value_list.split(",")] if value_list else []
            if items and all(_PLAIN_VALUE.match(item) for item in items):
                values[label] = frozenset(items)
        docs[name] = MetricDoc(kind.strip(), frozenset(labels), values)
    return docs


# --- PromQL scanning ----------------------------------------------------------------------------

_MATCHERS = re.compile(r"\b(sso_proxy_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*(sso_proxy_[a-z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")


def metric_names(text: str) -> set[str]:
    return set(METRIC_RE.findall(text))


def base_name(name: str, docs: dict[str, MetricDoc]) -> str:
    """The documented metric a series name belongs to (``x_bucket`` -> histogram ``x``)."""
    if name in docs:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in docs:
            return name[: -len(suffix)]
    return name


def allowed_labels(name: str, docs: dict[str, MetricDoc]) -> frozenset[str]:
    doc = docs.get(base_name(name, docs))
    labels = set(TARGET_LABELS)
    if doc is not None:
        labels |= doc.labels
    if name.endswith("_bucket"):
        labels.add("le")
    return frozenset(labels)


def _balanced(text: str, open_at: int) -> str:
    """The text inside the parenthesis opening at ``open_at``."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def _balanced_before(text: str, close_at: int) -> str:
    """The text inside the parenthesis closing at ``close_at``."""
    depth = 0
    for i in range(close_at, -1, -1):
        if text[i] == ")":
            depth += 1
        elif text[i] == "(":
            depth -= 1
            if depth == 0:
                return text[i + 1 : close_at]
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def grouping_scopes(text: str) -> Iterator[tuple[str, list[str], str]]:
    """(clause, labels, scope): the expression a ``by``/``on``/... clause's labels must come from.

    For an aggregation (``sum by (l) (expr)`` or ``sum (expr) by (l)``) the scope is its argument;
    for a vector matching clause (``on``, ``ignoring``, ``group_*``) it is the whole expression.
    """
    for match in _GROUPING.finditer(text):
        clause, label_text = match[1], match[2]
        labels = [label.strip() for label in label_text.split(",") if label.strip()]
        scope = text
        if clause in ("by", "without"):
            rest = match.end()
            while rest < len(text) and text[rest].isspace():
                rest += 1
            if rest < len(text) and text[rest] == "(":
                scope = _balanced(text, rest)
            else:
                before = match.start() - 1
                while before >= 0 and text[before].isspace():
                    before -= 1
                scope = _balanced_before(text, before)
        yield clause, labels, scope


def label_problems(expr: Expr, docs: dict[str, MetricDoc]) -> list[str]:
    problems: list[str] = []
    for name, body in _MATCHERS.findall(expr.text):
        allowed = allowed_labels(name, docs)
        for label, op, value in _MATCHER.findall(body):
            if label not in allowed:
                problems.append(f"{expr.where}: {name} has no label {label!r} (has {sorted(allowed)})")
                continue
            doc = docs.get(base_name(name, docs))
            known = doc.values.get(label) if doc is not None else None
            if known is not None and op in ("=", "!=") and value not in known:
                problems.append(f"{expr.where}: {name}{{{label}{op}{value!r}}}: documented values are {sorted(known)}")
    for clause, labels, scope in grouping_scopes(expr.text):
        names = metric_names(scope)
        for label in labels:
            if not any(label in allowed_labels(name, docs) for name in names):
                problems.append(f"{expr.where}: {clause} ({label}) but no metric in {sorted(names)} has that label")
    for name, label in _LABEL_VALUES.findall(expr.text):
        if label not in allowed_labels(name, docs):
            problems.append(f"{expr.where}: label_values: {name} has no label {label!r}")
    return problems


def used_labels(expr: Expr, docs: dict[str, MetricDoc]) -> set[tuple[str, str]]:
    """(metric, label) pairs an expression relies on, for comparing with scraped samples."""
    pairs: set[tuple[str, str]] = set()
    for name, body in _MATCHERS.findall(expr.text):
        pairs |= {(name, label) for label, _, _ in _MATCHER.findall(body)}
    for _, labels, scope in grouping_scopes(expr.text):
        for name in metric_names(scope):
            pairs |= {(name, label) for label in labels if label in allowed_labels(name, docs)}
    pairs |= set(_LABEL_VALUES.findall(expr.text))
    return {(name, label) for name, label in pairs if label not in TARGET_LABELS and label != "le"}


def substitute_grafana_variables(text: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        text = text.replace(variable, value)
    assert "$" not in text, f"unknown Grafana variable left in {text!r}"
    return text


# --- the files' own shape ----------------------------------------------------------------------


def test_dashboard_shape() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    connection = variables["connection"]
    assert connection["type"] == "query"
    assert connection["definition"] == "label_values(sso_proxy_callbacks_total, connection)"
    assert connection["includeAll"] and connection["multi"] and connection["allValue"] == ".*"
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    assert connection["datasource"] == datasource

    ids: list[int] = []
    for panel in iter_panels(dashboard["panels"]):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            assert target["expr"].strip(), panel["title"]
        assert panel.get("description"), f"panel {panel['title']!r} says nothing about what it shows"
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_covers_the_rollout() -> None:
    """The brief's list: what an operator needs on one screen during a rollout."""
    used = set().union(*(metric_names(expr.text) for expr in dashboard_exprs(load_dashboard())))
    required = {
        "sso_proxy_callbacks_total",
        "sso_proxy_connection_state",
        "sso_proxy_fallbacks_total",
        "sso_proxy_shadow_decisions_total",
        "sso_proxy_requests_total",
        "sso_proxy_request_duration_seconds_bucket",
        "sso_proxy_upstream_requests_total",
        "sso_proxy_upstream_errors_total",
        "sso_proxy_upstream_response_seconds_bucket",
        "sso_proxy_routemap_reloads_total",
        "sso_proxy_routemap_last_success_timestamp_seconds",
        "sso_proxy_routemap_info",
        "sso_proxy_routemap_connections",
        "sso_proxy_draining",
    }
    assert required <= used, f"dashboard lacks {sorted(required - used)}"


def _anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+)$", markdown, re.MULTILINE):
        anchors.add(re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-"))
    return anchors


def test_rules_shape() -> None:
    rules = rule_list(load_rules())
    names = {rule["alert"] for rule in rules}
    assert {
        "SsoProxyWorkosFallbackRateHigh",
        "SsoProxyUpstreamErrorRateHigh",
        "SsoProxyHigh5xxRate",
        "SsoProxyRouteMapReloadFailed",
        "SsoProxyRouteMapFileRejected",
        "SsoProxyRouteMapDiverged",
        "SsoProxyNoCallbacks",
        "SsoProxyCutOverConnectionWentToAuth0",
        "SsoProxyUnidentifiedCallbacksGrowing",
    } <= names
    anchors = _anchors(RUNBOOK.read_text(encoding="utf-8"))
    for rule in rules:
        alert = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), alert
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), alert
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], alert
        page, _, anchor = annotations["runbook"].partition("#")
        assert (REPO / page).resolve() == RUNBOOK.resolve(), alert
        assert anchor in anchors, f"{alert}: runbook anchor #{anchor} is not a heading of {RUNBOOK.name}"


def test_fallback_alert_only_for_workos_connections() -> None:
    (rule,) = [rule for rule in rule_list(load_rules()) if rule["alert"] == "SsoProxyWorkosFallbackRateHigh"]
    expr = " ".join(rule["expr"].split())
    assert 'sso_proxy_connection_state{state="workos"}' in expr
    assert "on (job, connection)" in expr


# --- names and labels ---------------------------------------------------------------------------


def test_every_metric_and_label_is_documented() -> None:
    docs = documented_metrics()
    assert docs, f"no metric table found in {ARCHITECTURE}"
    problems: list[str] = []
    for expr in all_exprs():
        for name in sorted(metric_names(expr.text)):
            if base_name(name, docs) not in docs:
                problems.append(f"{expr.where}: {name} is not in docs/ARCHITECTURE.md")
        problems += label_problems(expr, docs)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sum by (decision) (rate(sso_proxy_fallbacks_total[5m]))", "by (decision)"),
        ('sso_proxy_routemap_reloads_total{result="failed"}', "documented values"),
        ('sso_proxy_draining{connection="x"}', "has no label 'connection'"),
        ("sum(rate(sso_proxy_callbacks_total[5m])) by (kind)", "by (kind)"),
        ("label_values(sso_proxy_requests_total, connection)", "label_values"),
    ],
)
def test_label_check_catches(text: str, problem: str) -> None:
    docs = {
        "sso_proxy_fallbacks_total": MetricDoc("counter", frozenset({"connection"}), {}),
        "sso_proxy_routemap_reloads_total": MetricDoc(
            "counter", frozenset({"result"}), {"result": frozenset({"success", "error"})}
        ),
        "sso_proxy_draining": MetricDoc("gauge", frozenset(), {}),
        "sso_proxy_callbacks_total": MetricDoc("counter", frozenset({"connection", "decision"}), {}),
        "sso_proxy_requests_total": MetricDoc("counter", frozenset({"path_group"}), {}),
    }
    problems = label_problems(Expr("t", text), docs)
    assert any(problem in p for p in problems), problems


def test_label_check_accepts_histograms_and_target_labels() -> None:
    docs = {"sso_proxy_upstream_response_seconds": MetricDoc("histogram", frozenset(), {})}
    text = "histogram_quantile(0.9, sum by (le, instance) (rate(sso_proxy_upstream_response_seconds_bucket[5m])))"
    assert label_problems(Expr("t", text), docs) == []


# --- against a running instance -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Instance:
    port: int
    admin_port: int


ROUTES = """\
version: 1
defaults: {unknown: workos, mode: normal}
connections:
  acme-okta: {protocol: saml, state: workos}
  initech-okta: {protocol: saml, state: legacy}
"""


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """The real service on loopback; Auth0 is a closed port (nothing here is forwarded)."""
    workdir = tmp_path_factory.mktemp("observability")
    routes = workdir / "routes.yaml"
    routes.write_text(ROUTES, encoding="utf-8")
    port, admin_port, closed_port = _free_port(), _free_port(), _free_port()
    env = {
        **os.environ,
        "WORKOS_CUSTOM_DOMAIN": "auth.example.test",
        "WORKOS_CLIENT_ID": "client_123",
        "AUTH0_FALLBACK_ORIGIN": f"http://127.0.0.1:{closed_port}",
    }
    log = workdir / "server.log"
    command = [
        sys.executable,
        "-m",
        "proxy",
        "serve",
        "--routes",
        str(routes),
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{' '.join(command)} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if _get(admin_port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"service not ready on 127.0.0.1:{admin_port} after {START_TIMEOUT}s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        yield Instance(port, admin_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _scrape(instance: Instance) -> str:
    status, text = _get(instance.admin_port, "/metrics")
    assert status == 200
    return text


def test_every_metric_is_exposed(instance: Instance) -> None:
    text = _scrape(instance)
    # `# TYPE` lines name every registered family, with `_total` for counters, samples or not.
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    samples = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    exposed = set(types) | samples

    missing: list[str] = []
    for expr in all_exprs():
        for name in sorted(metric_names(expr.text)):
            if name in exposed:
                continue
            stem, suffix = name.rsplit("_", 1)
            if f"_{suffix}" in HISTOGRAM_SUFFIXES and types.get(stem) == "histogram":
                continue
            missing.append(f"{expr.where}: {name}")
    assert not missing, "not exposed by the service:\n" + "\n".join(missing)


def test_used_labels_are_on_the_scraped_samples(instance: Instance) -> None:
    """After one callback of each kind, the labels the files rely on are on the real series."""
    for query in ("connection=acme-okta", "connection=initech-okta", "connection=acme-okta&fallback=auth0"):
        conn = http.client.HTTPConnection("127.0.0.1", instance.port, timeout=10)
        try:
            conn.request("GET", f"/login/callback?{query}&code=c&state=s")
            conn.getresponse().read()
        finally:
            conn.close()

    docs = documented_metrics()
    labels_by_sample: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(_scrape(instance)):
        for sample in family.samples:
            labels_by_sample.setdefault(sample.name, set()).update(sample.labels)

    problems: list[str] = []
    for expr in all_exprs():
        for name, label in sorted(used_labels(expr, docs)):
            seen = labels_by_sample.get(name)
            if seen is not None and label not in seen:
                problems.append(f"{expr.where}: scraped {name} has labels {sorted(seen)}, not {label!r}")
    assert not problems, "\n".join(problems)
    # The callback counter and the connection state had samples to compare with.
    assert "sso_proxy_callbacks_total" in labels_by_sample
    assert "sso_proxy_connection_state" in labels_by_sample


# --- promtool -----------------------------------------------------------------------------------


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(PROMTOOL_MISSING)
    return path


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


def test_promtool_check_rules() -> None:
    _run([_promtool(), "check", "rules", str(RULES)])


def test_promtool_test_rules() -> None:
    _run([_promtool(), "test", "rules", str(RULES_TEST)])


def test_promtool_parses_dashboard_queries(tmp_path: Path) -> None:
    """Each dashboard query becomes a recording rule, so promtool parses it as PromQL."""
    records = [
        {"record": f"dashboard:query_{i}:check", "expr": substitute_grafana_variables(expr.text)}
        for i, expr in enumerate(dashboard_exprs(load_dashboard()))
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}), encoding="utf-8")
    _run([_promtool(), "check", "rules", str(path)])
