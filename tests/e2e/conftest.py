"""Session fixtures: keys, IdPs, stand-ins, two proxies (307 and form mode) and one Chromium.

Everything starts once per session on loopback ports; each test gets a clean request log on every
receiving end and a fresh tab, and measures the proxy's counters as a before/after difference.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator

import pytest
from playwright.sync_api import BrowserContext

from .browser import chromium_path, launch
from .idp import XMLSEC1
from .world import MODES, Idps, Stack, World, running_world


@pytest.fixture(scope="session")
def e2e_tools() -> None:
    """Chromium and xmlsec1 are system packages; without them skip here, fail under CI."""
    missing = [name for name, found in (("chromium", chromium_path()), ("xmlsec1", shutil.which(XMLSEC1))) if not found]
    if missing:
        message = f"end-to-end suite needs: apt-get install -y {' '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def world(e2e_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("e2e")) as built:
        yield built


@pytest.fixture(scope="session")
def browser(e2e_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with launch(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture
def context(browser: BrowserContext) -> BrowserContext:
    """The shared browser with no cookies left from an earlier test."""
    browser.clear_cookies()
    return browser


@pytest.fixture
def idps(world: World) -> Idps:
    return world.idps


@pytest.fixture(params=MODES, ids=[f"redirect={mode}" for mode in MODES])
def stack(request: pytest.FixtureRequest, world: World) -> Stack:
    """The stack for one redirect mode, its receiving ends' logs cleared."""
    chosen = world.stacks[request.param]
    chosen.clear()
    return chosen


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed scenario shows the tail of its proxy's log (JSON lines with each decision)."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, Stack):
        report.sections.append((f"proxy log ({stack.mode})", stack.proxy.log_text()))
    return report
