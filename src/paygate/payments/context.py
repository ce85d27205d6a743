"""Who takes a payment, and what every role of the payment path needs to do it."""

from __future__ import annotations

from dataclasses import dataclass

from paygate.db import Database
from paygate.gateways.adapters.base import PaymentFlow, PaymentRequest
from paygate.kit.deps import Origin
from paygate.payments.models import Payment, PaymentAttempt
from paygate.security.audit import Actor
from paygate.security.crypto import Keyring
from paygate.settings import Settings


@dataclass(frozen=True)
class Caller:
    """Who takes the payment: an API client, an admin, or a customer on the payment page."""

    company_id: str
    actor: Actor
    origin: Origin | None


@dataclass(frozen=True)
class PaymentContext:
    database: Database
    keyring: Keyring
    settings: Settings
    caller: Caller

    def request_of(self, payment: Payment, attempt: PaymentAttempt) -> PaymentRequest:
        """The gateway request of an attempt, the same every time it is sent or asked about."""
        return PaymentRequest(
            reference=payment.id,
            idempotency_key=attempt.id,
            amount=payment.amount,
            currency=payment.currency,
            flow=PaymentFlow(payment.flow),
            payment_method=payment.payment_method,
            # The gateway sends the customer back to paygate, which finishes the payment.
            return_url=f"{self.settings.base_url}/payments/{payment.id}/return",
            cancel_url=f"{self.settings.base_url}/payments/{payment.id}/return?canceled=1",
            description=f"Payment {payment.id}",
        )
