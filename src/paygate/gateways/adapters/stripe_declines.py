"""Stripe's decline codes in paygate's terms, and the decline that names its PaymentIntent."""

from __future__ import annotations

from paygate.gateways.adapters.base import DECLINE_MESSAGES, Decline, DeclineCode
from paygate.gateways.adapters.base_errors import GatewayDeclined

# Stripe's `decline_code` (or the error's `code` when there is none) -> paygate's code and
# whether the decline is hard. Soft: Stripe's next step is to try again (later, or after
# the customer authenticates); hard: the customer must use another card or call the bank.
_DECLINES: dict[str, tuple[DeclineCode, bool]] = {
    "card_declined": (DeclineCode.CARD_DECLINED, True),
    "generic_decline": (DeclineCode.CARD_DECLINED, True),
    "do_not_honor": (DeclineCode.CARD_DECLINED, True),
    "call_issuer": (DeclineCode.CARD_DECLINED, True),
    "card_not_supported": (DeclineCode.CARD_DECLINED, True),
    "currency_not_supported": (DeclineCode.CARD_DECLINED, True),
    "incorrect_number": (DeclineCode.CARD_DECLINED, True),
    "invalid_number": (DeclineCode.CARD_DECLINED, True),
    "invalid_account": (DeclineCode.CARD_DECLINED, True),
    "new_account_information_available": (DeclineCode.CARD_DECLINED, True),
    "no_action_taken": (DeclineCode.CARD_DECLINED, True),
    "not_permitted": (DeclineCode.CARD_DECLINED, True),
    "restricted_card": (DeclineCode.CARD_DECLINED, True),
    "revocation_of_authorization": (DeclineCode.CARD_DECLINED, True),
    "revocation_of_all_authorizations": (DeclineCode.CARD_DECLINED, True),
    "service_not_allowed": (DeclineCode.CARD_DECLINED, True),
    "stop_payment_order": (DeclineCode.CARD_DECLINED, True),
    "transaction_not_allowed": (DeclineCode.CARD_DECLINED, True),
    "card_velocity_exceeded": (DeclineCode.CARD_DECLINED, False),
    "withdrawal_count_limit_exceeded": (DeclineCode.CARD_DECLINED, False),
    "insufficient_funds": (DeclineCode.INSUFFICIENT_FUNDS, False),
    "expired_card": (DeclineCode.EXPIRED_CARD, True),
    "invalid_expiry_month": (DeclineCode.EXPIRED_CARD, True),
    "invalid_expiry_year": (DeclineCode.EXPIRED_CARD, True),
    "incorrect_cvc": (DeclineCode.INCORRECT_CVC, True),
    "invalid_cvc": (DeclineCode.INCORRECT_CVC, True),
    "processing_error": (DeclineCode.PROCESSING_ERROR, False),
    "try_again_later": (DeclineCode.PROCESSING_ERROR, False),
    "issuer_not_available": (DeclineCode.PROCESSING_ERROR, False),
    "reenter_transaction": (DeclineCode.PROCESSING_ERROR, False),
    "approve_with_id": (DeclineCode.PROCESSING_ERROR, False),
    "fraudulent": (DeclineCode.FRAUD_SUSPECTED, True),
    "stolen_card": (DeclineCode.FRAUD_SUSPECTED, True),
    "lost_card": (DeclineCode.FRAUD_SUSPECTED, True),
    "pickup_card": (DeclineCode.FRAUD_SUSPECTED, True),
    "merchant_blacklist": (DeclineCode.FRAUD_SUSPECTED, True),
    "security_violation": (DeclineCode.FRAUD_SUSPECTED, True),
    "highest_risk_level": (DeclineCode.FRAUD_SUSPECTED, True),
    "authentication_required": (DeclineCode.AUTHENTICATION_FAILED, False),
    "payment_intent_authentication_failure": (DeclineCode.AUTHENTICATION_FAILED, False),
    "authentication_not_handled": (DeclineCode.AUTHENTICATION_FAILED, False),
}


def stripe_decline(stripe_code: str | None) -> Decline:
    """paygate's reading of a Stripe decline code (unknown codes: a hard card_declined)."""
    code, hard = _DECLINES.get(stripe_code or "", (DeclineCode.CARD_DECLINED, True))
    return Decline(code=code, message=DECLINE_MESSAGES[code], hard=hard, gateway_code=stripe_code)


class _StripeDeclined(GatewayDeclined):
    """A decline, with the PaymentIntent Stripe names in the error when it names one."""

    def __init__(self, decline: Decline, *, payment_intent: str | None) -> None:
        super().__init__(
            decline.message,
            decline_code=decline.code.value,
            hard=decline.hard,
            gateway_code=decline.gateway_code,
        )
        self.payment_intent = payment_intent


def _declined(decline: Decline, payment_intent: str | None = None) -> _StripeDeclined:
    return _StripeDeclined(decline, payment_intent=payment_intent)
