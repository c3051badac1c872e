"""Every runtime dependency is used, and the lock the image installs holds nothing else.

A dependency nothing uses is code in the image nobody reviews (python-multipart was one: Starlette
needs it only for ``Request.form()``, which the service never calls; it reads bodies itself).
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import requires
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "\n".join(path.read_text() for path in sorted((ROOT / "proxy").rglob("*.py")))

# Each runtime dependency, with the line of proxy/ that needs it.
USED_BY = {
    "starlette": r"^from starlette[. ]",
    "uvicorn": r"^import uvicorn$",
    "uvloop": r"^\s+import uvloop$",
    "httptools": r"^import httptools$",  # uvicorn's HTTP parser, under the guarded protocol of limits.py
    "aiohttp": r"^import aiohttp$",
    "pyyaml": r"^import yaml$",
    "prometheus-client": r"^from prometheus_client[. ]",
    "yarl": r"^from yarl import",
    "brotli": r"^import brotli$",  # auto-post pages a browser lets Auth0's edge compress (logins.py)
    "zstandard": r"^import zstandard$",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def runtime_dependencies() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [_name(r) for r in data["project"]["dependencies"]]


def test_each_runtime_dependency_is_used() -> None:
    assert sorted(runtime_dependencies()) == sorted(USED_BY), "a dependency was added or removed: say what needs it"
    for name, pattern in USED_BY.items():
        assert re.search(pattern, SOURCE, flags=re.M), f"{name}: nothing in proxy/ uses it"


def test_multipart_is_not_needed() -> None:
    assert "multipart" not in SOURCE
    assert ".form()" not in SOURCE


def _closure(names: list[str]) -> set[str]:
    """The runtime dependencies and everything they require (as installed here, extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for requirement in requires(name) or []:
            marker = requirement.partition(";")[2]
            if "extra ==" in marker or "extra==" in marker:
                continue
            if "python_version" in marker and '< "3.11"' in marker.replace("'", '"'):
                continue
            todo.append(_name(requirement))
    return seen


def test_the_lock_holds_the_runtime_dependencies_and_nothing_else() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pinned = {_name(n) for n in re.findall(r"^([A-Za-z0-9_.\-]+)==", lock, flags=re.M)}
    direct = runtime_dependencies()
    assert set(direct) <= pinned
    extra = pinned - _closure(direct)
    assert not extra, f"requirements.lock pins {sorted(extra)}, which no runtime dependency needs: run scripts/lock.sh"


@pytest.mark.parametrize("name", ["python-multipart"])
def test_removed_dependencies_stay_out(name: str) -> None:
    assert name not in runtime_dependencies()
    assert f"\n{name}==" not in (ROOT / "requirements.lock").read_text()
