"""Names a user typed are shown as text, never run as HTML (stored XSS)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from paygate.web.render import TEMPLATES_DIR, templates
from tests.web.helpers import csrf_of, new_client, sign_up

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
# Breaks out of an attribute value if quotes are not escaped.
ATTRIBUTE = '"><img src=x onerror=alert(2)>'


def assert_shown_as_text(html: str, page: str) -> None:
    assert SCRIPT not in html, page
    assert ATTRIBUTE not in html, page
    assert "<img src=x" not in html, page
    assert ESCAPED_SCRIPT in html, page


async def test_names_with_markup_render_escaped_on_every_page(app: Any) -> None:
    async with new_client(app) as browser:
        user = await sign_up(browser, company_name=f"Evil {SCRIPT}")
        gateway = await browser.post(
            "/api/v1/gateways",
            json={"gateway_type": "sandbox", "name": f"{SCRIPT}{ATTRIBUTE}"[:100]},
            headers=user.bearer,
        )
        assert gateway.status_code == 201, gateway.text
        invoice = await browser.post(
            "/api/v1/invoices",
            json={
                "customer": {"name": f"{SCRIPT} {ATTRIBUTE}", "email": "evil@example.com"},
                "currency": "USD",
                "line_items": [
                    {"description": f"{SCRIPT} {ATTRIBUTE}", "quantity": 1, "unit_amount": 500}
                ],
                "memo": f"{SCRIPT} {ATTRIBUTE}",
            },
            headers=user.bearer,
        )
        assert invoice.status_code == 201, invoice.text
        invoice_id = invoice.json()["id"]
        pay_path = httpx.URL(invoice.json()["pay_url"]).path

        for page in ("/gateways", "/invoices", f"/invoices/{invoice_id}", "/audit"):
            response = await browser.get(page)
            assert response.status_code == 200, (page, response.text[:300])
            assert_shown_as_text(response.text, page)

    # The customer's payment page: no session, the company and invoice data still escaped.
    async with new_client(app) as customer:
        response = await customer.get(pay_path)
        assert response.status_code == 200, response.text[:300]
        assert_shown_as_text(response.text, pay_path)


def test_every_template_is_autoescaped_and_none_marks_data_safe() -> None:
    files = sorted(Path(TEMPLATES_DIR).rglob("*.html"))
    assert len(files) > 20
    for template in files:
        name = template.relative_to(TEMPLATES_DIR).as_posix()
        assert callable(templates.autoescape)
        assert templates.autoescape(name), name
        source = template.read_text()
        assert not re.search(r"\|\s*safe\b", source), f"{name} marks data safe"
        assert "autoescape false" not in source, name


async def test_a_hostile_user_agent_and_api_key_name_render_escaped(app: Any) -> None:
    """Text the client chooses (its User-Agent header, an API key's name) is shown on the
    sessions, audit and encryption keys pages as text."""
    async with new_client(app) as browser, new_client(app) as hostile, new_client(app) as rival:
        owner = await sign_up(browser)
        # The second company keeps a session of its own; its pages show none of this.
        other = await sign_up(rival)

        hostile.headers["User-Agent"] = f"{SCRIPT}{ATTRIBUTE}"
        page = await hostile.get("/login")
        signed_in = await hostile.post(
            "/login",
            data={
                "email": owner.email,
                "password": owner.password,
                "csrf_token": csrf_of(page.text),
            },
        )
        assert signed_in.status_code == 303, signed_in.text

        api_key = await browser.post(
            "/api/v1/api-keys",
            json={"name": f"{SCRIPT}{ATTRIBUTE}"[:100], "scopes": ["keys:rotate"]},
            headers=owner.bearer,
        )
        assert api_key.status_code == 201, api_key.text
        started = await browser.post(
            "/api/v1/security/key-rotations",
            headers={"Authorization": f"Bearer {api_key.json()['key']}"},
        )
        assert started.status_code == 202, started.text

        for path in ("/account/sessions", "/audit", "/security/keys"):
            response = await browser.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            assert_shown_as_text(response.text, path)
        # The hostile session's own view of its sessions is escaped too.
        mine = await hostile.get("/account/sessions")
        assert_shown_as_text(mine.text, "/account/sessions (hostile browser)")
        for path in ("/account/sessions", "/audit", "/security/keys"):
            theirs = await other.client.get(path)
            assert theirs.status_code == 200, (path, theirs.text[:300])
            assert ESCAPED_SCRIPT not in theirs.text, path
