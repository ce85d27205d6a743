"""The built-in sandbox gateway: no account, no network, deterministic test cards.

`SANDBOX_CARDS` is the sandbox's public contract: the payment flow, the docs and the
tests all take their card numbers from this table, so a number never changes meaning.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import urlencode

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
    GatewayTypeSpec,
    NextAction,
    PaymentFlow,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import GatewayDeclined, GatewayRejected, GatewayTimeout
from paygate.gateways.adapters.base_http import call_gateway, record_response


class SandboxOutcome(StrEnum):
    """What the sandbox answers for a card."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    # The customer must complete a step on a page the gateway hosts (3-D Secure-like).
    REQUIRES_ACTION = "requires_action"
    # The answer is late and says nothing final: the payment's outcome is unknown.
    UNKNOWN = "unknown"
    # The sandbox reports one minor unit less than asked: exercises the amount check.
    AMOUNT_MISMATCH = "amount_mismatch"


@dataclass(frozen=True)
class SandboxCard:
    number: str
    outcome: SandboxOutcome
    description: str
    # Set only for declines: one of paygate's standard decline codes.
    decline_code: str | None = None
    # A hard decline will fail again whatever happens; a soft one may succeed on retry.
    hard: bool = False
    # Seconds the sandbox waits before answering (only the slow card).
    delay_seconds: float = 0.0

    @property
    def last4(self) -> str:
        return self.number[-4:]


# Every number passes the Luhn check, so form validation accepts them like real cards.
# Any expiry date in the future and any CVC work with every card.
SANDBOX_CARDS: tuple[SandboxCard, ...] = (
    SandboxCard("4242424242424242", SandboxOutcome.SUCCEEDED, "Succeeds."),
    SandboxCard(
        "4000000000000002",
        SandboxOutcome.DECLINED,
        "Declined by the issuer without a reason.",
        decline_code="card_declined",
        hard=True,
    ),
    SandboxCard(
        "4000000000009995",
        SandboxOutcome.DECLINED,
        "Declined: insufficient funds.",
        decline_code="insufficient_funds",
        hard=False,
    ),
    SandboxCard(
        "4000000000000069",
        SandboxOutcome.DECLINED,
        "Declined: the card has expired.",
        decline_code="expired_card",
        hard=True,
    ),
    SandboxCard(
        "4000000000000127",
        SandboxOutcome.DECLINED,
        "Declined: the CVC is incorrect.",
        decline_code="incorrect_cvc",
        hard=True,
    ),
    SandboxCard(
        "4000000000000119",
        SandboxOutcome.DECLINED,
        "Declined: a processing error at the issuer; retrying may succeed.",
        decline_code="processing_error",
        hard=False,
    ),
    SandboxCard(
        "4100000000000019",
        SandboxOutcome.DECLINED,
        "Declined: suspected fraud.",
        decline_code="fraud_suspected",
        hard=True,
    ),
    SandboxCard(
        "4000002500003155",
        SandboxOutcome.REQUIRES_ACTION,
        "Requires the customer to authenticate on a redirect page, then succeeds.",
    ),
    SandboxCard(
        "4000000000000259",
        SandboxOutcome.UNKNOWN,
        "Answers late without a final outcome: exercises timeouts and reconciliation.",
        delay_seconds=15.0,
    ),
    SandboxCard(
        "4000000000000036",
        SandboxOutcome.AMOUNT_MISMATCH,
        "Succeeds, but reports one minor unit less than asked: the payment goes to review.",
    ),
)

# The card every demo and quick test uses.
SANDBOX_SUCCESS_CARD = SANDBOX_CARDS[0]

_BY_NUMBER: dict[str, SandboxCard] = {card.number: card for card in SANDBOX_CARDS}


def sandbox_card(number: str) -> SandboxCard | None:
    """The table entry for a card number typed with or without spaces and dashes.

    Numbers not in the table answer None; the payment flow treats any other
    Luhn-valid number like the success card.
    """
    digits = "".join(ch for ch in number if ch.isdigit())
    return _BY_NUMBER.get(digits)


def sandbox_card_for_decline(decline_code: str) -> SandboxCard:
    """The card that declines with `decline_code` (KeyError for an unknown code)."""
    for card in SANDBOX_CARDS:
        if card.decline_code == decline_code:
            return card
    raise KeyError(decline_code)


SPEC = GatewayTypeSpec(
    type=GatewayType.SANDBOX,
    display_name="Sandbox",
    description=(
        "A built-in test gateway: no account needed, nothing is charged. "
        "Use its test card numbers to try successful, declined and 3-D Secure payments."
    ),
    payment_method_types=("card",),
    fields=(),
)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _decline(card: SandboxCard | None) -> Decline:
    if card is None or card.decline_code is None:
        raise ValueError("not a declining card")
    return Decline(
        code=DeclineCode(card.decline_code),
        message=card.description,
        hard=card.hard,
        gateway_code=f"sandbox_{card.decline_code}",
    )


def _reference(prefix: str, key: str) -> str:
    # Derived from the idempotency key: the same attempt always has the same reference,
    # so the sandbox needs no state to answer "what became of it?".
    return f"{prefix}_{hashlib.sha256(key.encode()).hexdigest()[:24]}"


class SandboxAdapter:
    """Answers from the card table alone; needs no state, network or credentials."""

    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    async def test_connection(self) -> ConnectionCheck:
        # Nothing to reach: the sandbox lives inside paygate.
        return ConnectionCheck(message="Sandbox is built in: no network call needed.")

    def _card(self, request: PaymentRequest) -> SandboxCard | None:
        digits = "".join(ch for ch in request.payment_method or "" if ch.isdigit())
        if not 12 <= len(digits) <= 19 or not _luhn_valid(digits):
            raise GatewayRejected("The card number is not valid.", gateway_code="invalid_number")
        return sandbox_card(digits)

    def _result(
        self, request: PaymentRequest, status: GatewayPaymentStatus, **extra: Any
    ) -> PaymentResult:
        return PaymentResult(
            gateway_reference=_reference("sbx_pay", request.idempotency_key),
            status=status,
            amount=extra.pop("amount", request.amount),
            currency=request.currency,
            raw_status=status.value,
            **extra,
        )

    async def create_payment(self, request: PaymentRequest) -> PaymentResult:
        summary = {
            "amount": request.amount,
            "currency": request.currency,
            "reference": request.reference,
        }

        async def send() -> PaymentResult:
            if request.flow is PaymentFlow.HOSTED or not request.payment_method:
                raise GatewayRejected(
                    "The sandbox takes a test card number.", gateway_code="no_card"
                )
            card = self._card(request)
            outcome = card.outcome if card else SandboxOutcome.SUCCEEDED
            if outcome is SandboxOutcome.DECLINED:
                decline = _decline(card)
                raise GatewayDeclined(
                    decline.message,
                    decline_code=decline.code.value,
                    hard=decline.hard,
                    gateway_code=decline.gateway_code,
                )
            if outcome is SandboxOutcome.UNKNOWN:
                assert card is not None
                await asyncio.sleep(min(card.delay_seconds, self.config.timeout_seconds))
                raise GatewayTimeout(
                    f"The gateway did not answer within {self.config.timeout_seconds:g} s.",
                    request_sent=True,
                )
            if outcome is SandboxOutcome.REQUIRES_ACTION:
                reference = _reference("sbx_pay", request.idempotency_key)
                query = urlencode({"return_to": request.return_url or "/"})
                url = f"{self.config.public_base_url}/sandbox/authorize/{reference}?{query}"
                result = self._result(
                    request,
                    GatewayPaymentStatus.REQUIRES_ACTION,
                    next_action=NextAction(type="redirect", redirect_url=url),
                )
            elif outcome is SandboxOutcome.AMOUNT_MISMATCH:
                result = self._result(
                    request, GatewayPaymentStatus.SUCCEEDED, amount=request.amount - 1
                )
            else:
                result = self._result(request, GatewayPaymentStatus.SUCCEEDED)
            record_response(None, {"status": result.status.value, "amount": result.amount})
            return result

        return await call_gateway(self.config, "create_payment", send, request_summary=summary)

    async def complete_payment(
        self, request: PaymentRequest, gateway_reference: str, return_params: Mapping[str, str]
    ) -> PaymentResult:
        async def send() -> PaymentResult:
            # The sandbox's authorize page sends the customer back with their choice.
            if return_params.get("outcome") == "approved":
                result = self._result(request, GatewayPaymentStatus.SUCCEEDED)
            else:
                decline = Decline(
                    code=DeclineCode.AUTHENTICATION_FAILED,
                    message="The customer did not complete authentication.",
                    hard=False,
                    gateway_code="sandbox_authentication_failed",
                )
                result = self._result(request, GatewayPaymentStatus.FAILED, decline=decline)
            record_response(None, {"status": result.status.value})
            return result

        summary = {"reference": gateway_reference}
        return await call_gateway(self.config, "complete_payment", send, request_summary=summary)

    async def fetch_payment(
        self, request: PaymentRequest, gateway_reference: str | None
    ) -> PaymentResult:
        async def send() -> PaymentResult:
            card = self._card(request)
            outcome = card.outcome if card else SandboxOutcome.SUCCEEDED
            if outcome is SandboxOutcome.DECLINED:
                result = self._result(request, GatewayPaymentStatus.FAILED, decline=_decline(card))
            elif outcome is SandboxOutcome.REQUIRES_ACTION:
                result = self._result(request, GatewayPaymentStatus.REQUIRES_ACTION)
            elif outcome is SandboxOutcome.AMOUNT_MISMATCH:
                result = self._result(
                    request, GatewayPaymentStatus.SUCCEEDED, amount=request.amount - 1
                )
            else:
                # The slow card's payment went through in the end: asking finds it.
                result = self._result(request, GatewayPaymentStatus.SUCCEEDED)
            record_response(None, {"status": result.status.value, "amount": result.amount})
            return result

        summary = {"reference": gateway_reference or _reference("sbx_pay", request.idempotency_key)}
        return await call_gateway(self.config, "fetch_payment", send, request_summary=summary)

    async def cancel_payment(
        self, request: PaymentRequest, gateway_reference: str
    ) -> PaymentResult:
        async def send() -> PaymentResult:
            # The sandbox completes a payment only when paygate asks it to: nothing to undo.
            result = self._result(request, GatewayPaymentStatus.CANCELED)
            record_response(None, {"status": result.status.value})
            return result

        summary = {"reference": gateway_reference}
        return await call_gateway(self.config, "cancel_payment", send, request_summary=summary)

    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        async def send() -> RefundResult:
            result = RefundResult(
                gateway_reference=_reference("sbx_re", request.idempotency_key),
                status=GatewayRefundStatus.SUCCEEDED,
                amount=request.amount,
                currency=request.currency,
                raw_status="succeeded",
            )
            record_response(None, {"status": result.status.value, "amount": result.amount})
            return result

        summary = {"payment": request.gateway_payment_reference, "amount": request.amount}
        return await call_gateway(self.config, "refund_payment", send, request_summary=summary)

    async def fetch_refund(
        self, request: RefundRequest, gateway_reference: str | None
    ) -> RefundResult:
        # Every sandbox refund succeeds at once; its reference derives from the key.
        reference = gateway_reference or _reference("sbx_re", request.idempotency_key)

        async def send() -> RefundResult:
            result = RefundResult(
                gateway_reference=reference,
                status=GatewayRefundStatus.SUCCEEDED,
                amount=request.amount,
                currency=request.currency,
                raw_status="succeeded",
            )
            record_response(None, {"status": result.status.value, "amount": result.amount})
            return result

        summary = {"refund": reference, "payment": request.gateway_payment_reference}
        return await call_gateway(self.config, "fetch_refund", send, request_summary=summary)
