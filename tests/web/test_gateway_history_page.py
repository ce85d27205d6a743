"""A gateway's history page: its versions listed, a version restored through the form (with
and without htmx), the credentials kept, another company's gateway not found."""

from __future__ import annotations

import re

from tests.web.helpers import WebUser, sandbox_form, stripe_form
from tests.web.test_gateway_pages import create

CANARY_SECRET = "sk_test_CANARYhistoryPAGEsecret0004242"
ROTATED_SECRET = "sk_test_CANARYhistoryROTATEDsecret9999"


def restore_buttons(html: str) -> list[str]:
    return re.findall(r'aria-label="Restore version (\d+)"', html)


async def test_a_version_is_restored_through_the_history_page(
    owner: WebUser, rival: WebUser
) -> None:
    gateway_id = await create(owner, stripe_form(CANARY_SECRET, "http://127.0.0.1:9/"))
    edit = f"/gateways/{gateway_id}/edit"
    first = stripe_form("", "http://127.0.0.1:9/", name="Stripe EU", priority="10")
    assert (await owner.post(edit, first, page=edit)).status_code == 303
    second = stripe_form(ROTATED_SECRET, "http://127.0.0.1:9/", name="Stripe EU")
    second["priority"] = "10"
    assert (await owner.post(edit, second, page=edit)).status_code == 303

    cards = (await owner.client.get("/gateways")).text
    assert f'href="/gateways/{gateway_id}/history"' in cards
    assert 'aria-label="History of Stripe EU"' in cards

    history = f"/gateways/{gateway_id}/history"
    page = await owner.client.get(history)
    assert page.status_code == 200
    assert "History of Stripe EU" in page.text
    for summary in ("created", "name and priority changed", "secret key replaced"):
        assert summary in page.text
    assert restore_buttons(page.text) == ["2", "1"]  # not the current one
    assert CANARY_SECRET not in page.text
    assert ROTATED_SECRET not in page.text

    # Without htmx: a redirect back to the page, which says what happened.
    restored = await owner.post(f"/gateways/{gateway_id}/versions/1/restore", page=history)
    assert restored.status_code == 303, restored.text
    assert restored.headers["location"] == history
    after = (await owner.client.get(history)).text
    assert "kept its current credentials" in after
    assert "restored version 1" in after
    assert restore_buttons(after) == ["3", "2", "1"]
    read = await owner.client.get(f"/api/v1/gateways/{gateway_id}", headers=owner.bearer)
    assert (read.json()["name"], read.json()["priority"]) == ("Stripe", 100)
    assert read.json()["configuration"]["secret_key"] == "sk_test_...9999"

    # With htmx: the versions panel again, and the notice beside it.
    panel = await owner.post(f"/gateways/{gateway_id}/versions/3/restore", htmx=True, page=history)
    assert panel.status_code == 200, panel.text
    assert 'id="gateway-history"' in panel.text
    assert "<html" not in panel.text
    assert "Version 3 restored as version 5" in panel.text
    assert "the current secret key and webhook signing secret were kept" in panel.text

    # A version that does not exist, a bad number (the pages answer 400 for a bad path, as
    # routing's do), no CSRF token: refused, nothing changed.
    assert (
        await owner.post(f"/gateways/{gateway_id}/versions/9/restore", page=history)
    ).status_code == 404
    assert (
        await owner.post(f"/gateways/{gateway_id}/versions/0/restore", page=history)
    ).status_code == 400
    no_token = await owner.client.post(f"/gateways/{gateway_id}/versions/1/restore")
    assert no_token.status_code in (400, 403)

    # Another company's gateway: not found, page or form.
    assert (await rival.client.get(history)).status_code == 404
    refused = await rival.post(f"/gateways/{gateway_id}/versions/1/restore", page="/gateways")
    assert refused.status_code == 404
    assert restore_buttons((await owner.client.get(history)).text) == ["4", "3", "2", "1"]


async def test_a_sandbox_history_says_there_is_nothing_to_keep(owner: WebUser) -> None:
    gateway_id = await create(owner, sandbox_form())
    page = (await owner.client.get(f"/gateways/{gateway_id}/history")).text
    assert restore_buttons(page) == []
    assert "No changes yet" not in page
    assert "Current" in page
