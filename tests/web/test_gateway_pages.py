"""The gateways page: create, edit, toggle, test and delete through the forms and htmx."""

from __future__ import annotations

import re
from typing import Any

from tests.web.helpers import WebUser, new_client, sandbox_form, stripe_form

CANARY_SECRET = "sk_test_CANARYsecretVALUE0000004242"
CANARY_WEBHOOK = "whsec_CANARYwebhookSECRET00000000009999"


def gateway_ids(html: str) -> list[str]:
    return re.findall(r'<article class="gw-card[^"]*" id="gw-(gw_[A-Za-z0-9]+)"', html)


async def create(user: WebUser, data: dict[str, Any]) -> str:
    before = set(gateway_ids((await user.client.get("/gateways")).text))
    response = await user.post("/gateways", data)
    assert response.status_code == 303, response.text
    after = set(gateway_ids((await user.client.get("/gateways")).text))
    (new,) = after - before
    return new


async def test_gateways_page_lists_cards_with_masked_credentials(owner: WebUser) -> None:
    gateway_id = await create(
        owner,
        stripe_form(
            CANARY_SECRET, "http://127.0.0.1:9/", **{"configuration.webhook_secret": CANARY_WEBHOOK}
        ),
    )
    page = await owner.client.get("/gateways")
    html = page.text
    card = html[html.index(f'id="gw-{gateway_id}"') :]
    assert "sk_test_...4242" in card
    assert "whsec_...9999" in card
    assert "pk_test_" in card  # a publishable key is public
    assert 'class="badge badge-test"' in card
    assert 'role="switch"' in card
    assert 'aria-checked="true"' in card
    assert "Not tested yet" in card
    assert CANARY_SECRET not in html
    assert CANARY_WEBHOOK not in html


async def test_type_picker_and_forms_are_built_from_the_specs(owner: WebUser) -> None:
    picker = await owner.client.get("/gateways/new", headers={"HX-Request": "true"})
    assert picker.status_code == 200
    assert "<html" not in picker.text  # a fragment for the modal
    for name in ("Stripe", "PayPal", "Square", "Sandbox"):
        assert name in picker.text
    form = (await owner.client.get("/gateways/new?type=stripe")).text
    assert '<label for="f-configuration-secret_key">Secret key' in form
    assert re.search(
        r'id="f-configuration-secret_key" name="configuration.secret_key" '
        r'type="password" value=""[^>]* autocomplete="off"',
        form,
    )
    assert 'name="configuration.api_base_url" type="url"' in form
    assert 'name="payment_method_types" value="card" checked' in form
    sandbox = (await owner.client.get("/gateways/new?type=sandbox")).text
    assert "needs no account and no credentials" in sandbox
    assert "configuration." not in sandbox
    missing = await owner.client.get("/gateways/new?type=bitcoin")
    assert missing.status_code == 404


async def test_field_errors_are_shown_inline_and_secrets_are_not_echoed(owner: WebUser) -> None:
    data = stripe_form(
        CANARY_SECRET, supported_currencies="USD, XYZ", min_amount="500", max_amount="100"
    )
    data["configuration.publishable_key"] = ""
    response = await owner.post("/gateways", data, htmx=True)
    assert response.status_code == 422
    html = response.text
    assert "<html" not in html
    assert 'id="f-configuration-publishable_key-error"' in html
    assert CANARY_SECRET not in html
    # The typed non-secret values come back; the secret input is empty.
    assert 'value="USD, XYZ"' in html
    assert re.search(r'name="configuration.secret_key" type="password" value=""', html)
    # The configuration is checked first; then the commercial terms, each item by name.
    currencies = await owner.post(
        "/gateways", sandbox_form(supported_currencies="USD, XYZ"), htmx=True
    )
    assert currencies.status_code == 422
    assert 'id="f-supported_currencies-error"' in currencies.text
    assert "XYZ is not an ISO 4217 currency code." in currencies.text
    # Bad amount -> the schema's own refusal, next to the amount.
    second = await owner.post("/gateways", sandbox_form(min_amount="12.50"), htmx=True)
    assert second.status_code == 422
    assert 'id="f-min_amount-error"' in second.text
    # Amounts in the wrong order: the service's rule, next to the minimum.
    third = await owner.post(
        "/gateways", sandbox_form(min_amount="500", max_amount="100"), htmx=True
    )
    assert 'id="f-min_amount-error"' in third.text
    assert "Minimum amount must not exceed max_amount." in third.text
    assert gateway_ids((await owner.client.get("/gateways")).text) == []


async def test_htmx_create_swaps_the_list_and_closes_the_modal(owner: WebUser) -> None:
    response = await owner.post("/gateways", sandbox_form(name="Quick sandbox"), htmx=True)
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#gateway-list"
    assert "pg:close-modal" in response.headers["HX-Trigger-After-Swap"]
    assert 'id="gateway-list"' in response.text
    assert "Quick sandbox" in response.text
    assert 'hx-swap-oob="afterbegin:#notices"' in response.text


async def test_edit_keeps_a_secret_left_empty(owner: WebUser) -> None:
    gateway_id = await create(owner, stripe_form(CANARY_SECRET))
    form = (await owner.client.get(f"/gateways/{gateway_id}/edit")).text
    assert "Stored: sk_test_...4242 — leave empty to keep" in form
    assert CANARY_SECRET not in form
    data = stripe_form("", name="Stripe EU", supported_currencies="EUR")
    data["configuration.webhook_secret"] = ""
    response = await owner.post(f"/gateways/{gateway_id}/edit", data)
    assert response.status_code == 303, response.text
    api = (await owner.client.get(f"/api/v1/gateways/{gateway_id}", headers=owner.bearer)).json()
    assert api["name"] == "Stripe EU"
    assert api["supported_currencies"] == ["EUR"]
    assert api["credentials"]["secret_key"]["masked"] == "sk_test_...4242"
    page = (await owner.client.get("/gateways")).text
    assert "Stripe EU" in page
    assert "sk_test_...4242" in page


async def test_refused_edit_changes_nothing(owner: WebUser) -> None:
    gateway_id = await create(owner, sandbox_form(name="Before"))
    response = await owner.post(
        f"/gateways/{gateway_id}/edit",
        sandbox_form(name="After", min_amount="900", max_amount="100"),
        htmx=True,
    )
    assert response.status_code == 422
    api = (await owner.client.get(f"/api/v1/gateways/{gateway_id}", headers=owner.bearer)).json()
    assert api["name"] == "Before"
    assert api["min_amount"] is None


async def test_toggle_test_and_delete(owner: WebUser) -> None:
    gateway_id = await create(owner, sandbox_form())
    off = await owner.post(f"/gateways/{gateway_id}/disable", htmx=True)
    assert off.status_code == 200
    assert 'aria-checked="false"' in off.text
    assert "is-off" in off.text
    assert f'hx-post="/gateways/{gateway_id}/enable"' in off.text
    on = await owner.post(f"/gateways/{gateway_id}/enable", htmx=True)
    assert 'aria-checked="true"' in on.text
    tested = await owner.post(f"/gateways/{gateway_id}/test", htmx=True)
    assert tested.status_code == 200
    assert "Connected" in tested.text
    assert " ms" in tested.text
    assert "Sandbox is built in" in tested.text
    deleted = await owner.post(f"/gateways/{gateway_id}/delete", htmx=True)
    assert deleted.status_code == 200
    assert "No gateways yet" in deleted.text
    assert "Sandbox deleted." in deleted.text


async def test_another_companys_gateway_is_a_404_page(owner: WebUser, rival: WebUser) -> None:
    gateway_id = await create(rival, sandbox_form(name="Rival sandbox"))
    for path in (f"/gateways/{gateway_id}/edit",):
        page = await owner.client.get(path)
        assert page.status_code == 404
        assert "text/html" in page.headers["content-type"]
        assert "Page not found" in page.text
        assert "Rival sandbox" not in page.text
    for action in ("enable", "disable", "test", "delete", "edit"):
        response = await owner.post(f"/gateways/{gateway_id}/{action}", sandbox_form())
        assert response.status_code == 404, action
        assert "Page not found" in response.text
    # Still there, untouched, for its owner.
    api = (await rival.client.get(f"/api/v1/gateways/{gateway_id}", headers=rival.bearer)).json()
    assert api["enabled"] is True
    assert api["name"] == "Rival sandbox"


async def test_a_secret_never_appears_in_any_page(owner: WebUser) -> None:
    gateway_id = await create(
        owner, stripe_form(CANARY_SECRET, **{"configuration.webhook_secret": CANARY_WEBHOOK})
    )
    await owner.post(
        f"/gateways/{gateway_id}/edit", stripe_form(CANARY_SECRET + "X", name="Rotated")
    )
    await owner.post("/gateways", stripe_form(CANARY_SECRET, supported_currencies="NOPE"))
    pages = [
        "/gateways",
        f"/gateways/{gateway_id}/edit",
        "/gateways/new?type=stripe",
        "/audit",
        f"/audit?object_id={gateway_id}",
        "/api-keys",
        "/members",
    ]
    for path in pages:
        html = (await owner.client.get(path)).text
        for secret in (CANARY_SECRET, CANARY_WEBHOOK, "CANARY"):
            assert secret not in html, path


async def test_signed_out_visitors_are_sent_to_sign_in(app: Any) -> None:
    async with new_client(app) as client:
        for path in ("/gateways", "/gateways/new", "/audit", "/api-keys", "/members"):
            response = await client.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/login?next=")
