"""The package layout (docs/ARCHITECTURE.md, "Modules"): which folder may import which, and sizes.

Every import in every module under ``proxy/`` (those inside functions too: a lazy import is still an
arrow) is read with ``ast`` and checked against the directions the folders promise:

- ``proxy/routing/``, the pure core: only itself, and ``proxy.errors`` (the exception tree, a leaf);
- ``proxy/edge/``, between the socket and the app: only itself, ``proxy.errors`` and ``proxy.logs``;
- ``proxy/`` (the service): itself, the edge and the routing core; never the operator's tools, the
  stand-ins or the command line;
- ``proxy/migrate/``, the operator's tools: itself, the service and the routing core;
- ``proxy/sandbox/``, the stand-ins: anything but the command line;
- ``proxy/cli.py`` imports everything; only ``proxy/__main__.py`` imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "proxy"
FOLDERS = ("edge", "routing", "migrate", "sandbox")
MAX_LINES = 650
MAX_TOP_MODULES = 20

# importer's part -> the parts it may import; a top-level module is "service" unless named here.
LEAVES = {"proxy": "package", "proxy.errors": "errors", "proxy.logs": "logs", "proxy.cli": "cli"}
SERVICE = {"package", "errors", "logs", "service"}
ALLOWED = {
    "routing": {"routing", "errors"},
    "edge": {"edge", "errors", "logs"},
    "service": SERVICE | {"edge", "routing"},
    "migrate": SERVICE | {"routing", "migrate"},
    "sandbox": SERVICE | {"edge", "routing", "migrate", "sandbox"},
    "cli": SERVICE | {"edge", "routing", "migrate", "sandbox"},
    "main": {"cli"},
}


def modules() -> list[Path]:
    return sorted(PROXY.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(name: str) -> str:
    """The part a module (dotted name under ``proxy``) belongs to."""
    if name in LEAVES:
        return LEAVES[name]
    pieces = name.split(".")
    if len(pieces) > 2 or (len(pieces) == 2 and pieces[1] in FOLDERS):
        return pieces[1]
    return "main" if name == "proxy.__main__" else "service"


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) for each module of this package that ``path`` imports."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "proxy"]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            base = node.module or ""
            if base.split(".")[0] != "proxy":
                continue
            for alias in node.names:  # `from proxy.routing import decide` names a module
                sub = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file()
                found.append((node.lineno, sub if is_module else base))
    return found


def test_the_rule_reads_real_imports() -> None:
    names = {name for path in modules() for _, name in imported(path)}
    assert {"proxy.routing.decide", "proxy.edge.limits", "proxy.migrate.export", "proxy.cli"} <= names
    assert part_of("proxy.routing") == "routing" and part_of("proxy.app") == "service"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path: Path) -> None:
    mine = part_of(module_name(path))
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {mine} imports {name} ({part_of(name)})"
        for line, name in imported(path)
        if part_of(name) not in ALLOWED.get(mine, set())
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_too_long() -> None:
    long = {str(p.relative_to(ROOT)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split along a real seam): {long}"


def test_the_top_level_stays_small() -> None:
    top = sorted(p.name for p in PROXY.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
    assert sorted(p.name for p in PROXY.iterdir() if p.is_dir() and (p / "__init__.py").is_file()) == sorted(FOLDERS)
