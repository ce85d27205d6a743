"""The audit log keeps each object's name as it was, filters by known types and actions, and
breaks emails only between their parts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from paygate.db import Database
from paygate.security.audit import verify_chains
from paygate.web.audit_pages import KNOWN_ACTIONS, OBJECT_TYPES
from tests.web.helpers import WebUser, sandbox_form

SRC = Path(__file__).resolve().parents[2] / "src" / "paygate"
ACTION_LITERAL = re.compile(
    r"[\"']((?:account|api_key|auth|authorization|company|gateway|invoice|keys|member|payment"
    r"|refund)\.[a-z_]+)[\"']"
)


def test_every_action_the_code_records_is_a_filter_choice() -> None:
    recorded = {m for path in SRC.rglob("*.py") for m in ACTION_LITERAL.findall(path.read_text())}
    assert recorded, "the pattern found no action"
    assert recorded - KNOWN_ACTIONS == set()


async def test_a_deleted_gateway_still_reads_by_name(
    owner: WebUser, rival: WebUser, database: Database
) -> None:
    created = await owner.client.post(
        "/api/v1/gateways",
        json={"gateway_type": "sandbox", "name": "Payroll Sandbox"},
        headers=owner.bearer,
    )
    gateway_id = created.json()["id"]
    renamed = await owner.client.patch(
        f"/api/v1/gateways/{gateway_id}", json={"name": "Renamed Sandbox"}, headers=owner.bearer
    )
    assert renamed.status_code == 200, renamed.text
    deleted = await owner.client.delete(f"/api/v1/gateways/{gateway_id}", headers=owner.bearer)
    assert deleted.status_code == 200, deleted.text

    entries = (
        await owner.client.get(
            "/api/v1/audit-log", params={"object_id": gateway_id}, headers=owner.bearer
        )
    ).json()["data"]
    names = {e["action"]: e["object_name"] for e in entries}
    assert names == {
        "gateway.created": "Payroll Sandbox",
        "gateway.updated": "Renamed Sandbox",
        "gateway.deleted": "Renamed Sandbox",
    }

    page = (await owner.client.get("/audit", params={"object_id": gateway_id})).text
    assert '<span class="object-name">Payroll Sandbox</span>' in page
    assert '<span class="object-name">Renamed Sandbox</span>' in page
    assert "Payroll Sandbox" not in (await rival.client.get("/audit")).text

    # Named entries are covered by the hash chain like the rest.
    async with database.transaction() as session:
        report = await verify_chains(session)
    assert report.ok, report.broken


async def test_filters_are_selects_of_known_types_and_actions(owner: WebUser) -> None:
    await owner.post("/gateways", sandbox_form(name="Filtered"))
    page = (await owner.client.get("/audit", params={"action": "gateway.created"})).text
    assert '<select id="f-object_type" name="object_type">' in page
    assert '<select id="f-action" name="action">' in page
    for value in OBJECT_TYPES:
        assert f'<option value="{value}"' in page
    assert '<option value="gateway.created" selected>' in page
    rows = re.findall(r"<code class=\"action\">([^<]+)</code>", page)
    assert rows
    assert set(rows) == {"gateway.created"}
    # Only successes here: no outcome badge (failures and denials get one).
    assert "badge-outcome-" not in page
    # A value from a link that is not in the lists still filters, and shows as chosen.
    odd = (await owner.client.get("/audit", params={"action": "webhook.replayed"})).text
    assert '<option value="webhook.replayed" selected>' in odd


async def test_emails_break_only_between_their_parts(owner: WebUser, app: Any) -> None:
    page = (await owner.client.get("/audit")).text
    local, domain = owner.email.split("@")
    assert f"{local}@<wbr>{domain.replace('.', '<wbr>.')}" in page
