"""The gateway card tells when each credential changed and whether a replaced one is still
accepted; the edit form chooses that grace."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from tests.web.helpers import WebUser, stripe_form
from tests.web.test_gateway_pages import create

SECRET_KEY = "sk_test_CardsRotation000000004242"


def card_of(page: str, gateway_id: str) -> str:
    match = re.search(
        rf'<article class="gw-card[^"]*" id="gw-{gateway_id}".*?</article>', page, re.S
    )
    assert match, gateway_id
    return match.group(0)


async def test_replacing_a_secret_in_the_form_keeps_the_old_one_for_the_chosen_grace(
    owner: WebUser, rival: WebUser
) -> None:
    gateway_id = await create(owner, stripe_form(SECRET_KEY))
    card = card_of((await owner.client.get("/gateways")).text, gateway_id)
    assert "Changed <time" in card
    assert "Previous one still accepted" not in card
    assert "re-enter them" not in card

    form = (await owner.client.get(f"/gateways/{gateway_id}/edit")).text
    assert 'name="previous_secret_grace_hours"' in form

    refused = await owner.post(
        f"/gateways/{gateway_id}/edit",
        {
            **stripe_form(""),
            "configuration.webhook_secret": "whsec_" + "c" * 32,
            "previous_secret_grace_hours": "400",
        },
    )
    assert refused.status_code == 422
    assert 'id="f-previous_secret_grace_hours-error"' in refused.text
    api = f"/api/v1/gateways/{gateway_id}"
    unchanged = (await owner.client.get(api, headers=owner.bearer)).json()
    assert unchanged["credentials"]["webhook_secret"]["previous_valid_until"] is None

    saved = await owner.post(
        f"/gateways/{gateway_id}/edit",
        {
            **stripe_form(""),
            "configuration.webhook_secret": "whsec_" + "c" * 32,
            "previous_secret_grace_hours": "72",
        },
    )
    assert saved.status_code == 303, saved.text
    credential = (await owner.client.get(api, headers=owner.bearer)).json()["credentials"][
        "webhook_secret"
    ]
    until = datetime.fromisoformat(credential["previous_valid_until"])
    assert until - datetime.fromisoformat(credential["changed_at"]) == timedelta(hours=72)
    card = card_of((await owner.client.get("/gateways")).text, gateway_id)
    assert "Previous one still accepted until" in card
    assert until.strftime("%Y-%m-%d %H:%M UTC") in card
    # The secret key was left empty: kept, and no previous one for it.
    assert card.count("Previous one still accepted") == 1

    # Another company sees nothing of it.
    assert gateway_id not in (await rival.client.get("/gateways")).text
    assert (await rival.client.get(api, headers=rival.bearer)).status_code == 404
