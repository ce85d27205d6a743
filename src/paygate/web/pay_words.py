"""What the customer reads on the payment page: gateways by their public label, never by the
team's internal name, why a payment failed in plain words (modelled on Stripe's
customer-facing decline messages), never a provider's own message or code, and the
service's refusals said to the customer instead of to an API client."""

from __future__ import annotations

from paygate.gateways.adapters.base import GatewayType
from paygate.gateways.adapters.registry import spec_for
from paygate.gateways.connection import CREDENTIALS_UNREADABLE
from paygate.gateways.models import Gateway
from paygate.kit.errors import FieldError, Problem

METHOD_LABELS = {"card": "Card", "paypal": "PayPal"}


def method_label(method_type: str) -> str:
    return METHOD_LABELS.get(method_type, method_type.replace("_", " ").title())


def default_public_label(gateway_type: str, method_type: str) -> str:
    """The method and the provider: "Card via Stripe", "PayPal", "Test card (sandbox)"."""
    if gateway_type == GatewayType.SANDBOX:
        return f"Test {method_label(method_type).lower()} (sandbox)"
    provider = spec_for(GatewayType(gateway_type)).display_name
    method = method_label(method_type)
    return provider if method == provider else f"{method} via {provider}"


def public_label(gateway: Gateway, method_type: str) -> str:
    """The label the company set for its customers, else the method and the provider."""
    return gateway.public_label or default_public_label(gateway.gateway_type, method_type)


_ANOTHER_CARD = "Please use another card, or contact your bank."

# Keyed by paygate's failure codes (DeclineCode and the settle path's technical codes).
# A fraud suspicion reads as a plain decline, as Stripe advises: never tell who is suspected.
CUSTOMER_FAILURES: dict[str, str] = {
    "card_declined": f"Your card was declined. {_ANOTHER_CARD}",
    "fraud_suspected": f"Your card was declined. {_ANOTHER_CARD}",
    "insufficient_funds": "Your card has insufficient funds. Please use another card.",
    "expired_card": "Your card has expired. Please use another card.",
    "incorrect_cvc": "Your card's security code is incorrect. Check it and try again.",
    "processing_error": (
        "An error occurred while processing your card. Please try again in a moment."
    ),
    "authentication_failed": (
        "Your bank could not confirm it was you. Please try again, or use another card."
    ),
    "customer_canceled": "You canceled the payment.",
    "canceled": "The payment was canceled.",
    "gateway_misconfigured": (
        "This way to pay is not working right now. Please choose another, or try again later."
    ),
    "invalid_request": (
        "This way to pay is not working right now. Please choose another, or try again later."
    ),
}
DEFAULT_FAILURE = "The payment did not go through. Please try again, or choose another way to pay."


def customer_failure(failure_code: str | None) -> str:
    return CUSTOMER_FAILURES.get(failure_code or "", DEFAULT_FAILURE)


# The service speaks to API clients (minor units, field names): say it to the customer.
CUSTOMER_WORDS = {
    "too_large": "That is more than what is due now.",
    "partial_not_allowed": "Please pay the full amount due.",
    "ineligible": "This way to pay is not available for this invoice. Please choose another.",
    CREDENTIALS_UNREADABLE: (
        "This way to pay is not available right now. Please choose another, or try again later."
    ),
}


def customer_words(problem: Problem) -> Problem:
    if problem.status == 404 and problem.detail == "No such gateway.":
        return Problem(422, "ineligible", "Not available", CUSTOMER_WORDS["ineligible"])
    if problem.slug == CREDENTIALS_UNREADABLE:
        # The merchant's key trouble is theirs to fix: the customer only learns to pay otherwise.
        return Problem(problem.status, problem.slug, "Not available", CUSTOMER_WORDS[problem.slug])
    if problem.slug == "no-eligible-gateway":
        return Problem(422, problem.slug, problem.title, CUSTOMER_WORDS["ineligible"])
    if not problem.errors:
        return problem
    errors = [
        FieldError(e.field, CUSTOMER_WORDS.get(e.code, e.message), e.code) for e in problem.errors
    ]
    return Problem(problem.status, problem.slug, problem.title, problem.detail, errors=errors)
