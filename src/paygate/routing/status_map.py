"""What a failed attempt means for the next one: the gateway status map.

Hyperswitch keeps a table from (connector, flow, error code) to a decision ("retry" at the
next connector, or "do default": stop). paygate's adapters already normalize every
provider's answer onto one small taxonomy (gateways/adapters/base.py), so the map is keyed
by that: the kind of failure and paygate's normalized code.

- Technical, request never acted on (connection refused, timeout before sending, 429, 503,
  gateway down, bad credentials): nothing was charged, so the next gateway may be tried.
- Technical, outcome unknown (timeout after sending, 500, 502, 504): the gateway may have
  charged. It is asked first (by the attempt's idempotency key); only an answer that says
  no payment was made lets the next gateway be tried.
- Hard declines: the card or the customer was refused; another gateway would refuse too
  (and trying again looks like card testing). Never retried elsewhere.
- Soft declines: retried at the next gateway only when the company's policy lists the code.
"""

from __future__ import annotations

from enum import StrEnum

from paygate.gateways.adapters.base import DeclineCode


class Next(StrEnum):
    FAIL_OVER = "fail_over"  # try the next eligible gateway
    ASK_FIRST = "ask_first"  # the outcome is unknown: ask this gateway before anything else
    STOP = "stop"  # the failure is final for this payment


# Declines that another gateway may accept: the decline said nothing certain about the card.
SOFT_DECLINE_CODES: tuple[str, ...] = (
    DeclineCode.PROCESSING_ERROR.value,
    DeclineCode.CARD_DECLINED.value,
)
# Never retried elsewhere, whatever the policy says.
HARD_DECLINE_CODES: tuple[str, ...] = (
    DeclineCode.INSUFFICIENT_FUNDS.value,
    DeclineCode.EXPIRED_CARD.value,
    DeclineCode.INCORRECT_CVC.value,
    DeclineCode.FRAUD_SUSPECTED.value,
    DeclineCode.AUTHENTICATION_FAILED.value,
    DeclineCode.CUSTOMER_CANCELED.value,
    "invalid_number",
)
DEFAULT_RETRY_DECLINE_CODES: tuple[str, ...] = (DeclineCode.PROCESSING_ERROR.value,)

# The technical failures that move a payment to the next gateway, as the policy page and
# the docs list them (the adapters' error taxonomy decides which one an error is).
TECHNICAL_FAILURES: dict[str, str] = {
    "connection_refused": "The gateway could not be reached; nothing was sent.",
    "timeout_before_send": "The connection timed out before the request was sent.",
    "rate_limited": "The gateway answered 429: it did not take the request.",
    "unavailable": "The gateway answered 503: it did not take the request.",
    "gateway_down": "The gateway's circuit breaker is open or monitoring reports it down.",
    "misconfigured": "The gateway refused paygate's credentials.",
}
UNKNOWN_OUTCOMES: dict[str, str] = {
    "timeout_after_send": "The request was sent but no answer came in time.",
    "server_error": "The gateway answered 500, 502 or 504: it may have acted.",
}


def after_decline(code: str, *, hard: bool, retry_codes: tuple[str, ...] | list[str]) -> Next:
    """A declined attempt: try the next gateway only for a soft code the policy lists."""
    if hard or code in HARD_DECLINE_CODES:
        return Next.STOP
    return Next.FAIL_OVER if code in retry_codes else Next.STOP
