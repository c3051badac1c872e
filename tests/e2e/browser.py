"""Debian's Chromium, driven by Playwright for Python, under realistic host names.

``--host-resolver-rules`` maps the customer's, WorkOS's and the application's host names to
loopback; each server listens on its own port, so the URLs carry it. Playwright never downloads a
browser here: it drives ``/usr/bin/chromium`` through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import BrowserContext, Playwright, Response, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = os.environ.get("SSO_PROXY_E2E_CHROMIUM", "/usr/bin/chromium")
HOSTS = ("login.customer.test", "auth.workos.test", "idp.customer.test", "app.globex.test")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # Ports are explicit and the hosts resolve to loopback: keep Chromium from trying https first.
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
    "--host-resolver-rules=" + ", ".join(f"MAP {host} 127.0.0.1" for host in HOSTS),
]


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when this machine has none."""
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


@contextmanager
def launch(user_data_dir: Path, spki: str | None = None, timeout_ms: int = 10_000) -> Iterator[BrowserContext]:
    """A persistent context on a fresh profile directory, closed on exit; with ``spki``, trusting
    exactly the test certificate of that public key (base64 SHA-256), as a TLS world needs."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium: apt-get install -y chromium")
    with sync_playwright() as playwright:
        context = _launch(playwright, executable, user_data_dir, spki, timeout_ms)
        try:
            yield context
        finally:
            context.close()


def _launch(
    playwright: Playwright, executable: str, user_data_dir: Path, spki: str | None = None, timeout_ms: int = 10_000
) -> BrowserContext:
    args = ARGS if spki is None else [*ARGS, f"--ignore-certificate-errors-spki-list={spki}"]
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=executable, headless=True, args=args
    )
    context.set_default_timeout(timeout_ms)
    context.set_default_navigation_timeout(timeout_ms)
    return context


@dataclass(frozen=True, slots=True)
class Hop:
    """One main-frame document response the browser got."""

    method: str
    url: str
    status: int
    sent_body: bytes | None  # the request body the browser sent
    set_cookies: tuple[str, ...]  # Set-Cookie values as the browser received them

    @property
    def bare_url(self) -> str:
        return self.url.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class Trip:
    """Where a browser tab went, and where it ended."""

    hops: tuple[Hop, ...]
    final_url: str
    text: str  # the final page's visible text

    def path(self) -> list[tuple[str, str, int]]:
        """(method, URL without query, status) of each hop, for readable assertions."""
        return [(hop.method, hop.bare_url, hop.status) for hop in self.hops]


def travel(context: BrowserContext, start: str, until: str) -> Trip:
    """Open ``start`` in a new tab and follow forms and redirects until the URL starts with ``until``.

    Main-frame document responses are recorded in order (redirects included). A flow that stops
    elsewhere fails with the hops it made instead of a bare timeout.
    """
    page = context.new_page()
    responses: list[Response] = []

    def record(response: Response) -> None:
        request = response.request
        if request.is_navigation_request() and request.frame == page.main_frame:
            responses.append(response)

    console: list[str] = []
    page.on("response", record)
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        try:
            # Expect the final document's load before starting: the chain of auto-submitting forms
            # and redirects may finish at any moment after the first response, and intermediate
            # navigations are aborted by the next form submission, which is how forms work.
            with page.expect_event("load", predicate=lambda p: p.url.startswith(until)):
                page.goto(start, wait_until="commit")
        except PlaywrightTimeoutError as exc:
            seen = [f"{r.request.method} {r.url} -> {r.status}" for r in responses]
            raise AssertionError(
                f"browser never reached {until}; it went: {seen}; console: {console}; "
                f"it shows {page.url}:\n{page.content()[:2000]}"
            ) from exc
        hops = tuple(
            Hop(
                method=r.request.method,
                url=r.url,
                status=r.status,
                sent_body=r.request.post_data_buffer,
                set_cookies=tuple(h["value"] for h in r.headers_array() if h["name"].lower() == "set-cookie"),
            )
            for r in responses
        )
        return Trip(hops=hops, final_url=page.url, text=page.inner_text("body"))
    finally:
        page.close()
