"""Each adapter's test_connection, through its real client code, against emulators on
127.0.0.1 (localstripe for Stripe).

Every secret in these configurations contains CANARY; the `leaks` fixture fails a
test if it shows up in an exception message or in anything logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from paygate.gateways.adapters.base import AdapterConfig, Environment, GatewayAdapter, GatewayType
from paygate.gateways.adapters.base_errors import (
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.gateways.adapters.registry import ADAPTERS, all_specs, build_adapter, spec_for
from paygate.gateways.adapters.sandbox import (
    SANDBOX_CARDS,
    SandboxAdapter,
    SandboxOutcome,
    sandbox_card,
    sandbox_card_for_decline,
)
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.servers import closed_port_url
from tests.fakes.square import SquareEmulator
from tests.fakes.stripe_faults import StripeFaultProxy

CANARY = "CANARY7f3a9c"
SHORT_TIMEOUT = 0.3
# Longer than SHORT_TIMEOUT, short enough not to slow the suite.
SLOW_ANSWER = 1.5


class Leaks:
    """Collects everything said during a test, to look for the canary in it."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]):
        self.caplog = caplog
        self.capsys = capsys
        self.events: list[MutableMapping[str, Any]] = []

    def logged(self) -> list[str]:
        # caplog.text only holds the current phase; the fixture checks again at teardown.
        records = [r for phase in ("setup", "call") for r in self.caplog.get_records(phase)]
        return [self.caplog.text, *(f"{r.getMessage()} {r.__dict__!r}" for r in records)]

    def check(self, *texts: str) -> None:
        out, err = self.capsys.readouterr()
        said = [*texts, out, err, *self.logged(), *(repr(e) for e in self.events)]
        for text in said:
            assert CANARY not in text


@pytest.fixture
def leaks(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[Leaks]:
    caplog.set_level(logging.DEBUG)
    found = Leaks(caplog, capsys)
    with capture_logs() as events:
        found.events = events
        yield found
    found.check()


async def fails(adapter: GatewayAdapter, leaks: Leaks) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await adapter.test_connection()
    error = info.value
    # The call went through call_gateway, whose log line is checked for the canary too.
    assert any(e.get("event") == "gateway_call" for e in leaks.events)
    leaks.check(str(error), error.message, repr(error.__cause__), repr(error.__context__))
    return error


# --- per-gateway configurations ----------------------------------------------------


@dataclass
class Target:
    """How to aim one gateway type at an emulator, with good or bad credentials."""

    gateway_type: GatewayType
    values: Callable[[str, bool], dict[str, str]]
    emulator: Any  # the emulator object with knobs (None for localstripe itself)

    def config(self, base_url: str, *, valid: bool = True, timeout: float = 5.0) -> AdapterConfig:
        return AdapterConfig(
            gateway_type=self.gateway_type,
            environment=Environment.TEST,
            values=self.values(base_url, valid),
            timeout_seconds=timeout,
        )

    def adapter(self, base_url: str, **kwargs: Any) -> GatewayAdapter:
        return build_adapter(self.config(base_url, **kwargs))


def _stripe_values(base_url: str, valid: bool) -> dict[str, str]:
    # localstripe accepts any sk_ key and answers 401 to a pk_ key.
    return {
        "secret_key": f"sk_test_{CANARY}" if valid else f"pk_test_{CANARY}",
        "publishable_key": "pk_test_123",
        "webhook_secret": f"whsec_{CANARY}",
        "api_base_url": base_url,
    }


@pytest.fixture
def stripe_target(stripe_faults: StripeFaultProxy) -> Target:
    return Target(GatewayType.STRIPE, _stripe_values, stripe_faults)


@pytest.fixture
def paypal_target(paypal_emulator: PayPalEmulator) -> Target:
    paypal_emulator.client_secret = f"secret-{CANARY}"

    def values(base_url: str, valid: bool) -> dict[str, str]:
        return {
            "client_id": paypal_emulator.client_id,
            "client_secret": paypal_emulator.client_secret if valid else f"wrong-{CANARY}",
            "webhook_id": "WH-1234",
            "api_base_url": base_url,
        }

    return Target(GatewayType.PAYPAL, values, paypal_emulator)


@pytest.fixture
def square_target(square_emulator: SquareEmulator) -> Target:
    square_emulator.access_token = f"EAAA{CANARY}"

    def values(base_url: str, valid: bool) -> dict[str, str]:
        return {
            "access_token": square_emulator.access_token if valid else f"EAAAwrong{CANARY}",
            "application_id": "sandbox-sq0idb-abc",
            "location_id": square_emulator.location_id,
            "webhook_signature_key": f"sig-{CANARY}",
            "api_base_url": base_url,
        }

    return Target(GatewayType.SQUARE, values, square_emulator)


@pytest.fixture
def custom_target(custom_gateway_emulator: CustomGatewayEmulator) -> Target:
    custom_gateway_emulator.api_key = f"key-{CANARY}"

    def values(base_url: str, valid: bool) -> dict[str, str]:
        return {
            "base_url": base_url,
            "api_key": custom_gateway_emulator.api_key if valid else f"wrong-{CANARY}",
            "webhook_secret": custom_gateway_emulator.webhook_secret,
        }

    return Target(GatewayType.CUSTOM, values, custom_gateway_emulator)


TARGETS = ["stripe_target", "paypal_target", "square_target", "custom_target"]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = request.getfixturevalue(request.param)
    return found


# --- what every network gateway must do ---------------------------------------------


async def test_valid_credentials_connect(target: Target, leaks: Leaks) -> None:
    check = await target.adapter(target.emulator.base_url).test_connection()
    assert check.message.startswith("Connected to")
    leaks.check(check.message)


async def test_bad_credentials_are_misconfigured(target: Target, leaks: Leaks) -> None:
    error = await fails(target.adapter(target.emulator.base_url, valid=False), leaks)
    assert isinstance(error, GatewayMisconfigured)
    assert "rejected" in error.message


async def test_closed_port_is_unavailable(target: Target, leaks: Leaks) -> None:
    error = await fails(target.adapter(closed_port_url()), leaks)
    assert type(error) is GatewayUnavailable
    assert "could not be reached" in error.message


async def test_slow_answer_times_out(target: Target, leaks: Leaks) -> None:
    target.emulator.knobs.delay_seconds = SLOW_ANSWER
    adapter = target.adapter(target.emulator.base_url, timeout=SHORT_TIMEOUT)
    error = await fails(adapter, leaks)
    assert isinstance(error, GatewayTimeout)
    # The request reached the server: its outcome would be unknown.
    assert error.request_sent
    assert f"{SHORT_TIMEOUT:g} s" in error.message


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_is_unavailable_and_not_retried(
    target: Target, leaks: Leaks, status: int
) -> None:
    target.emulator.knobs.fail_status = status
    error = await fails(target.adapter(target.emulator.base_url), leaks)
    assert type(error) is GatewayUnavailable
    assert str(status) in error.message
    # The SDKs' own retries are off: retrying is the payment layer's decision.
    assert len(target.emulator.requests) == 1


async def test_recovers_after_transient_failure(target: Target, leaks: Leaks) -> None:
    # Fail every request while it lasts (a counted failure could be spent by a stray
    # request another test left in flight), then end the outage.
    target.emulator.knobs.fail_status = 503
    with pytest.raises(GatewayUnavailable):
        await target.adapter(target.emulator.base_url).test_connection()
    target.emulator.knobs.fail_status = None
    check = await target.adapter(target.emulator.base_url).test_connection()
    assert check.message.startswith("Connected to")


# --- gateway-specific behaviour ----------------------------------------------------


async def test_stripe_against_localstripe_directly(localstripe_url: str, leaks: Leaks) -> None:
    config = AdapterConfig(
        GatewayType.STRIPE, Environment.TEST, _stripe_values(localstripe_url, True)
    )
    check = await build_adapter(config).test_connection()
    # localstripe's balance holds EUR.
    assert check.message == "Connected to Stripe: balance available in EUR."


async def test_stripe_bad_key_message(localstripe_url: str, leaks: Leaks) -> None:
    config = AdapterConfig(
        GatewayType.STRIPE, Environment.TEST, _stripe_values(localstripe_url, False)
    )
    error = await fails(build_adapter(config), leaks)
    assert isinstance(error, GatewayMisconfigured)
    assert error.message.startswith("Stripe rejected the secret key (HTTP 401)")


async def test_paypal_success_reports_token_lifetime(paypal_target: Target, leaks: Leaks) -> None:
    emulator: PayPalEmulator = paypal_target.emulator
    check = await paypal_target.adapter(emulator.base_url).test_connection()
    assert check.message == (
        f"Connected to PayPal: OAuth token obtained (expires in {emulator.token_ttl_seconds} s)."
    )
    sent = emulator.requests[-1]
    assert sent.method == "POST"
    assert sent.path == "/v1/oauth2/token"
    assert sent.headers["authorization"].startswith("Basic ")
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_paypal_bad_secret_message(paypal_target: Target, leaks: Leaks) -> None:
    error = await fails(paypal_target.adapter(paypal_target.emulator.base_url, valid=False), leaks)
    assert error.message == "PayPal rejected the client id or secret."
    assert error.gateway_code == "invalid_client"


async def test_paypal_wrong_base_url_is_misconfigured(
    paypal_target: Target, square_emulator: SquareEmulator, leaks: Leaks
) -> None:
    # Something answers, but it is not PayPal: a 404 for the token path.
    error = await fails(paypal_target.adapter(square_emulator.base_url), leaks)
    assert isinstance(error, GatewayMisconfigured)
    assert "check the API base URL" in error.message


async def test_square_success_names_location(square_target: Target, leaks: Leaks) -> None:
    emulator: SquareEmulator = square_target.emulator
    check = await square_target.adapter(emulator.base_url).test_connection()
    assert check.message == f"Connected to Square: location {emulator.location_id} (Main Street)."
    sent = emulator.requests[-1]
    assert sent.path == "/v2/locations"
    assert sent.headers["authorization"] == f"Bearer {emulator.access_token}"
    # The SDK pins an API version; the emulator records it.
    assert emulator.square_versions


async def test_square_bad_token_message(square_target: Target, leaks: Leaks) -> None:
    error = await fails(square_target.adapter(square_target.emulator.base_url, valid=False), leaks)
    assert error.message == "Square rejected the access token."
    assert error.gateway_code == "UNAUTHORIZED"


async def test_square_unknown_location(square_target: Target, leaks: Leaks) -> None:
    emulator: SquareEmulator = square_target.emulator
    other = emulator.add_location("Airport")
    config = square_target.config(emulator.base_url)
    values = {**config.values, "location_id": "LNOTTHERE0000"}
    adapter = build_adapter(AdapterConfig(config.gateway_type, config.environment, values))
    error = await fails(adapter, leaks)
    assert isinstance(error, GatewayMisconfigured)
    assert error.message.startswith(
        "Location id LNOTTHERE0000 was not found in this Square account; it has: "
    )
    assert f"{emulator.location_id} (Main Street)" in error.message
    assert f"{other['id']} (Airport)" in error.message


async def test_square_inactive_location(square_target: Target, leaks: Leaks) -> None:
    emulator: SquareEmulator = square_target.emulator
    emulator.locations[emulator.location_id]["status"] = "INACTIVE"
    error = await fails(square_target.adapter(emulator.base_url), leaks)
    assert isinstance(error, GatewayMisconfigured)
    assert "INACTIVE" in error.message


async def test_custom_degraded_health_is_unavailable(custom_target: Target, leaks: Leaks) -> None:
    emulator: CustomGatewayEmulator = custom_target.emulator
    emulator.health_status = "degraded"
    error = await fails(custom_target.adapter(emulator.base_url), leaks)
    assert type(error) is GatewayUnavailable
    assert "'degraded'" in error.message


async def test_custom_sends_bearer_key(custom_target: Target, leaks: Leaks) -> None:
    emulator: CustomGatewayEmulator = custom_target.emulator
    await custom_target.adapter(emulator.base_url).test_connection()
    sent = emulator.requests[-1]
    assert (sent.method, sent.path) == ("GET", "/health")
    assert sent.headers["authorization"] == f"Bearer {emulator.api_key}"


async def test_custom_wrong_base_url_is_misconfigured(custom_target: Target, leaks: Leaks) -> None:
    error = await fails(custom_target.adapter(custom_target.emulator.base_url + "/v9"), leaks)
    assert isinstance(error, GatewayMisconfigured)
    assert "no /health endpoint" in error.message


async def test_sandbox_needs_no_network(leaks: Leaks) -> None:
    config = AdapterConfig(GatewayType.SANDBOX, Environment.TEST, {})
    check = await build_adapter(config).test_connection()
    assert check.message == "Sandbox is built in: no network call needed."


# --- registry and specs ------------------------------------------------------------


def test_every_gateway_type_has_an_adapter_and_spec() -> None:
    assert set(ADAPTERS) == set(GatewayType)
    assert [s.type for s in all_specs()] == list(GatewayType)
    for gateway_type in GatewayType:
        spec = spec_for(gateway_type)
        assert spec.type is gateway_type
        assert spec.payment_method_types
        for field in spec.fields:
            assert field.help, f"{gateway_type}.{field.name} has no help text"


def test_secret_fields_are_declared_secret() -> None:
    secrets = {(s.type, f.name) for s in all_specs() for f in s.fields if f.secret}
    assert secrets == {
        (GatewayType.STRIPE, "secret_key"),
        (GatewayType.STRIPE, "webhook_secret"),
        (GatewayType.PAYPAL, "client_secret"),
        (GatewayType.SQUARE, "access_token"),
        (GatewayType.SQUARE, "webhook_signature_key"),
        (GatewayType.CUSTOM, "api_key"),
        (GatewayType.CUSTOM, "webhook_secret"),
    }


def test_build_adapter_picks_the_class() -> None:
    config = AdapterConfig(GatewayType.SANDBOX, Environment.LIVE, {})
    assert isinstance(build_adapter(config), SandboxAdapter)


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch) * (2 if i % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def test_sandbox_card_table() -> None:
    numbers = [card.number for card in SANDBOX_CARDS]
    assert len(set(numbers)) == len(numbers)
    assert all(_luhn_ok(n) and len(n) == 16 for n in numbers)
    codes = {c.decline_code for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.DECLINED}
    assert codes == {
        "card_declined",
        "insufficient_funds",
        "expired_card",
        "incorrect_cvc",
        "processing_error",
        "fraud_suspected",
    }
    outcomes = {c.outcome for c in SANDBOX_CARDS}
    assert outcomes == set(SandboxOutcome)
    assert sandbox_card("4242 4242 4242 4242") is SANDBOX_CARDS[0]
    assert sandbox_card_for_decline("insufficient_funds").hard is False
    assert sandbox_card("4111111111111111") is None


def test_gateway_errors_are_distinct() -> None:
    # The payment layer relies on these relations to decide on retries.
    assert issubclass(GatewayTimeout, GatewayUnavailable)
    assert not issubclass(GatewayRejected, GatewayUnavailable)
