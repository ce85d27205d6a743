"""Stripe webhooks: the Stripe-Signature scheme exactly as Stripe documents it (checked
against the official SDK's own verifier), and "Register with the provider" through the
webhook endpoints API the emulator adds to localstripe."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import text

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.settings import Settings
from paygate.webhooks.inbound import receive as receive_module
from tests.conftest import Tenant
from tests.fakes.stripe_checkout import StripeCheckoutEmulator
from tests.statements import statements_sent
from tests.webhooks.inbound.helpers import (
    STRIPE_SECRET,
    deliver,
    event,
    new_secret,
    stripe_delivery,
    stripe_event,
    stripe_gateway,
)

INTENT = {
    "id": "pi_unknown_to_paygate",
    "object": "payment_intent",
    "amount": 1000,
    "currency": "usd",
    "status": "succeeded",
    "metadata": {},
}


@pytest.fixture
async def gateway(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, stripe_api: Any
) -> dict[str, Any]:
    return await stripe_gateway(client, tenant, stripe_api.base_url, webhook_secret=STRIPE_SECRET)


async def _refused(client: httpx.AsyncClient, gateway_id: str, body: bytes, headers: Any) -> str:
    response = await deliver(client, gateway_id, body, headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail: str = response.json()["detail"]
    return detail


async def test_the_stripe_signature_is_checked_as_stripe_documents_it(
    client: httpx.AsyncClient, tenant: Tenant, gateway: dict[str, Any]
) -> None:
    gid = gateway["id"]
    now = int(time.time())
    body, headers = stripe_delivery(
        stripe_event("payment_intent.succeeded", INTENT), [STRIPE_SECRET]
    )
    # The official SDK agrees with the signature the tests make.
    stripe.Webhook.construct_event(body, headers["stripe-signature"], STRIPE_SECRET)
    accepted = await deliver(client, gid, body, headers)
    assert accepted.status_code == 200, accepted.text

    def signed(secrets_: list[str], at: int = now) -> tuple[bytes, dict[str, str]]:
        return stripe_delivery(stripe_event("payment_intent.succeeded", INTENT), secrets_, at=at)

    assert "no v1 signature matches" in await _refused(client, gid, *signed([new_secret()]))
    tampered_body, tampered_headers = signed([STRIPE_SECRET])
    tampered = tampered_body.replace(b"1000", b"9000")
    assert "no v1 signature matches" in await _refused(client, gid, tampered, tampered_headers)
    # 30 s past the tolerance: `now` is truncated and the requests take time on a busy machine.
    assert "5 minutes old" in await _refused(client, gid, *signed([STRIPE_SECRET], now - 330))
    assert "in the future" in await _refused(client, gid, *signed([STRIPE_SECRET], now + 330))
    missing_body, _ = signed([STRIPE_SECRET])
    assert "header is missing" in await _refused(client, gid, missing_body, {})
    no_t_body, no_t = signed([STRIPE_SECRET])
    only_v1 = {"stripe-signature": no_t["stripe-signature"].split(",", 1)[1]}
    assert "timestamp" in await _refused(client, gid, no_t_body, only_v1)
    v0_body, v0 = signed([STRIPE_SECRET])
    as_v0 = {"stripe-signature": v0["stripe-signature"].replace("v1=", "v0=")}
    assert "no v1 signature" in await _refused(client, gid, v0_body, as_v0)
    # Several v1 (Stripe rolling the endpoint's secret): any one matching is enough.
    several_body, several = signed([new_secret(), STRIPE_SECRET, new_secret()])
    assert (await deliver(client, gid, several_body, several)).status_code == 200
    # Within the tolerance both ways.
    for skew in (-290, 290):
        assert (await deliver(client, gid, *signed([STRIPE_SECRET], now + skew))).status_code == 200


async def test_a_replaced_secret_verifies_during_its_grace_only(
    client: httpx.AsyncClient, tenant: Tenant, gateway: dict[str, Any], database: Database
) -> None:
    new = "whsec_" + "n3w" * 11
    patched = await client.patch(
        f"/api/v1/gateways/{gateway['id']}",
        json={"configuration": {"webhook_secret": new}, "previous_secret_grace_hours": 24},
        headers=tenant.headers,
    )
    assert patched.status_code == 200
    old = stripe_delivery(stripe_event("payment_intent.succeeded", INTENT), [STRIPE_SECRET])
    response = await deliver(client, gateway["id"], *old)
    assert response.status_code == 200
    assert "previous secret" in (await event(client, tenant, response.json()["id"]))["verification"]
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE gateways SET secret_hints = jsonb_set(secret_hints, "
                "'{webhook_secret,previous_valid_until}', to_jsonb(CAST(:t AS text))) "
                "WHERE id = :id"
            ),
            {"t": utcnow().isoformat(), "id": gateway["id"]},
        )
    after = stripe_delivery(stripe_event("payment_intent.succeeded", INTENT), [STRIPE_SECRET])
    assert "no v1 signature matches" in await _refused(client, gateway["id"], *after)
    fresh = stripe_delivery(stripe_event("payment_intent.succeeded", INTENT), [new])
    assert (await deliver(client, gateway["id"], *fresh)).status_code == 200


async def test_register_with_stripe_stores_the_signing_secret_encrypted(
    client: httpx.AsyncClient,
    tenant: Tenant,
    stripe_api: StripeCheckoutEmulator,
    settings: Settings,
) -> None:
    gateway = await stripe_gateway(client, tenant, stripe_api.base_url, webhook_secret=None)
    setup = await client.get(f"/api/v1/gateways/{gateway['id']}/webhook", headers=tenant.headers)
    assert setup.status_code == 200
    assert setup.json()["url"] == f"{settings.base_url}/webhooks/{gateway['id']}"
    assert setup.json()["configured"] is False
    assert setup.json()["can_register"] is True
    assert "payment_intent.succeeded" in setup.json()["events"]

    registered = await client.post(
        f"/api/v1/gateways/{gateway['id']}/webhook/register", headers=tenant.headers
    )
    assert registered.status_code == 200, registered.text
    answer = registered.json()
    assert answer["stored"] == ["webhook_secret"]
    endpoint_id = answer["endpoint_id"]
    secret = stripe_api.webhook_endpoints.secret_of(endpoint_id)
    assert secret not in registered.text
    endpoint = stripe_api.webhook_endpoints.endpoints[endpoint_id][1]
    assert endpoint["url"] == setup.json()["url"]
    assert "charge.dispute.created" in endpoint["enabled_events"]
    card = (await client.get(f"/api/v1/gateways/{gateway['id']}", headers=tenant.headers)).json()
    assert card["credentials"]["webhook_secret"]["masked"].startswith("whsec_...")
    assert secret not in str(card)
    # Events signed with the secret Stripe returned are accepted.
    signed = stripe_delivery(stripe_event("payment_intent.succeeded", INTENT), [secret])
    assert (await deliver(client, gateway["id"], *signed)).status_code == 200
    # Registering again replaces it; the first stays accepted during the grace.
    again = await client.post(
        f"/api/v1/gateways/{gateway['id']}/webhook/register", headers=tenant.headers
    )
    second = stripe_api.webhook_endpoints.secret_of(again.json()["endpoint_id"])
    for used in (secret, second):
        ok = stripe_delivery(stripe_event("payment_intent.succeeded", INTENT), [used])
        assert (await deliver(client, gateway["id"], *ok)).status_code == 200
    audit = await client.get(
        "/api/v1/audit-log",
        params={"action": "gateway.webhook_registered"},
        headers=tenant.headers,
    )
    assert len(audit.json()["data"]) == 2
    assert secret not in audit.text
    assert second not in audit.text


async def test_registration_is_for_admins_and_refusals_are_clear(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    stripe_api: StripeCheckoutEmulator,
) -> None:
    gateway = await stripe_gateway(client, tenant, stripe_api.base_url, webhook_secret=None)
    for path in ("webhook", "webhook/register"):
        url = f"/api/v1/gateways/{gateway['id']}/{path}"
        method = client.get if path == "webhook" else client.post
        assert (await method(url, headers=other_tenant.headers)).status_code == 404
    stripe_api.knobs.fail_status = 500
    refused = await client.post(
        f"/api/v1/gateways/{gateway['id']}/webhook/register", headers=tenant.headers
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/webhook-registration-failed")


async def test_a_gateway_kept_by_the_receiver_never_outlives_a_change_of_its_secret(
    client: httpx.AsyncClient, tenant: Tenant, gateway: dict[str, Any], database: Database
) -> None:
    """The receiver keeps the gateway it read (one statement per webhook after the first);
    the store statement checks the row is unchanged, so a secret replaced without grace
    refuses the old signature at once and accepts the new one at once."""

    def delivery(secret: str) -> tuple[bytes, dict[str, str]]:
        return stripe_delivery(stripe_event("payment_intent.succeeded", INTENT), [secret])

    assert (await deliver(client, gateway["id"], *delivery(STRIPE_SECRET))).status_code == 200
    with statements_sent() as statements:
        kept = await deliver(client, gateway["id"], *delivery(STRIPE_SECRET))
    assert kept.status_code == 200
    assert len(statements) == 1, statements  # stored; the gateway was not read again
    new = "whsec_" + "r0t" * 11
    patched = await client.patch(
        f"/api/v1/gateways/{gateway['id']}",
        json={"configuration": {"webhook_secret": new}, "previous_secret_grace_hours": 0},
        headers=tenant.headers,
    )
    assert patched.status_code == 200, patched.text
    assert "no v1 signature matches" in await _refused(
        client, gateway["id"], *delivery(STRIPE_SECRET)
    )
    accepted = await deliver(client, gateway["id"], *delivery(new))
    assert accepted.status_code == 200, accepted.text
    assert "current secret" in (await event(client, tenant, accepted.json()["id"]))["verification"]
    async with database.transaction() as session:
        stored = await session.execute(
            text(
                "SELECT verified, count(*) FROM webhook_events WHERE gateway_id = :id"
                " GROUP BY verified ORDER BY verified"
            ),
            {"id": gateway["id"]},
        )
        assert stored.tuples().all() == [(False, 1), (True, 3)]


async def test_a_gateway_changing_under_every_verification_is_answered_503_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    gateway: dict[str, Any],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The receiver stores only with the gateway's row as it verified with; a row that
    changes during every verification gets a retryable 503 and no stored event."""
    original = receive_module.verify_request

    async def verify_then_change(*args: Any, **kwargs: Any) -> Any:
        verdict = await original(*args, **kwargs)
        async with database.transaction() as session:
            await session.execute(
                text("UPDATE gateways SET name = name WHERE id = :id"), {"id": gateway["id"]}
            )
        return verdict

    monkeypatch.setattr(receive_module, "verify_request", verify_then_change)
    body, headers = stripe_delivery(
        stripe_event("payment_intent.succeeded", INTENT), [STRIPE_SECRET]
    )
    answer = await deliver(client, gateway["id"], body, headers)
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.headers["retry-after"] == "5"
    async with database.transaction() as session:
        stored = await session.execute(
            text("SELECT count(*) FROM webhook_events WHERE gateway_id = :id"),
            {"id": gateway["id"]},
        )
        assert stored.scalar_one() == 0
    monkeypatch.undo()
    assert (await deliver(client, gateway["id"], body, headers)).status_code == 200
