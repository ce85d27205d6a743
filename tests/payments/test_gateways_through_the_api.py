"""Paying invoices through paygate's JSON API with every real adapter against its emulator:
Stripe (localstripe behind tests/fakes/stripe_checkout.py), PayPal, Square and the
custom-gateway reference emulator, in their direct and hosted (redirect) flows.

Per flow: success, each decline the emulator can produce, a timeout after sending (the
outcome is unknown until `sync` asks), a 5xx, bad credentials, an amount mismatch, partial
and full refunds, over-refunds refused under concurrency, and idempotent retries. Two
companies in every scenario: the other one gets 404 for this one's invoice and payment.

What the emulators cannot produce, and so is not tested here:
- localstripe declines with `card_declined` only (and fails 3-D Secure): Stripe's other
  decline codes (insufficient_funds, expired_card, ...) are covered only by the adapter's
  decline-map test.
- The Stripe API emulator has no `reported_amount` knob: the mismatch is made on Stripe
  Checkout by changing the session's amount before the customer pays (localstripe then
  really charges that amount).
- The hosted pages of Stripe Checkout and Square payment links have no declining outcome
  that ends the payment: a declined card (Checkout) or Cancel leaves it open.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate.gateways.adapters.paypal_calls import clear_token_cache
from paygate.gateways.adapters.sandbox import SANDBOX_CARDS, SandboxOutcome
from paygate.kit.jobs_context import JobContext
from paygate.payments.tasks import sweep_pending_refunds
from tests.conftest import Tenant, register
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.servers import serve_asgi
from tests.fakes.square import SquareEmulator
from tests.fakes.stripe_checkout import StripeCheckoutEmulator
from tests.gateways.helpers import create_gateway
from tests.payments.helpers import create_invoice, get_invoice, pay

RETURN_URL = "https://shop.example.com/done"
AMOUNT = 12_500
# The test settings give gateways 2 s: answers this late arrive after paygate gave up.
LATE = 2.5
HELPER_KEY = "sk_test_helper"
ACTION_CARD = next(c for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.REQUIRES_ACTION)
MISMATCH_CARD = next(c for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.AMOUNT_MISMATCH)
CUSTOM_DECLINES = [c for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.DECLINED]

_FORM = re.compile(r"<form[^>]*action=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S)
_HIDDEN = re.compile(r"<input type=\"hidden\" name=\"([^\"]+)\" value=\"([^\"]*)\">")


# --- the two companies ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def companies(app: Any) -> tuple[Tenant, Tenant]:
    """Two companies for the whole module (each test makes its own gateway and invoices)."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://paygate.test") as c:
        return await register(c, "Acme Gateways"), await register(c, "Globex Gateways")


async def assert_hidden_from(
    client: httpx.AsyncClient, other: Tenant, invoice_id: str, payment_id: str
) -> None:
    """The other company gets 404 for this company's invoice and payment, whatever it tries."""
    for path in (f"/api/v1/invoices/{invoice_id}", f"/api/v1/payments/{payment_id}"):
        assert (await client.get(path, headers=other.headers)).status_code == 404, path
    synced = await client.post(f"/api/v1/payments/{payment_id}/sync", headers=other.headers)
    assert synced.status_code == 404
    refunded = await refund(client, other, payment_id, amount=1)
    assert refunded.status_code == 404
    await pay(client, other, invoice_id, expect=404)


# --- the custom gateway, with its answers held back on demand ------------------------


class LateAnswer:
    """Runs the request to the end, then holds the answer back `delay` seconds: the gateway
    did it, the answer came late (the custom emulator has no such knob of its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.delay = 0.0
        self.base_url = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay = self.delay
        if scope["type"] != "http" or delay <= 0:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        await asyncio.sleep(delay)
        for message in held:
            await send(message)


@pytest.fixture(scope="module")
def custom_late(_custom_gateway_server: CustomGatewayEmulator) -> Iterator[LateAnswer]:
    late = LateAnswer(_custom_gateway_server.app)
    with serve_asgi(late) as url:
        late.base_url = url
        yield late


# --- one driver per flow: configuration, the customer's side, what the gateway holds ---


class Driver:
    gateway_type = ""
    method_type = "card"
    hosted = False

    def __init__(self, name: str) -> None:
        self.name = name

    def configuration(self, *, bad: bool) -> dict[str, str]:
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        """What a successful payment sends besides the gateway."""
        return {"payment_method": None, "return_url": RETURN_URL}

    async def press(self, url: str, *, pay: bool) -> str:
        """Play the customer on the gateway's page; the URL it sends the browser back to."""
        raise NotImplementedError

    async def made(self, payment_id: str) -> int:
        """How many payments (orders, sessions, links) the gateway made for this payment."""
        raise NotImplementedError

    async def charges(self, payment_id: str) -> int:
        """How many successful charges the gateway holds for this payment."""
        raise NotImplementedError

    async def refunds(self, payment_id: str) -> list[int]:
        """The amounts the gateway refunded for this payment (minor units)."""
        raise NotImplementedError

    def fail_next(self, status: int) -> None:
        raise NotImplementedError

    def answer_late(self, seconds: float) -> None:
        raise NotImplementedError

    async def finish(
        self, client: httpx.AsyncClient, payment: dict[str, Any], *, pay: bool = True
    ) -> dict[str, Any]:
        """Hosted and redirect flows: go to the gateway's page, press a button, come back to
        paygate's return route. Direct flows are final already."""
        if payment["status"] != "requires_action":
            return payment
        action = payment["next_action"]
        assert action["type"] == "redirect", action
        back = await self.press(action["redirect_url"], pay=pay)
        return await come_back(client, payment, back)


async def come_back(
    client: httpx.AsyncClient, payment: dict[str, Any], location: str
) -> dict[str, Any]:
    """The browser follows the gateway's redirect to paygate's public return route."""
    back = urlsplit(location)
    assert back.path == f"/payments/{payment['id']}/return", location
    answer = await client.get(f"{back.path}?{back.query}")
    assert answer.status_code == 303, answer.text
    final: dict[str, Any] = (
        await client.get(f"/api/v1/payments/{payment['id']}", headers=payment["_headers"])
    ).json()
    assert answer.headers["location"] == (
        f"{RETURN_URL}?payment_id={payment['id']}&status={final['status']}"
    )
    final["_headers"] = payment["_headers"]
    return final


async def press_form(url: str, button: str) -> str:
    """Open a gateway page like a browser, submit the form of `button`; where it redirects."""
    async with httpx.AsyncClient(timeout=5) as browser:
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        form = next(f for f in _FORM.finditer(page.text) if f">{button}</button>" in f.group(2))
        answer = await browser.post(
            urljoin(url, form.group(1)), data=dict(_HIDDEN.findall(form.group(2)))
        )
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


class StripeDriver(Driver):
    gateway_type = "stripe"

    def __init__(self, name: str, api: StripeCheckoutEmulator, localstripe_url: str) -> None:
        super().__init__(name)
        self.api = api
        self.localstripe_url = localstripe_url
        self.hosted = name == "stripe-checkout"

    def configuration(self, *, bad: bool) -> dict[str, str]:
        return {
            # localstripe takes any sk_ key; a restricted-key prefix it does not know is a 401.
            "secret_key": "rk_test_" + "x" * 24 if bad else "sk_test_" + secrets.token_hex(12),
            "publishable_key": "pk_test_TYooMQauvdEDq54NiTphI7jx",
            "api_base_url": self.api.base_url,
        }

    def body(self) -> dict[str, Any]:
        if self.hosted:
            return super().body()
        return {"payment_method": "pm_card_visa", "return_url": RETURN_URL}

    async def press(self, url: str, *, pay: bool) -> str:
        async with httpx.AsyncClient(timeout=10) as browser:
            answer = await browser.post(
                url, data={"action": "pay" if pay else "cancel", "card": "pm_card_visa"}
            )
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    async def _list(self, path: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        async with httpx.AsyncClient(
            base_url=self.localstripe_url,
            headers={"Authorization": f"Bearer {HELPER_KEY}"},
            timeout=30,
        ) as client:
            while True:
                page = (await client.get(path, params=params)).json()
                found += page["data"]
                if not page["has_more"] or not page["data"]:
                    return found
                params["starting_after"] = page["data"][-1]["id"]

    async def intents(self, payment_id: str) -> list[dict[str, Any]]:
        intents = await self._list("/v1/payment_intents")
        return [i for i in intents if i["metadata"].get("paygate_payment") == payment_id]

    async def made(self, payment_id: str) -> int:
        if self.hosted:
            sessions = self.api.sessions.values()
            return sum(s["client_reference_id"] == payment_id for s in sessions)
        return len(await self.intents(payment_id))

    async def charges(self, payment_id: str) -> int:
        ids = {i["id"] for i in await self.intents(payment_id)}
        charges = await self._list("/v1/charges")
        return sum(c["payment_intent"] in ids and c["status"] == "succeeded" for c in charges)

    async def refunds(self, payment_id: str) -> list[int]:
        ids = {i["id"] for i in await self.intents(payment_id)}
        refunds = await self._list("/v1/refunds")
        return sorted(r["amount"] for r in refunds if r.get("payment_intent") in ids)

    def fail_next(self, status: int) -> None:
        self.api.knobs.fail_status = status
        self.api.knobs.fail_times = 1

    def answer_late(self, seconds: float) -> None:
        self.api.answer_delay_seconds = seconds


class PayPalDriver(Driver):
    gateway_type = "paypal"
    method_type = "paypal"
    hosted = True

    def __init__(self, name: str, emulator: PayPalEmulator) -> None:
        super().__init__(name)
        self.emulator = emulator

    def configuration(self, *, bad: bool) -> dict[str, str]:
        return {
            "client_id": self.emulator.client_id,
            "client_secret": "wrong-secret" if bad else self.emulator.client_secret,
            "api_base_url": self.emulator.base_url,
        }

    async def press(self, url: str, *, pay: bool) -> str:
        return await press_form(url, "Pay with PayPal" if pay else "Cancel")

    def orders(self, payment_id: str) -> list[dict[str, Any]]:
        return self.emulator.orders_for(payment_id)

    async def made(self, payment_id: str) -> int:
        return len(self.orders(payment_id))

    async def charges(self, payment_id: str) -> int:
        captures = [
            capture
            for order in self.orders(payment_id)
            for capture in order["purchase_units"][0].get("payments", {}).get("captures", [])
        ]
        return sum(c["status"] in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED") for c in captures)

    async def refunds(self, payment_id: str) -> list[int]:
        refunds = [
            refund
            for order in self.orders(payment_id)
            for refund in order["purchase_units"][0].get("payments", {}).get("refunds", [])
        ]
        return sorted(int(Decimal(r["amount"]["value"]) * 100) for r in refunds)

    def fail_next(self, status: int) -> None:
        self.emulator.knobs.fail_status = status
        self.emulator.knobs.fail_times = 1

    def answer_late(self, seconds: float) -> None:
        self.emulator.answer_delay_seconds = seconds


class SquareDriver(Driver):
    gateway_type = "square"

    def __init__(self, name: str, emulator: SquareEmulator) -> None:
        super().__init__(name)
        self.emulator = emulator
        self.hosted = name == "square-link"
        # Square answers a refund PENDING and settles it later (paygate asks again: see
        # test_a_pending_square_refund_is_settled_later); here refunds complete at once.
        emulator.refund_status = "COMPLETED"

    def configuration(self, *, bad: bool) -> dict[str, str]:
        return {
            "access_token": "EAAAwrong-token" if bad else self.emulator.access_token,
            "application_id": "sandbox-sq0idb-paygate-tests",
            "location_id": self.emulator.location_id,
            "api_base_url": self.emulator.base_url,
        }

    def body(self) -> dict[str, Any]:
        if self.hosted:
            return super().body()
        return {"payment_method": "cnon:card-nonce-ok", "return_url": RETURN_URL}

    async def press(self, url: str, *, pay: bool) -> str:
        return await press_form(url, "Pay" if pay else "Cancel")

    def payments(self, payment_id: str) -> list[dict[str, Any]]:
        if not self.hosted:
            return self.emulator.payments_for(payment_id)
        orders = {
            link["order_id"]
            for link in self.emulator.payment_links.values()
            if link.get("description") == payment_id
        }
        return [p for p in self.emulator.payments.values() if p.get("order_id") in orders]

    async def made(self, payment_id: str) -> int:
        if self.hosted:
            links = self.emulator.payment_links.values()
            return sum(link.get("description") == payment_id for link in links)
        return len(self.payments(payment_id))

    async def charges(self, payment_id: str) -> int:
        return sum(p["status"] == "COMPLETED" for p in self.payments(payment_id))

    async def refunds(self, payment_id: str) -> list[int]:
        ids = {p["id"] for p in self.payments(payment_id)}
        refunds = self.emulator.refunds.values()
        return sorted(r["amount_money"]["amount"] for r in refunds if r["payment_id"] in ids)

    def fail_next(self, status: int) -> None:
        self.emulator.knobs.fail_status = status
        self.emulator.knobs.fail_times = 1

    def answer_late(self, seconds: float) -> None:
        self.emulator.answer_delay_seconds = seconds


class CustomDriver(Driver):
    gateway_type = "custom"

    def __init__(self, name: str, emulator: CustomGatewayEmulator, late: LateAnswer) -> None:
        super().__init__(name)
        self.emulator = emulator
        self.late = late
        late.delay = 0.0
        # The redirect flow: a token whose payment asks the payer to act on a page.
        self.token = f"tok_{ACTION_CARD.number}" if name == "custom-redirect" else "tok_visa"

    def configuration(self, *, bad: bool) -> dict[str, str]:
        return {
            # Through the holding proxy, so a test can make the answers late.
            "base_url": self.late.base_url,
            "api_key": "cgw_wrong_key" if bad else self.emulator.api_key,
        }

    def body(self) -> dict[str, Any]:
        return {"payment_method": self.token, "return_url": RETURN_URL}

    async def press(self, url: str, *, pay: bool) -> str:
        async with httpx.AsyncClient(timeout=5) as browser:
            answer = await browser.get(url, params={"result": "succeed" if pay else "fail"})
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    def payments(self, payment_id: str) -> list[dict[str, Any]]:
        return [p for p in self.emulator.state.payments.values() if p["reference"] == payment_id]

    async def made(self, payment_id: str) -> int:
        return len(self.payments(payment_id))

    async def charges(self, payment_id: str) -> int:
        return sum(p["status"] == "succeeded" for p in self.payments(payment_id))

    async def refunds(self, payment_id: str) -> list[int]:
        ids = {p["id"] for p in self.payments(payment_id)}
        refunds = self.emulator.state.refunds.values()
        return sorted(r["amount"] for r in refunds if r["payment_id"] in ids)

    def fail_next(self, status: int) -> None:
        self.emulator.knobs.fail_status = status
        self.emulator.knobs.fail_times = 1

    def answer_late(self, seconds: float) -> None:
        self.late.delay = seconds


ALL = ["stripe", "stripe-checkout", "paypal", "square", "square-link", "custom", "custom-redirect"]
ONE_PER_GATEWAY = ["stripe", "paypal", "square", "custom"]


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Iterator[Driver]:
    name: str = request.param
    built: Driver
    if name.startswith("stripe"):
        built = StripeDriver(
            name,
            request.getfixturevalue("stripe_api"),
            request.getfixturevalue("localstripe_url"),
        )
    elif name == "paypal":
        clear_token_cache()
        built = PayPalDriver(name, request.getfixturevalue("paypal_emulator"))
    elif name.startswith("square"):
        built = SquareDriver(name, request.getfixturevalue("square_emulator"))
    else:
        late: LateAnswer = request.getfixturevalue("custom_late")
        built = CustomDriver(name, request.getfixturevalue("custom_gateway_emulator"), late)
    yield built
    if isinstance(built, CustomDriver):
        built.late.delay = 0.0
    clear_token_cache()


def flows(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("driver", list(names), indirect=True)


# --- helpers -------------------------------------------------------------------------


async def gateway_for(
    client: httpx.AsyncClient, tenant: Tenant, driver: Driver, *, bad: bool = False
) -> dict[str, Any]:
    payload = {
        "name": f"{driver.name} {secrets.token_hex(2)}",
        "gateway_type": driver.gateway_type,
        "environment": "test",
        "configuration": driver.configuration(bad=bad),
        "supported_currencies": ["USD"],
    }
    return await create_gateway(client, tenant, payload)


async def start(
    client: httpx.AsyncClient,
    tenant: Tenant,
    driver: Driver,
    gateway: dict[str, Any],
    invoice_id: str,
    **body: Any,
) -> dict[str, Any]:
    """POST the payment through the API with this gateway; the answer (with the headers
    that read it again)."""
    fields = {
        "gateway_id": gateway["id"],
        "payment_method_type": driver.method_type,
        **driver.body(),
        **body,
    }
    payment = await pay(client, tenant, invoice_id, **fields)
    payment["_headers"] = tenant.headers
    return payment


async def reread(client: httpx.AsyncClient, payment: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = (
        await client.get(f"/api/v1/payments/{payment['id']}", headers=payment["_headers"])
    ).json()
    found["_headers"] = payment["_headers"]
    return found


async def sync(client: httpx.AsyncClient, payment: dict[str, Any]) -> dict[str, Any]:
    answer = await client.post(
        f"/api/v1/payments/{payment['id']}/sync", headers=payment["_headers"]
    )
    assert answer.status_code == 200, answer.text
    synced: dict[str, Any] = answer.json()
    synced["_headers"] = payment["_headers"]
    return synced


async def refund(
    client: httpx.AsyncClient, tenant: Tenant, payment_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/payments/{payment_id}/refunds",
        json=body,
        headers={**tenant.headers, "Idempotency-Key": secrets.token_hex(8)},
    )


async def paid_payment(
    client: httpx.AsyncClient, tenant: Tenant, driver: Driver, *, amount: int = AMOUNT
) -> tuple[dict[str, Any], dict[str, Any]]:
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant, amount=amount)
    payment = await driver.finish(
        client, await start(client, tenant, driver, gateway, invoice["id"])
    )
    assert payment["status"] == "succeeded", payment
    return invoice, payment


async def assert_unpaid(
    client: httpx.AsyncClient, tenant: Tenant, driver: Driver, invoice_id: str, payment_id: str
) -> None:
    invoice = await get_invoice(client, tenant, invoice_id)
    assert (invoice["status"], invoice["amount_paid"]) == ("open", 0)
    assert await driver.charges(payment_id) == 0


# --- success ---------------------------------------------------------------------------


@flows(*ALL)
async def test_a_payment_succeeds_and_pays_the_invoice(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    started = await start(client, tenant, driver, gateway, invoice["id"])
    assert started["gateway_id"] == gateway["id"]
    if driver.hosted or driver.name == "custom-redirect":
        assert started["status"] == "requires_action"
        assert started["next_action"]["type"] == "redirect"
        assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "open"
    payment = await driver.finish(client, started)
    assert (payment["status"], payment["amount"], payment["currency"]) == (
        "succeeded",
        AMOUNT,
        "USD",
    )
    assert payment["failure"] is None
    assert payment["next_action"] is None
    final = await get_invoice(client, tenant, invoice["id"])
    assert (final["status"], final["amount_paid"], final["amount_due"]) == ("paid", AMOUNT, 0)
    assert await driver.made(payment["id"]) == 1
    assert await driver.charges(payment["id"]) == 1
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


# --- declines --------------------------------------------------------------------------


async def stripe_card_token(localstripe_url: str, number: str) -> str:
    """What Stripe.js `createToken(card)` gets in the browser (made with the publishable key)."""
    async with httpx.AsyncClient(timeout=10) as browser:
        answer = await browser.post(
            f"{localstripe_url}/v1/tokens",
            data={
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "34",
                "card[cvc]": "123",
                "key": "pk_test_TYooMQauvdEDq54NiTphI7jx",
            },
        )
    answer.raise_for_status()
    token: str = answer.json()["id"]
    return token


async def assert_failed(
    client: httpx.AsyncClient,
    companies: tuple[Tenant, Tenant],
    driver: Driver,
    invoice: dict[str, Any],
    payment: dict[str, Any],
    code: str,
    *,
    status: str = "failed",
) -> None:
    tenant, other = companies
    assert payment["status"] == status, payment
    assert payment["failure"]["code"] == code, payment["failure"]
    assert payment["failure"]["message"]
    assert payment["next_action"] is None
    await assert_unpaid(client, tenant, driver, invoice["id"], payment["id"])
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


@flows("stripe")
@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("pm_card_chargeCustomerFail", "card_declined"),
        ("4000000000000341", "card_declined"),  # typed into Stripe.js: a tok_
        ("3ds:fail", "authentication_failed"),
        ("3ds:pass", None),
    ],
)
async def test_stripe_declines(
    client: httpx.AsyncClient,
    companies: tuple[Tenant, Tenant],
    driver: Driver,
    localstripe_url: str,
    method: str,
    code: str | None,
) -> None:
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    if method.startswith("3ds:"):
        token = await stripe_card_token(localstripe_url, "4000002500003155")
        started = await start(client, tenant, driver, gateway, invoice["id"], payment_method=token)
        assert started["status"] == "requires_action"
        action = started["next_action"]
        assert action["type"] == "stripe_sdk"
        assert action["publishable_key"] == "pk_test_TYooMQauvdEDq54NiTphI7jx"
        secret = action["client_secret"]
        intent_id = secret.split("_secret_")[0]
        # What localstripe's 3-D Secure modal does on its buttons.
        async with httpx.AsyncClient(timeout=10) as browser:
            pressed = await browser.post(
                f"{localstripe_url}/v1/payment_intents/{intent_id}/_authenticate",
                data={
                    "client_secret": secret,
                    "success": "true" if method == "3ds:pass" else "false",
                    "key": "pk_test_TYooMQauvdEDq54NiTphI7jx",
                },
            )
        pressed.raise_for_status()
        back = await client.get(f"/payments/{started['id']}/return")
        assert back.status_code == 303
        payment = await reread(client, started)
    else:
        if not method.startswith("pm_"):
            method = await stripe_card_token(localstripe_url, method)
        payment = await start(client, tenant, driver, gateway, invoice["id"], payment_method=method)
    if code is None:
        assert payment["status"] == "succeeded"
        assert await driver.charges(payment["id"]) == 1
        await assert_hidden_from(client, other, invoice["id"], payment["id"])
        return
    await assert_failed(client, companies, driver, invoice, payment, code)
    assert payment["failure"]["gateway_code"] in (
        "card_declined",
        "payment_intent_authentication_failure",
    )


@flows("paypal")
@pytest.mark.parametrize(
    ("capture_decline", "code"),
    [
        ("INSTRUMENT_DECLINED", "card_declined"),
        ("CARD_EXPIRED", "expired_card"),
        ("TRANSACTION_REFUSED", "card_declined"),
        ("DECLINED", "card_declined"),  # the capture is made, with status DECLINED
        (None, "canceled"),  # the payer presses Cancel on PayPal's page
    ],
)
async def test_paypal_declines(
    client: httpx.AsyncClient,
    companies: tuple[Tenant, Tenant],
    driver: Driver,
    capture_decline: str | None,
    code: str,
) -> None:
    assert isinstance(driver, PayPalDriver)
    tenant, _ = companies
    driver.emulator.capture_decline = capture_decline
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    started = await start(client, tenant, driver, gateway, invoice["id"])
    payment = await driver.finish(client, started, pay=capture_decline is not None)
    status = "canceled" if capture_decline is None else "failed"
    await assert_failed(client, companies, driver, invoice, payment, code, status=status)
    if capture_decline is not None:
        assert payment["failure"]["gateway_code"] == capture_decline


SQUARE_DECLINES = [
    ("cnon:card-nonce-declined", "card_declined"),
    ("cnon:card-nonce-rejected-cvv", "incorrect_cvc"),
    ("cnon:card-nonce-rejected-postalcode", "card_declined"),
    ("cnon:card-nonce-rejected-expiration", "expired_card"),
    ("cnon:card-nonce-insufficient-funds", "insufficient_funds"),
    ("cnon:card-nonce-card-expired", "expired_card"),
    ("cnon:card-nonce-verify-cvv-failure", "incorrect_cvc"),
    ("cnon:card-nonce-verification-required", "authentication_failed"),
    ("cnon:card-nonce-blocked", "fraud_suspected"),
    ("cnon:card-nonce-call-issuer", "card_declined"),
]


@flows("square")
@pytest.mark.parametrize(("nonce", "code"), SQUARE_DECLINES, ids=[n for n, _ in SQUARE_DECLINES])
async def test_square_declines(
    client: httpx.AsyncClient,
    companies: tuple[Tenant, Tenant],
    driver: Driver,
    nonce: str,
    code: str,
) -> None:
    tenant, _ = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    payment = await start(client, tenant, driver, gateway, invoice["id"], payment_method=nonce)
    await assert_failed(client, companies, driver, invoice, payment, code)
    assert await driver.made(payment["id"]) == 1  # Square keeps the FAILED payment


CUSTOM_DECLINE_CASES = [
    *((f"tok_{c.number}", c.decline_code) for c in CUSTOM_DECLINES),
    ("redirect:fail", "card_declined"),  # the payer fails on the redirect page
]


@pytest.mark.parametrize(
    ("driver", "token", "code"),
    [
        ("custom-redirect" if t.startswith("redirect") else "custom", t, c)
        for t, c in CUSTOM_DECLINE_CASES
    ],
    ids=[str(c) if t.startswith("tok_") else t for t, c in CUSTOM_DECLINE_CASES],
    indirect=["driver"],
)
async def test_custom_gateway_declines(
    client: httpx.AsyncClient,
    companies: tuple[Tenant, Tenant],
    driver: Driver,
    token: str,
    code: str,
) -> None:
    tenant, _ = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    fields = {"payment_method": token} if token.startswith("tok_") else {}
    started = await start(client, tenant, driver, gateway, invoice["id"], **fields)
    payment = await driver.finish(client, started, pay=False)
    await assert_failed(client, companies, driver, invoice, payment, code)


@flows("stripe-checkout", "square-link")
async def test_leaving_the_hosted_page_without_paying_keeps_the_payment_open(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    # Neither page can end the payment as declined: Cancel (or Checkout's declined card)
    # leaves the session or link payable, so paygate keeps the payment waiting.
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    started = await start(client, tenant, driver, gateway, invoice["id"])
    if isinstance(driver, StripeDriver):
        async with httpx.AsyncClient(timeout=10) as browser:
            declined = await browser.post(
                started["next_action"]["redirect_url"],
                data={"action": "pay", "card": "pm_card_chargeCustomerFail"},
            )
        assert declined.status_code == 402
    payment = await driver.finish(client, started, pay=False)
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["redirect_url"] == started["next_action"]["redirect_url"]
    await assert_unpaid(client, tenant, driver, invoice["id"], payment["id"])
    await assert_hidden_from(client, other, invoice["id"], payment["id"])
    # Still payable: the customer goes back and pays.
    paid = await driver.finish(client, payment)
    assert paid["status"] == "succeeded"
    assert await driver.charges(payment["id"]) == 1


# --- unknown outcomes: late answers and 5xx -------------------------------------------


@flows("stripe", "square", "custom")
async def test_a_late_answer_is_unknown_until_sync_finds_the_one_charge(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    driver.answer_late(LATE)  # the gateway charges; its answer comes after paygate gave up
    payment = await start(client, tenant, driver, gateway, invoice["id"])
    driver.answer_late(0)
    assert payment["status"] == "processing"
    assert payment["failure"]["code"] == "outcome_unknown"
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "open"
    # The amount is reserved meanwhile: nothing can be charged twice.
    await pay(client, tenant, invoice["id"], expect=409, gateway_id=gateway["id"])
    synced = await sync(client, payment)
    assert synced["status"] == "succeeded"
    assert synced["failure"] is None
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"
    assert await driver.made(payment["id"]) == 1
    assert await driver.charges(payment["id"]) == 1
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


@flows("paypal")
async def test_paypal_capture_answered_late_is_unknown_until_sync(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    # A PayPal order moves no money: the late answer that matters is the capture's, made
    # when the payer comes back to paygate.
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    started = await start(client, tenant, driver, gateway, invoice["id"])
    back = await driver.press(started["next_action"]["redirect_url"], pay=True)
    driver.answer_late(LATE)
    payment = await come_back(client, started, back)
    driver.answer_late(0)
    assert payment["status"] == "processing"
    assert payment["failure"]["code"] == "outcome_unknown"
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "open"
    synced = await sync(client, payment)
    assert synced["status"] == "succeeded"
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"
    assert await driver.charges(payment["id"]) == 1
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


@flows("stripe", "stripe-checkout", "paypal", "square", "square-link", "custom")
async def test_a_server_error_is_unknown_and_sync_charges_once(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    # The service's rule: a GatewayUnavailable (5xx) after the request was sent leaves the
    # outcome unknown (processing, outcome_unknown), never failed; sync resolves it.
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    if isinstance(driver, PayPalDriver):
        # Get the OAuth token first, so the 5xx answers the order itself.
        tested = await client.post(f"/api/v1/gateways/{gateway['id']}/test", headers=tenant.headers)
        assert tested.json()["ok"] is True, tested.text
    invoice = await create_invoice(client, tenant)
    driver.fail_next(503)
    payment = await start(client, tenant, driver, gateway, invoice["id"])
    assert payment["status"] == "processing"
    assert payment["failure"]["code"] == "outcome_unknown"
    assert "503" in payment["failure"]["message"]
    assert await driver.made(payment["id"]) == 0
    synced = await sync(client, payment)
    if driver.hosted:
        assert synced["status"] == "requires_action"
        synced = await driver.finish(client, synced)
    assert synced["status"] == "succeeded"
    assert await driver.made(payment["id"]) == 1
    assert await driver.charges(payment["id"]) == 1
    # Asked again, the gateway is not charged again.
    assert (await sync(client, synced))["status"] == "succeeded"
    assert await driver.charges(payment["id"]) == 1
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


@flows("paypal")
async def test_a_paypal_token_server_error_fails_without_sending_the_payment(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    # The 5xx answers the OAuth token request: the order was never sent, so the outcome is
    # known (nothing happened) and the payment fails; the customer may simply pay again.
    tenant, _ = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    driver.fail_next(503)
    payment = await start(client, tenant, driver, gateway, invoice["id"])
    await assert_failed(client, companies, driver, invoice, payment, "processing_error")
    assert await driver.made(payment["id"]) == 0
    again = await driver.finish(client, await start(client, tenant, driver, gateway, invoice["id"]))
    assert again["status"] == "succeeded"
    assert await driver.charges(again["id"]) == 1


# --- bad credentials and amount mismatches ---------------------------------------------


@flows(*ONE_PER_GATEWAY)
async def test_bad_credentials_fail_as_misconfigured(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, _ = companies
    gateway = await gateway_for(client, tenant, driver, bad=True)
    invoice = await create_invoice(client, tenant)
    payment = await start(client, tenant, driver, gateway, invoice["id"])
    await assert_failed(client, companies, driver, invoice, payment, "gateway_misconfigured")
    assert await driver.made(payment["id"]) == 0


@flows("stripe-checkout", "paypal", "square", "custom")
async def test_an_answer_for_another_amount_goes_to_review(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    fields: dict[str, Any] = {}
    if isinstance(driver, PayPalDriver):
        driver.emulator.reported_amount = "124.99"
    elif isinstance(driver, SquareDriver):
        driver.emulator.reported_amount = AMOUNT - 1
    elif isinstance(driver, CustomDriver):
        fields["payment_method"] = f"tok_{MISMATCH_CARD.number}"
    started = await start(client, tenant, driver, gateway, invoice["id"], **fields)
    if isinstance(driver, StripeDriver):
        # No reported_amount knob: the Checkout session is for one cent less when paid.
        [session] = [
            s for s in driver.api.sessions.values() if s["client_reference_id"] == started["id"]
        ]
        session["amount_total"] = session["amount_subtotal"] = AMOUNT - 1
    payment = await driver.finish(client, started)
    assert payment["status"] == "requires_review"
    assert payment["review_reason"] == (
        f"The gateway answered {AMOUNT - 1} USD for a payment of {AMOUNT} USD."
    )
    assert payment["failure"]["code"] == "amount_mismatch"
    invoice_now = await get_invoice(client, tenant, invoice["id"])
    assert (invoice_now["status"], invoice_now["amount_paid"]) == ("open", 0)
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


# --- refunds ---------------------------------------------------------------------------


@flows(*ALL)
async def test_partial_and_full_refunds(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, other = companies
    invoice, payment = await paid_payment(client, tenant, driver, amount=10_000)
    partial = await refund(
        client, tenant, payment["id"], amount=2_500, reason="requested_by_customer"
    )
    assert partial.status_code == 201, partial.text
    assert (partial.json()["status"], partial.json()["amount"]) == ("succeeded", 2_500)
    assert await driver.refunds(payment["id"]) == [2_500]
    rest = await refund(client, tenant, payment["id"])
    assert rest.status_code == 201, rest.text
    assert (rest.json()["status"], rest.json()["amount"]) == ("succeeded", 7_500)
    assert (await refund(client, tenant, payment["id"], amount=1)).status_code == 409
    final = await reread(client, payment)
    assert final["amount_refunded"] == 10_000
    assert [r["amount"] for r in final["refunds"]] == [2_500, 7_500]
    assert (await get_invoice(client, tenant, invoice["id"]))["amount_refunded"] == 10_000
    assert await driver.refunds(payment["id"]) == [2_500, 7_500]
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


@flows(*ONE_PER_GATEWAY)
async def test_concurrent_refunds_never_exceed_the_payment(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, other = companies
    invoice, payment = await paid_payment(client, tenant, driver, amount=10_000)
    answers = await asyncio.gather(
        *(refund(client, tenant, payment["id"], amount=4_000) for _ in range(6))
    )
    assert sorted(a.status_code for a in answers) == [201, 201, 422, 422, 422, 422]
    assert all(a.json()["status"] == "succeeded" for a in answers if a.status_code == 201)
    assert (await reread(client, payment))["amount_refunded"] == 8_000
    assert await driver.refunds(payment["id"]) == [4_000, 4_000]
    assert (await refund(client, tenant, payment["id"], amount=2_001)).status_code == 422
    last = await refund(client, tenant, payment["id"], amount=2_000)
    assert last.status_code == 201, last.text
    assert (await reread(client, payment))["amount_refunded"] == 10_000
    assert sum(await driver.refunds(payment["id"])) == 10_000
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


async def sync_refund(client: httpx.AsyncClient, tenant: Tenant, refund_id: str) -> dict[str, Any]:
    answer = await client.post(f"/api/v1/refunds/{refund_id}/sync", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    synced: dict[str, Any] = answer.json()
    return synced


async def refunded_so_far(
    client: httpx.AsyncClient, tenant: Tenant, payment: dict[str, Any], invoice_id: str
) -> tuple[int, int, list[str]]:
    """(payment's amount_refunded, invoice's amount_refunded, the refunds' statuses)."""
    now = await reread(client, payment)
    invoice = await get_invoice(client, tenant, invoice_id)
    return now["amount_refunded"], invoice["amount_refunded"], [r["status"] for r in now["refunds"]]


@flows("square")
async def test_a_pending_square_refund_is_settled_later(
    client: httpx.AsyncClient,
    companies: tuple[Tenant, Tenant],
    driver: Driver,
    jobs: JobContext,
) -> None:
    assert isinstance(driver, SquareDriver)
    tenant, other = companies
    invoice, payment = await paid_payment(client, tenant, driver, amount=10_000)
    driver.emulator.refund_status = "PENDING"  # what Square really answers first
    answer = await refund(client, tenant, payment["id"], amount=2_500)
    assert answer.status_code == 201, answer.text
    pending = answer.json()
    assert pending["status"] == "pending"
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (0, 0, ["pending"])
    # The pending amount stays reserved: nothing can be refunded twice meanwhile.
    assert (await refund(client, tenant, payment["id"], amount=7_501)).status_code == 422
    # Asked while Square still says PENDING: nothing moves.
    assert (await sync_refund(client, tenant, pending["id"]))["status"] == "pending"
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (0, 0, ["pending"])
    # Another company cannot even learn that the refund exists.
    hidden = await client.post(f"/api/v1/refunds/{pending['id']}/sync", headers=other.headers)
    assert hidden.status_code == 404

    driver.emulator.refund_completes_on_read = True  # Square settles it a little later
    synced = await sync_refund(client, tenant, pending["id"])
    assert (synced["id"], synced["status"], synced["amount"]) == (pending["id"], "succeeded", 2_500)
    assert synced["failure_message"] is None
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (
        2_500,
        2_500,
        ["succeeded"],
    )
    # Asking again changes nothing: it counted once.
    assert await sync_refund(client, tenant, pending["id"]) == synced
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (
        2_500,
        2_500,
        ["succeeded"],
    )
    assert await driver.refunds(payment["id"]) == [2_500]
    calls = (
        await client.get(
            "/api/v1/gateway-calls", params={"payment_id": payment["id"]}, headers=tenant.headers
        )
    ).json()
    asked = [c for c in calls if c["operation"] == "fetch_refund"]
    assert len(asked) == 2  # the PENDING answer and the COMPLETED one; none after it settled
    assert {c["refund_id"] for c in asked} == {pending["id"]}

    # The sweeper settles the next one, once it has been pending longer than its grace.
    driver.emulator.refund_completes_on_read = False
    rest = await refund(client, tenant, payment["id"], amount=7_500)
    assert rest.status_code == 201, rest.text
    second = rest.json()
    assert second["status"] == "pending"
    driver.emulator.refund_completes_on_read = True
    await sweep_pending_refunds()  # too fresh: the refund call may still be settling it
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (
        2_500,
        2_500,
        ["succeeded", "pending"],
    )
    async with jobs.database.transaction() as session:
        await session.execute(
            text("UPDATE refunds SET updated_at = now() - interval '5 minutes' WHERE id = :id"),
            {"id": second["id"]},
        )
    assert await sweep_pending_refunds() >= 1
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (
        10_000,
        10_000,
        ["succeeded", "succeeded"],
    )
    await sweep_pending_refunds(older_than=timedelta(0))
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (
        10_000,
        10_000,
        ["succeeded", "succeeded"],
    )
    assert await driver.refunds(payment["id"]) == [2_500, 7_500]
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


@flows(*ONE_PER_GATEWAY)
async def test_a_refund_answered_late_is_pending_until_sync_finds_the_one_refund(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, other = companies
    invoice, payment = await paid_payment(client, tenant, driver, amount=10_000)
    driver.answer_late(LATE)  # the answer comes after paygate gave up
    answer = await refund(client, tenant, payment["id"], amount=4_000)
    driver.answer_late(0)
    assert answer.status_code == 201, answer.text
    late = answer.json()
    assert late["status"] == "pending"
    assert "outcome is unknown" in late["failure_message"]
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (0, 0, ["pending"])
    assert (await refund(client, tenant, payment["id"], amount=6_001)).status_code == 422
    synced = await sync_refund(client, tenant, late["id"])
    assert (synced["status"], synced["failure_message"]) == ("succeeded", None)
    assert await sync_refund(client, tenant, late["id"]) == synced
    assert await refunded_so_far(client, tenant, payment, invoice["id"]) == (
        4_000,
        4_000,
        ["succeeded"],
    )
    # The gateway refunded once, whether the first call or the sync made the refund.
    assert await driver.refunds(payment["id"]) == [4_000]
    hidden = await client.post(f"/api/v1/refunds/{late['id']}/sync", headers=other.headers)
    assert hidden.status_code == 404
    await assert_hidden_from(client, other, invoice["id"], payment["id"])


# --- idempotent retries ----------------------------------------------------------------


@flows(*ALL)
async def test_the_same_idempotency_key_charges_once(
    client: httpx.AsyncClient, companies: tuple[Tenant, Tenant], driver: Driver
) -> None:
    tenant, other = companies
    gateway = await gateway_for(client, tenant, driver)
    invoice = await create_invoice(client, tenant)
    key = secrets.token_hex(8)
    body = {"gateway_id": gateway["id"], "payment_method_type": driver.method_type, **driver.body()}
    headers = {**tenant.headers, "Idempotency-Key": key}
    path = f"/api/v1/invoices/{invoice['id']}/payments"
    first = await client.post(path, json=body, headers=headers)
    again = await client.post(path, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    # The same key means nothing to the other company.
    assert (
        await client.post(path, json=body, headers={**other.headers, "Idempotency-Key": key})
    ).status_code == 404
    payment = {**first.json(), "_headers": tenant.headers}
    assert await driver.made(payment["id"]) == 1
    payment = await driver.finish(client, payment)
    assert payment["status"] == "succeeded"
    assert await driver.charges(payment["id"]) == 1
    third = await client.post(path, json=body, headers=headers)
    assert third.json() == first.json()
    assert await driver.charges(payment["id"]) == 1
    await assert_hidden_from(client, other, invoice["id"], payment["id"])
