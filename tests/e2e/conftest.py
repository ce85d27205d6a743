"""A real paygate HTTP server and a headless chromium for the browser tests.

The app runs under uvicorn in a thread with its lifespan on, so it builds its own
Database on the server's event loop (the shared `database` fixture is bound to the
test loop and cannot be used from another one).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from paygate.app import create_app
from paygate.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# What chromium logged against the Content-Security-Policy during the current test.
CSP_VIOLATIONS: list[str] = []


def _record_csp_violation(message: ConsoleMessage) -> None:
    text = message.text
    if "Refused to" in text or "Content Security Policy" in text:
        CSP_VIOLATIONS.append(
            f"{message.page.url if message.page else '?'}: {text} at {message.location}"
        )


def _guard_contexts(browser: Browser) -> None:
    """Every context the tests open reports CSP violations (chromium logs them as errors)."""
    new_context = browser.new_context

    def guarded(*args: Any, **kwargs: Any) -> BrowserContext:
        context = new_context(*args, **kwargs)
        context.on("console", _record_csp_violation)
        return context

    setattr(browser, "new_context", guarded)  # noqa: B010


@pytest.fixture(autouse=True)
def no_csp_violations() -> Iterator[None]:
    CSP_VIOLATIONS.clear()
    yield
    assert CSP_VIOLATIONS == [], CSP_VIOLATIONS


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(settings.model_copy(update={"host": "127.0.0.1", "port": port}))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="paygate-e2e", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the paygate test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module-scoped: sync Playwright keeps an event loop marked running while it is open,
    # which the asyncio tests that follow must not see. A missing chromium fails loudly.
    assert Path(CHROMIUM).exists(), "chromium is missing: `make test` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        _guard_contexts(browser)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def open_account_menu(page: Page) -> None:
    """The account menu (sessions, sign out) of the sidebar; on a phone, the menu first."""
    menu_button = page.locator("#menu-button")
    if menu_button.is_visible() and menu_button.get_attribute("aria-expanded") == "false":
        menu_button.click()
    if page.locator("details[data-account-menu][open]").count() == 0:
        page.locator("details[data-account-menu] > summary").click()
