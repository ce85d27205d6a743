"""Every signed-in page and the pay page in headless chromium, at 1280, 1024, 768 and
390 px, for an owner of a company with something on every page (tests/e2e/seed.py).

Each page, at each width: no sideways scroll (`scrollWidth <= innerWidth`), no table
wider than its box, no console error, no CSP violation, no serious or critical axe-core
finding. Every sidebar entry is reached by clicking it (on a phone, through the menu
button's drawer), the account pages through the account menu. A full-page screenshot of
each page and width lands in test-artifacts/every-page/, whose path the test prints.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect

from paygate.settings import Settings
from paygate.web.navigation import NAV
from tests.e2e.axe import SERIOUS, axe_violations, with_axe
from tests.e2e.conftest import open_account_menu
from tests.e2e.seed import INTERNAL_NAME, PUBLIC_LABEL, Seeded, seed_company
from tests.fakes.custom_gateway import CustomGatewayEmulator

pytestmark = pytest.mark.browser

# (width, height): a laptop, a small laptop, a tablet upright, a phone.
VIEWPORTS = ((1280, 900), (1024, 768), (768, 1024), (390, 844))
ACCOUNT_MENU = (
    ("account", "Your account", "/account"),
    ("sessions", "Active sessions", "/account/sessions"),
)


def detail_pages(seeded: Seeded) -> list[tuple[str, str]]:
    """(name, path) of the signed-in pages the sidebar does not link to."""
    return [
        ("invoice-new", "/invoices/new"),
        ("invoice", f"/invoices/{seeded.invoice_id}"),
        ("gateway-new", "/gateways/new"),
        ("gateway-edit", f"/gateways/{seeded.sandbox_id}/edit"),
        ("gateway-history", f"/gateways/{seeded.acquirer_id}/history"),
        ("health-gateway", f"/health/gateways/{seeded.failing_gateway_id}"),
        ("routing-rule-new", "/routing/rules/new"),
        ("routing-rule-edit", f"/routing/rules/{seeded.rule_id}/edit"),
        ("routing-retries", "/routing/retries"),
        ("webhook-event", f"/webhook-events/{seeded.event_id}"),
        ("webhook-endpoint", f"/webhook-endpoints/{seeded.endpoint_id}"),
    ]


def nav_name(href: str) -> str:
    return href.strip("/").replace("/", "-")


def describe_js(element: str) -> str:
    return f"""{element}.tagName.toLowerCase() + ({element}.id ? '#' + {element}.id : '')
        + (typeof {element}.className === 'string' && {element}.className.trim()
           ? '.' + {element}.className.trim().split(/\\s+/).join('.') : '')"""


def cut_tables(page: Page) -> str | None:
    """Tables wider than their box: a scroll box hides their last columns."""
    wide = page.evaluate(
        f"""() => [...document.querySelectorAll('table')]
            .filter(t => t.offsetParent && t.scrollWidth > t.parentElement.clientWidth + 1)
            .map(t => {describe_js("t")} + ": " + t.scrollWidth
                + " > " + t.parentElement.clientWidth)"""
    )
    return f"tables wider than their box: {wide}" if wide else None


def overflow(page: Page) -> str | None:
    """What sticks out past the viewport's right edge, when the page scrolls sideways."""
    scroll, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if scroll <= inner:
        return None
    wide = page.evaluate(
        f"""(w) => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > w + 1)
            .slice(0, 6).map(e => {describe_js("e")})""",
        inner,
    )
    return f"scrolls sideways (scrollWidth {scroll} > {inner}): {wide}"


class Visitor:
    """One browser context at one width; `problems` collects what every check found."""

    def __init__(self, context: BrowserContext, base: str, width: int, folder: Path) -> None:
        self.page = context.new_page()
        self.base, self.width, self.folder = base, width, folder
        self.errors: list[str] = []
        self.problems: list[str] = []
        self.covered: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")

    def sign_in(self, seeded: Seeded) -> None:
        self.page.goto(f"{self.base}/login")
        self.page.get_by_label("Email").fill(seeded.email)
        self.page.get_by_label("Password").fill(seeded.password)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page).to_have_url(re.compile(r"/overview$"))

    def click_sidebar(self, href: str) -> None:
        """Click the entry as a person would: on a phone, open the drawer first."""
        menu = self.page.locator("#menu-button")
        if menu.is_visible():
            menu.click()
            expect(menu).to_have_attribute("aria-expanded", "true")
        link = self.page.locator(f'nav.side-nav a[href="{href}"]')
        link.click()
        self.page.wait_for_url(f"{self.base}{href}")
        expect(link).to_have_attribute("aria-current", "page")

    def click_account_link(self, label: str, path: str) -> None:
        open_account_menu(self.page)
        self.page.locator("details[data-account-menu]").get_by_role("link", name=label).click()
        self.page.wait_for_url(f"{self.base}{path}")

    def check(self, name: str) -> None:
        page, width = self.page, self.width
        page.evaluate("window.scrollTo(0, 0)")
        found = [*self.errors]
        self.errors.clear()
        for layout in (overflow(page), cut_tables(page)):
            if layout is not None:
                found.append(layout)
        found += [f"axe {v}" for v in axe_violations(page, impacts=SERIOUS, tags=None)]
        page.screenshot(path=str(self.folder / f"{name}-{width}.png"), full_page=True)
        self.problems += [f"{name} at {width}px: {problem}" for problem in found]
        self.covered.append(name)


@pytest.fixture(scope="module")
def seeded(
    live_server: str, settings: Settings, _custom_gateway_server: CustomGatewayEmulator
) -> Iterator[Seeded]:
    """One company for every width (the emulator is only called while seeding)."""
    emulator = _custom_gateway_server
    emulator.reset()
    try:
        yield seed_company(live_server, settings, emulator, "Umbrella Payments")
    finally:
        emulator.reset()


@pytest.fixture(scope="module")
def folder(artifacts: Path) -> Path:
    """This run's screenshots only: the previous run's are removed."""
    folder = artifacts / "every-page"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


@pytest.mark.parametrize(("width", "height"), VIEWPORTS, ids=[f"{w}px" for w, _ in VIEWPORTS])
def test_every_page(
    width: int,
    height: int,
    browser: Any,
    live_server: str,
    seeded: Seeded,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    context = with_axe(browser.new_context(viewport={"width": width, "height": height}))
    context.set_default_timeout(10_000)
    visitor = Visitor(context, live_server, width, folder)
    visitor.sign_in(seeded)
    for entry in NAV:
        visitor.click_sidebar(entry.href)
        visitor.check(nav_name(entry.href))
    for name, label, path in ACCOUNT_MENU:
        visitor.click_account_link(label, path)
        visitor.check(name)
    for name, path in detail_pages(seeded):
        visitor.page.goto(f"{live_server}{path}")
        visitor.check(name)
    # The customer's side: public labels only, never the team's name for a gateway.
    visitor.page.goto(seeded.pay_url)
    choices = visitor.page.locator("label.pay-gateway")
    expect(choices).to_have_count(2)
    expect(choices.filter(has_text=PUBLIC_LABEL)).to_be_visible()
    assert INTERNAL_NAME not in visitor.page.content()
    visitor.check("pay")
    context.close()

    with capsys.disabled():
        pages = visitor.covered
        print(f"\n{len(pages)} pages at {width}px ({', '.join(pages)}); screenshots in {folder}")
    assert len(pages) == len(NAV) + len(ACCOUNT_MENU) + len(detail_pages(seeded)) + 1
    assert visitor.problems == [], "\n".join(visitor.problems)
