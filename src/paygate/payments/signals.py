"""What the one settle path announces, inside its transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from paygate.kit.signals import Signal


@dataclass(frozen=True)
class PaymentChange:
    """A payment or a refund moved from one status to another."""

    company_id: str
    kind: Literal["payment", "refund"]
    payment_id: str
    refund_id: str | None
    invoice_id: str
    gateway_id: str
    from_status: str | None
    to_status: str
    amount: int  # the payment's amount, or the refund's
    currency: str
    failure_code: str | None
    failure_kind: str | None
    invoice_paid: bool  # this change made the invoice paid in full
    occurred_at: datetime


payment_settled: Signal[PaymentChange] = Signal("payment_settled")
