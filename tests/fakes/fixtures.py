"""Pytest fixtures that run the gateway emulators (register with
`pytest_plugins = ["tests.fakes.fixtures"]`).

Each server runs once per session; the per-test fixtures hand out the emulator
object (`.base_url`, `.knobs`, its valid credentials and state) and reset its
knobs and state after the test, so tests never see each other's faults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.mail import Mailbox, MailServer
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.servers import serve_asgi, serve_localstripe
from tests.fakes.square import SquareEmulator
from tests.fakes.stripe_checkout import StripeCheckoutEmulator
from tests.fakes.stripe_faults import StripeFaultProxy


@pytest.fixture(scope="session")
def _paypal_server() -> Iterator[PayPalEmulator]:
    emulator = PayPalEmulator()
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator


@pytest.fixture
def paypal_emulator(_paypal_server: PayPalEmulator) -> Iterator[PayPalEmulator]:
    """PayPal's REST API: `.client_id` / `.client_secret` are valid credentials."""
    _paypal_server.reset()
    yield _paypal_server
    _paypal_server.reset()


@pytest.fixture(scope="session")
def _square_server() -> Iterator[SquareEmulator]:
    emulator = SquareEmulator()
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator


@pytest.fixture
def square_emulator(_square_server: SquareEmulator) -> Iterator[SquareEmulator]:
    """Square's API: `.access_token` is valid, `.location_id` names an active location."""
    _square_server.reset()
    yield _square_server
    _square_server.reset()


@pytest.fixture(scope="session")
def _custom_gateway_server() -> Iterator[CustomGatewayEmulator]:
    emulator = CustomGatewayEmulator()
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator


@pytest.fixture
def custom_gateway_emulator(
    _custom_gateway_server: CustomGatewayEmulator,
) -> Iterator[CustomGatewayEmulator]:
    """A gateway speaking docs/custom-gateway.md: `.api_key`, `.webhook_secret`."""
    _custom_gateway_server.reset()
    yield _custom_gateway_server
    _custom_gateway_server.reset()


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """localstripe on a free loopback port, its store empty at the start of the session.

    Any `sk_test_...` key is accepted; a `pk_...` key gets 401.
    """
    with serve_localstripe() as url:
        yield url


@pytest.fixture(scope="session")
def _stripe_fault_server(localstripe_url: str) -> Iterator[StripeFaultProxy]:
    proxy = StripeFaultProxy(localstripe_url)
    with serve_asgi(proxy.app) as url:
        proxy.base_url = url
        yield proxy


@pytest.fixture
def stripe_faults(_stripe_fault_server: StripeFaultProxy) -> Iterator[StripeFaultProxy]:
    """localstripe behind a proxy with the fault knobs (delay, 5xx): use its `.base_url`."""
    _stripe_fault_server.reset()
    yield _stripe_fault_server
    _stripe_fault_server.reset()


@pytest.fixture(scope="session")
def _stripe_api_server(localstripe_url: str) -> Iterator[StripeCheckoutEmulator]:
    emulator = StripeCheckoutEmulator(localstripe_url)
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator


@pytest.fixture
def stripe_api(_stripe_api_server: StripeCheckoutEmulator) -> Iterator[StripeCheckoutEmulator]:
    """The whole Stripe API at one `.base_url`: localstripe behind an emulator that adds
    Checkout sessions (and their hosted page), Stripe's Idempotency-Key replay, the fault
    knobs and `answer_delay_seconds` (see tests/fakes/stripe_checkout.py)."""
    _stripe_api_server.reset()
    yield _stripe_api_server
    _stripe_api_server.reset()


@pytest.fixture(scope="session")
def _mail_server() -> Iterator[Mailbox]:
    server = MailServer()
    yield server.start()
    server.stop()


@pytest.fixture
def mailbox(_mail_server: Mailbox) -> Iterator[Mailbox]:
    """The SMTP server every test app sends to (see the `settings` fixture), emptied per test."""
    _mail_server.clear()
    yield _mail_server
    _mail_server.clear()
