"""A failover walks the routing decision the payment was reserved with, without deciding
again, but reads the next gateway as it is now."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import update

from paygate.db import Database
from paygate.gateways.models import Gateway
from paygate.payments import failover
from paygate.routing import decision
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.servers import closed_port_url
from tests.payments.helpers import create_invoice, custom, pay
from tests.routing.helpers import add_rule, priority


async def three_gateways(
    client: httpx.AsyncClient, tenant: Tenant, emulator: CustomGatewayEmulator
) -> tuple[str, str, str]:
    """A (nothing listens: refused, so it fails over), then B, then C (both the emulator)."""
    a = await custom(client, tenant, "A", closed_port_url(), emulator.api_key)
    b = await custom(client, tenant, "B", emulator.base_url, emulator.api_key)
    c = await custom(client, tenant, "C", emulator.base_url, emulator.api_key)
    await add_rule(client, tenant, "A, B, C", priority(a["id"], b["id"], c["id"]))
    return a["id"], b["id"], c["id"]


async def test_a_failover_does_not_decide_again(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, _ = await three_gateways(client, tenant, custom_gateway_emulator)
    decided: list[str] = []
    real = decision.load_inputs

    async def counted(*args: Any, **kwargs: Any) -> decision.Inputs:
        decided.append("inputs")
        return await real(*args, **kwargs)

    monkeypatch.setattr(decision, "load_inputs", counted)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"], payment_method="tok_visa")
    assert payment["status"] == "succeeded"
    assert [x["gateway_id"] for x in payment["attempts"]] == [a, b]
    # Routing's inputs were read once, when the payment was reserved.
    assert decided == ["inputs"]
    # The failed attempt keeps its code, latency and call, as after any failover.
    failed = payment["attempts"][0]
    assert (failed["status"], failed["error_code"]) == ("failed", "gateway_unavailable")
    assert failed["latency_ms"] is not None
    listed = await client.get(
        "/api/v1/gateway-calls", params={"payment_id": payment["id"]}, headers=tenant.headers
    )
    calls = sorted((c["gateway_id"], c["outcome"]) for c in listed.json())
    assert calls == sorted([(a, "unreachable"), (b, "ok")])


async def test_a_gateway_disabled_during_the_first_call_is_not_failed_over_to(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, c = await three_gateways(client, tenant, custom_gateway_emulator)
    real = failover.attempt_once

    async def b_disabled_meanwhile(config: Any, request: Any) -> Any:
        outcome = await real(config, request)
        async with database.transaction() as session:
            await session.execute(update(Gateway).where(Gateway.id == b).values(enabled=False))
        return outcome

    monkeypatch.setattr(failover, "attempt_once", b_disabled_meanwhile)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"], payment_method="tok_visa")
    assert payment["status"] == "succeeded"
    assert [x["gateway_id"] for x in payment["attempts"]] == [a, c]
    assert [x["status"] for x in payment["attempts"]] == ["failed", "succeeded"]
    made = list(custom_gateway_emulator.state.payments.values())
    assert [p["reference"] for p in made] == [payment["id"]]
