"""Rotating a key from the API keys page: the new key once, and when the old one stops."""

from __future__ import annotations

import re

from tests.web.helpers import WebUser

NEW_KEY = re.compile(r'id="new-key" class="mono" value="(pgk_[^"]+)"')


async def test_rotate_shows_the_new_key_once_and_when_the_old_one_stops(
    owner: WebUser, rival: WebUser
) -> None:
    created = await owner.post(
        "/api-keys",
        {"name": "Billing server", "scopes": ["gateways:read"], "expires_in_days": "90"},
        page="/api-keys",
    )
    assert created.status_code == 200, created.text
    old_key = NEW_KEY.search(created.text).group(1)
    listing = (await owner.client.get("/api-keys")).text
    key_id = re.search(r"/api-keys/(key_[A-Za-z0-9]+)/rotate", listing).group(1)
    assert 'name="grace_period_hours"' in listing
    assert 'data-label="Expires"' in listing

    refused = await owner.post(
        f"/api-keys/{key_id}/rotate", {"grace_period_hours": "500"}, htmx=True, page="/api-keys"
    )
    assert refused.status_code == 422
    assert "from 0 to 168" in refused.text
    assert NEW_KEY.search(refused.text) is None

    rotated = await owner.post(
        f"/api-keys/{key_id}/rotate", {"grace_period_hours": "2"}, htmx=True, page="/api-keys"
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new_key = NEW_KEY.search(rotated.text).group(1)
    assert new_key != old_key
    assert "shown only this once" in rotated.text
    assert f"<code>{old_key[:12]}…</code>) keeps working until" in rotated.text
    assert "Rotated" in rotated.text

    for key in (old_key, new_key):
        works = await owner.client.get(
            "/api/v1/gateways", headers={"Authorization": f"Bearer {key}"}
        )
        assert works.status_code == 200
    listing = (await owner.client.get("/api-keys")).text
    assert new_key not in listing
    assert old_key not in listing
    # The rotated key offers no second rotation; its replacement does.
    assert f"/api-keys/{key_id}/rotate" not in listing
    assert len(re.findall(r"/api-keys/key_[A-Za-z0-9]+/rotate\"", listing)) == 2

    # Another company's key id is not found from this company's page.
    theirs = await rival.post(
        f"/api-keys/{key_id}/rotate", {"grace_period_hours": "1"}, htmx=True, page="/api-keys"
    )
    assert theirs.status_code == 404
