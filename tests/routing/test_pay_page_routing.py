"""The payment page follows routing: its order, gateways down left out, and after a
technical failure the next gateway offered first."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.routing.models import GatewayBreaker
from tests.conftest import Tenant
from tests.fakes.servers import closed_port_url
from tests.gateways.helpers import create_gateway, stripe_payload
from tests.payments.helpers import create_invoice
from tests.routing.helpers import add_rule, priority, sandbox
from tests.web.helpers import csrf_of, new_client
from tests.web.test_pay_page import hidden, path_of


@pytest.fixture
async def customer(app: Any) -> Any:
    async with new_client(app) as browser:
        yield browser


def offered(page: str) -> list[str]:
    """The gateway ids the page offers, in the order it shows them."""
    return list(dict.fromkeys(re.findall(r'data-gateway-panel="(gw_\w+)"', page)))


async def test_the_page_offers_gateways_in_routing_order_and_leaves_out_the_down(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    customer: httpx.AsyncClient,
    database: Database,
) -> None:
    a = await sandbox(client, tenant, "Alpha")
    b = await sandbox(client, tenant, "Beta")
    c = await sandbox(client, tenant, "Gamma")
    await sandbox(client, other_tenant, "Theirs")
    invoice = await create_invoice(
        client,
        tenant,
        metadata={"plan": "pro"},
        customer={"name": "Jane", "email": "jane@example.com", "country": "de"},
    )
    assert invoice["customer"]["country"] == "DE"
    assert offered((await customer.get(path_of(invoice))).text) == [a, b, c]
    await add_rule(
        client,
        tenant,
        "Pro customers in Germany",
        priority(c, a),
        conditions={"metadata": {"plan": "pro"}, "customer_countries": ["DE"]},
    )
    page = (await customer.get(path_of(invoice))).text
    assert offered(page) == [c, a]
    # The first choice is the one selected.
    assert hidden(page, "gateway_id") == c
    async with database.transaction() as session:
        await session.execute(
            insert(GatewayBreaker).values(
                gateway_id=c,
                company_id=tenant.company_id,
                state="open",
                consecutive_failures=5,
                opened_at=utcnow(),
            )
        )
    assert offered((await customer.get(path_of(invoice))).text) == [a]


async def test_a_technical_failure_offers_the_next_gateway(
    client: httpx.AsyncClient, tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    stripe = await create_gateway(client, tenant, stripe_payload(closed_port_url()))
    backup = await sandbox(client, tenant, "Backup sandbox")
    invoice = await create_invoice(client, tenant)
    page = (await customer.get(path_of(invoice))).text
    assert offered(page) == [stripe["id"], backup]
    form = {
        "csrf_token": csrf_of(page),
        "nonce": hidden(page, "nonce"),
        "gateway_id": stripe["id"],
        "method_type": "card",
        "amount": "",
        "payment_method": "pm_card_visa",
    }
    paid = await customer.post(f"{path_of(invoice)}/payments", data=form)
    assert paid.status_code == 303, paid.text
    result = (await customer.get(paid.headers["location"])).text
    assert "Payment failed" in result
    # Customers read public labels (here the defaults), never the team's internal names.
    assert (
        "Card via Stripe is not available right now: you can pay with Test card (sandbox)" in result
    )
    assert "Stripe US" not in result
    assert "Backup sandbox" not in result
    assert f"?gateway={backup}#ways" in result
    # The card form of the next gateway is the one open.
    assert hidden(result, "gateway_id") == backup or re.search(
        rf'data-gateway-panel="{backup}"(?! hidden)', result
    )
