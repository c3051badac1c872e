"""One version, read from the package metadata: --version, /routes, sso_proxy_build_info, the image label."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import proxy
from proxy import __version__, read_version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_version_is_the_installed_metadata_and_pyproject() -> None:
    assert __version__ == metadata.version("sso-proxy") == PYPROJECT_VERSION


def test_a_checkout_that_is_not_installed_reads_pyproject() -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    assert read_version(missing) == PYPROJECT_VERSION


def test_a_lone_package_without_metadata_or_pyproject(tmp_path: Path) -> None:
    """A proxy/ copied out of any checkout and never installed still starts, as version 0+unknown."""
    lone = tmp_path / "proxy"
    lone.mkdir()
    (lone / "__init__.py").write_text(Path(proxy.__file__).read_text())
    code = (
        "from importlib import metadata\nimport proxy\n"
        "def missing(name):\n    raise metadata.PackageNotFoundError(name)\n"
        "print(proxy.read_version(missing))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0+unknown"


@pytest.mark.parametrize(
    "command",
    [
        [str(Path(sys.executable).with_name("sso-proxy")), "--version"],
        [sys.executable, "-m", "proxy", "--version"],
    ],
    ids=["console script", "python -m proxy"],
)
def test_version_flag(command: list[str]) -> None:
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout == f"sso-proxy {PYPROJECT_VERSION}\n"


def test_changelog_has_an_entry_for_this_version() -> None:
    """Keep a Changelog: an Unreleased section, then one `## [X.Y.Z] - YYYY-MM-DD` per release."""
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert headings[0] == ("Unreleased", "")
    assert (PYPROJECT_VERSION, headings[1][1]) == headings[1] and headings[1][1]
    assert f"[{PYPROJECT_VERSION}]: " in text  # the link reference at the foot


def test_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
