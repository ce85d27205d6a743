"""The built-in sandbox gateway: no account, no network, deterministic test cards.

`SANDBOX_CARDS` is the sandbox's public contract: the payment flow, the docs and the
tests all take their card numbers from this table, so a number never changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    GatewayType,
    GatewayTypeSpec,
)


class SandboxOutcome(StrEnum):
    """What the sandbox answers for a card."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    # The customer must complete a step on a page the gateway hosts (3-D Secure-like).
    REQUIRES_ACTION = "requires_action"
    # The answer is late and says nothing final: the payment's outcome is unknown.
    UNKNOWN = "unknown"


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


class SandboxAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    async def test_connection(self) -> ConnectionCheck:
        # Nothing to reach: the sandbox lives inside paygate.
        return ConnectionCheck(message="Sandbox is built in: no network call needed.")
