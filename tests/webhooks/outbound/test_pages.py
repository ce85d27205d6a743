"""The webhooks pages: an endpoint added with its secret shown once, refused forms with
their errors, the delivery log after a test event, rotation, redelivery, another company's
endpoint not found."""

from __future__ import annotations

import re

from paygate.db import Database
from paygate.webhooks.outbound.dispatch import Dispatcher
from tests.web.helpers import WebUser
from tests.webhooks.outbound.conftest import run_jobs
from tests.webhooks.outbound.receiver import Receiver

SECRET = re.compile(r'id="new-secret" class="mono" value="(whsec_[^"]+)"')
ENDPOINT_LINK = re.compile(r'href="/webhook-endpoints/(ep_[A-Za-z0-9]+)"')


async def add_endpoint(owner: WebUser, url: str, *events: str) -> tuple[str, str]:
    created = await owner.post(
        "/webhook-endpoints",
        {"url": url, "description": "Orders", "event_types": list(events)},
        htmx=True,
        page="/webhook-endpoints",
    )
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    match = SECRET.search(created.text)
    assert match is not None
    link = ENDPOINT_LINK.search(created.text)
    assert link is not None
    return link.group(1), match.group(1)


async def test_an_endpoint_added_on_the_page_shows_its_secret_once(
    owner: WebUser, rival: WebUser, receiver: Receiver
) -> None:
    page = await owner.client.get("/webhook-endpoints")
    assert page.status_code == 200
    assert "No endpoints yet" in page.text
    assert 'value="payment.succeeded"' in page.text

    endpoint_id, secret = await add_endpoint(
        owner, receiver.url(), "payment.succeeded", "invoice.paid"
    )
    listing = (await owner.client.get("/webhook-endpoints")).text
    assert secret not in listing
    assert f"whsec_...{secret[-4:]}" in listing
    detail = await owner.client.get(f"/webhook-endpoints/{endpoint_id}")
    assert detail.status_code == 200
    assert secret not in detail.text
    assert "No deliveries yet" in detail.text

    # Another company's endpoint is not found, page or action.
    assert (await rival.client.get(f"/webhook-endpoints/{endpoint_id}")).status_code == 404
    refused = await rival.post(
        f"/webhook-endpoints/{endpoint_id}/delete", page="/webhook-endpoints"
    )
    assert refused.status_code == 404
    assert (await owner.client.get(f"/webhook-endpoints/{endpoint_id}")).status_code == 200


async def test_a_refused_form_shows_its_errors_and_adds_nothing(
    owner: WebUser, receiver: Receiver
) -> None:
    refused = await owner.post(
        "/webhook-endpoints",
        {"url": "ftp://example.com/x", "event_types": ["invoice.paid"]},
        htmx=True,
        page="/webhook-endpoints",
    )
    assert refused.status_code == 422
    assert 'aria-invalid="true"' in refused.text
    assert "must be an http(s) URL" in refused.text
    assert "ftp://example.com/x" in refused.text  # what was typed stays
    assert SECRET.search(refused.text) is None
    assert "No endpoints yet" in (await owner.client.get("/webhook-endpoints")).text
    plain = await owner.post(
        "/webhook-endpoints", {"url": receiver.url()}, page="/webhook-endpoints"
    )
    assert plain.status_code == 422
    assert "Events" in plain.text
    assert "field-error" in plain.text
    assert "<html" in plain.text  # without htmx: the whole page with the errors


async def test_the_delivery_log_rotation_and_redelivery(
    owner: WebUser, receiver: Receiver, database: Database, dispatcher: Dispatcher
) -> None:
    endpoint_id, secret = await add_endpoint(owner, receiver.url(), "invoice.paid")
    receiver.secrets.append(secret)
    receiver.plan.append(500)
    page = f"/webhook-endpoints/{endpoint_id}"
    queued = await owner.post(f"{page}/test", htmx=True, page=page)
    assert queued.status_code == 200, queued.text
    assert "webhook.test" in queued.text
    found = re.search(r'id="delivery-(dlv_[A-Za-z0-9]+)"', queued.text)
    assert found is not None
    delivery_id = found.group(1)
    await run_jobs(database, dispatcher, {delivery_id})

    log = (await owner.client.get(page)).text
    assert "Retrying" in log
    assert "HTTP 500" in log
    retried = await owner.post(f"{page}/deliveries/{delivery_id}/redeliver", htmx=True, page=page)
    assert retried.status_code == 200
    await run_jobs(database, dispatcher, {delivery_id})
    log = (await owner.client.get(f"{page}?status=succeeded")).text
    assert "Delivered" in log
    assert "HTTP 200" in log
    assert len(receiver.verified()) == 2

    rotated = await owner.post(f"{page}/rotate", {"grace_period_hours": "1"}, htmx=True, page=page)
    assert rotated.status_code == 200
    new_secret = SECRET.search(rotated.text).group(1)  # type: ignore[union-attr]
    assert new_secret != secret
    assert "The previous secret also signs until" in rotated.text
    assert new_secret not in (await owner.client.get(page)).text

    saved = await owner.post(
        f"{page}/edit",
        {"url": receiver.url("moved"), "event_types": ["refund.failed"], "description": ""},
        htmx=True,
        page=page,
    )
    assert saved.status_code == 200
    assert "Disabled" in saved.text  # the enabled box was left unticked
    bad = await owner.post(f"{page}/edit", {"url": "", "event_types": []}, htmx=True, page=page)
    assert bad.status_code == 422

    gone = await owner.post(f"{page}/delete", htmx=True, page=page)
    assert gone.headers.get("hx-redirect") == "/webhook-endpoints"
    assert (await owner.client.get(page)).status_code == 404


async def test_disable_refuses_test_events_and_enable_sends_them_again(
    owner: WebUser, receiver: Receiver
) -> None:
    endpoint_id, _ = await add_endpoint(owner, receiver.url(), "invoice.paid")
    page = f"/webhook-endpoints/{endpoint_id}"
    disabled = await owner.post(f"{page}/disable", htmx=True, page=page)
    assert disabled.status_code == 200
    assert "no events are sent to it" in disabled.text
    refused = await owner.post(f"{page}/test", htmx=True, page=page)
    assert refused.status_code == 200
    assert 'class="notice notice-error" role="alert"' in refused.text
    assert "webhook.test" not in refused.text
    enabled = await owner.post(f"{page}/enable", htmx=True, page=page)
    assert "sent to it again" in enabled.text
    queued = await owner.post(f"{page}/test", htmx=True, page=page)
    assert "Test event queued" in queued.text
    assert "webhook.test" in queued.text


def restore_buttons(html: str) -> list[str]:
    return re.findall(r'aria-label="Restore version (\d+)"', html)


async def test_the_history_section_restores_a_version_through_its_form(
    owner: WebUser, rival: WebUser, receiver: Receiver
) -> None:
    endpoint_id, secret = await add_endpoint(owner, receiver.url(), "invoice.paid")
    page = f"/webhook-endpoints/{endpoint_id}"
    moved = {
        "url": receiver.url("moved"),
        "description": "Orders",
        "event_types": ["refund.failed"],
        "enabled": "on",
    }
    assert (await owner.post(f"{page}/edit", moved, htmx=True, page=page)).status_code == 200
    rotated = await owner.post(f"{page}/rotate", {"grace_period_hours": "0"}, htmx=True, page=page)
    new_secret = SECRET.search(rotated.text).group(1)  # type: ignore[union-attr]
    # The panel an htmx change answers carries the history too: it never goes stale.
    assert "signing secret rotated" in rotated.text

    detail = (await owner.client.get(page)).text
    assert 'id="endpoint-history"' in detail
    assert "URL and events changed" in detail
    assert restore_buttons(detail) == ["2", "1"]
    assert secret not in detail
    assert new_secret not in detail

    # Without htmx: the whole page, with the notice.
    restored = await owner.post(f"{page}/versions/1/restore", page=page)
    assert restored.status_code == 200, restored.text
    assert "<html" in restored.text
    assert "Version 1 restored as version 4" in restored.text
    assert "the current signing secret was kept" in restored.text
    shown = await owner.client.get(f"/api/v1/webhook-endpoints/{endpoint_id}", headers=owner.bearer)
    assert (shown.json()["url"], shown.json()["event_types"]) == (receiver.url(), ["invoice.paid"])
    assert shown.json()["secret"]["masked"] == f"whsec_...{new_secret[-4:]}"

    # With htmx: the endpoint panel again.
    panel = await owner.post(f"{page}/versions/2/restore", htmx=True, page=page)
    assert panel.status_code == 200
    assert 'id="endpoint-panel"' in panel.text
    assert "<html" not in panel.text
    assert restore_buttons(panel.text) == ["4", "3", "2", "1"]

    missing = await owner.post(f"{page}/versions/9/restore", page=page)
    assert missing.status_code == 404
    assert (
        await rival.post(f"{page}/versions/1/restore", page="/webhook-endpoints")
    ).status_code == 404
    assert len(restore_buttons((await owner.client.get(page)).text)) == 4
