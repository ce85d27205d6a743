"""End to end with localstripe's own webhooks: a running paygate (HTTP server and worker)
registers its URL through the webhook endpoints API; localstripe then signs and sends its
events to paygate, whose worker settles payments whose API answer never came back (the
gateway answered too late)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from paygate.app import create_app
from paygate.settings import Settings
from tests.conftest import register
from tests.fakes.stripe_checkout import StripeCheckoutEmulator
from tests.payments.helpers import create_invoice, pay
from tests.webhooks.inbound.helpers import stripe_gateway

# The test settings give gateways 2 s: an answer this late never reaches paygate.
LATE = 2.5


@pytest.fixture(scope="module")
def paygate_server(settings: Settings) -> Iterator[str]:
    """paygate as deployed: uvicorn with its lifespan, so its worker runs beside it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(
        settings.model_copy(update={"host": "127.0.0.1", "port": port, "run_worker": True})
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="paygate-webhooks", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("paygate did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
async def paygate(paygate_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=paygate_server, timeout=15) as client:
        yield client


async def _until(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], done: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + 25
    while True:
        body: dict[str, Any] = (await client.get(path, headers=headers)).json()
        if done(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.25)


@pytest.mark.parametrize(
    ("card", "expected", "event_type"),
    [
        ("pm_card_visa", "succeeded", "payment_intent.succeeded"),
        ("pm_card_chargeCustomerFail", "failed", "payment_intent.payment_failed"),
    ],
)
async def test_localstripe_events_settle_payments_whose_answer_was_lost(
    paygate: httpx.AsyncClient,
    stripe_api: StripeCheckoutEmulator,
    card: str,
    expected: str,
    event_type: str,
) -> None:
    tenant = await register(paygate, f"Webhooks E2E {card}")
    gateway = await stripe_gateway(paygate, tenant, stripe_api.base_url, webhook_secret=None)
    registered = await paygate.post(
        f"/api/v1/gateways/{gateway['id']}/webhook/register", headers=tenant.headers
    )
    assert registered.status_code == 200, registered.text
    base = str(paygate.base_url).rstrip("/")
    assert registered.json()["url"] == f"{base}/webhooks/{gateway['id']}"

    invoice = await create_invoice(paygate, tenant, amount=4_200)
    stripe_api.answer_delay_seconds = LATE
    started = await pay(
        paygate, tenant, invoice["id"], gateway_id=gateway["id"], payment_method=card
    )
    stripe_api.answer_delay_seconds = 0
    # localstripe sends its event about a second after the charge, before paygate gives up
    # on the answer (2 s): the webhook may settle the payment even before the API answers.

    final = await _until(
        paygate,
        f"/api/v1/payments/{started['id']}",
        tenant.headers,
        lambda p: p["status"] != "processing",
    )
    assert final["status"] == expected, final
    settled = next(e for e in final["events"] if e["to_status"] == expected)
    assert "webhook" in settled["cause"], final["events"]

    events = await _until(
        paygate,
        "/api/v1/webhook-events?type=" + event_type,
        tenant.headers,
        lambda page: any(e["status"] == "processed" for e in page["data"]),
    )
    processed = [e for e in events["data"] if e["payment_id"] == started["id"]]
    assert processed
    assert processed[0]["verified"] is True
    assert "current secret" in processed[0]["verification"]
    assert processed[0]["provider_event_id"].startswith("evt_")
