"""Every query of payments, attempts, events, refunds, idempotency keys and gateway calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import aliased

from paygate.gateways.models import Gateway
from paygate.invoices.models import Invoice
from paygate.kit.errors import not_found
from paygate.kit.pagination import PageParams
from paygate.kit.repository import TenantRepository, apply_filters
from paygate.kit.sql import HotStatement, attach, labelled, run, transaction_memo
from paygate.payments.idempotency_repository import CLAIM, claim_params
from paygate.payments.models import (
    GatewayCall,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    Refund,
)


@dataclass(frozen=True)
class PaymentFilters:
    invoice_id: str | None = None
    gateway_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


_LOCK_INVOICE = HotStatement(
    select(*labelled(Invoice, "i_"))
    .where(Invoice.company_id == bindparam("company_id"), Invoice.id == bindparam("invoice_id"))
    .with_for_update()
)
_LOCK_PAYMENT_AND_ATTEMPT = (
    select(*labelled(Payment, "p_"), *labelled(PaymentAttempt, "a_"))
    .join(PaymentAttempt, PaymentAttempt.payment_id == Payment.id)
    .where(
        Payment.company_id == bindparam("company_id"),
        Payment.id == bindparam("payment_id"),
        PaymentAttempt.id == bindparam("attempt_id"),
    )
    .with_for_update()
)
_LOCK_WITH_ATTEMPT_AND_INVOICE = HotStatement(
    _LOCK_PAYMENT_AND_ATTEMPT.add_columns(*labelled(Invoice, "i_")).join(
        Invoice, Invoice.id == Payment.invoice_id
    )
)
_LOCK_WITH_ATTEMPT = HotStatement(_LOCK_PAYMENT_AND_ATTEMPT)
# A failover's first read: the payment and its attempt locked, and the gateways it may go
# on to as they are now (one row per gateway found; the gateways are read, not locked).
_LOCK_WITH_ATTEMPT_AND_GATEWAYS = HotStatement(
    select(*labelled(Payment, "p_"), *labelled(PaymentAttempt, "a_"), *labelled(Gateway, "g_"))
    .join(PaymentAttempt, PaymentAttempt.payment_id == Payment.id)
    .outerjoin(
        Gateway,
        and_(
            Gateway.company_id == Payment.company_id,
            Gateway.id == func.any(bindparam("gateway_ids")),
            Gateway.archived_at.is_(None),
        ),
    )
    .where(
        Payment.company_id == bindparam("company_id"),
        Payment.id == bindparam("payment_id"),
        PaymentAttempt.id == bindparam("attempt_id"),
    )
    .with_for_update(of=[Payment.__table__, PaymentAttempt.__table__])
)


# A gateway's report (a webhook) names its payment by the gateway's reference or by
# paygate's own id echoed back.
def _known_by_reference(statement: Select[Any]) -> Select[Any]:
    return (
        statement.where(
            Payment.company_id == bindparam("company_id"),
            Payment.gateway_id == bindparam("gateway_id"),
            or_(
                Payment.gateway_reference == func.any(bindparam("refs")),
                Payment.id == bindparam("paygate_id"),
            ),
        )
        .order_by(Payment.created_at.desc())
        .limit(1)
    )


_BY_REFERENCE = HotStatement(_known_by_reference(select(*labelled(Payment, "p_"))))
# Settling it: the payment and its invoice locked, with its newest attempt (the one the
# report is about), in one round trip.
_NEWER = aliased(PaymentAttempt)
_NEWEST_ATTEMPT_ID = (
    select(_NEWER.id)
    .where(_NEWER.company_id == Payment.company_id, _NEWER.payment_id == Payment.id)
    .order_by(_NEWER.id.desc())
    .limit(1)
    .correlate(Payment)
    .scalar_subquery()
)
_LOCK_REPORTED = HotStatement(
    _known_by_reference(
        select(*labelled(Payment, "p_"), *labelled(PaymentAttempt, "a_"), *labelled(Invoice, "i_"))
        .select_from(Payment)
        .join(PaymentAttempt, PaymentAttempt.id == _NEWEST_ATTEMPT_ID)
        .join(
            Invoice,
            and_(Invoice.company_id == Payment.company_id, Invoice.id == Payment.invoice_id),
        )
    ).with_for_update(of=[Payment.__table__, Invoice.__table__])
)

_ATTEMPTS = HotStatement(
    select(*labelled(PaymentAttempt))
    .where(
        PaymentAttempt.company_id == bindparam("company_id"),
        PaymentAttempt.payment_id == func.any(bindparam("payment_ids")),
    )
    .order_by(PaymentAttempt.id)
)
_LATEST_ATTEMPT = HotStatement(
    select(*labelled(PaymentAttempt))
    .where(
        PaymentAttempt.company_id == bindparam("company_id"),
        PaymentAttempt.payment_id == bindparam("payment_id"),
    )
    .order_by(PaymentAttempt.id.desc())
    .limit(1)
)
_EVENTS = HotStatement(
    select(*labelled(PaymentEvent))
    .where(
        PaymentEvent.company_id == bindparam("company_id"),
        PaymentEvent.payment_id == func.any(bindparam("payment_ids")),
    )
    .order_by(PaymentEvent.id)
)


class PaymentRepository(TenantRepository[Payment]):
    model = Payment
    what = "payment"

    async def search(
        self, filters: PaymentFilters, params: PageParams
    ) -> tuple[Sequence[Payment], str | None]:
        statement = apply_filters(
            self.scoped(),
            [
                (filters.invoice_id, lambda v: Payment.invoice_id == v),
                (filters.gateway_id, lambda v: Payment.gateway_id == v),
                (filters.status, lambda v: Payment.status == v),
                (filters.since, lambda v: Payment.created_at >= v),
                (filters.until, lambda v: Payment.created_at < v),
            ],
        )
        return await self.page(statement, params)

    async def waiting_for_action(self, invoice_id: str) -> list[str]:
        statement = select(Payment.id).where(
            Payment.company_id == self.company_id,
            Payment.invoice_id == invoice_id,
            Payment.status == "requires_action",
        )
        return list((await self.session.execute(statement)).scalars())

    def _locked_invoices(self) -> dict[str, Invoice]:
        """Invoices the session's current transaction holds locked, kept referenced (the
        identity map alone holds them weakly)."""
        return transaction_memo(self.session, "locked_invoices")

    async def lock_invoice(self, invoice_id: str) -> Invoice:
        """The invoice, row-locked, without its lines (a payment needs only its totals);
        read once per transaction."""
        held = self._locked_invoices().get(invoice_id)
        if held is not None and held.company_id == self.company_id:
            return held
        rows = await run(
            self.session, _LOCK_INVOICE, {"company_id": self.company_id, "invoice_id": invoice_id}
        )
        if not rows:
            raise not_found("invoice")
        invoice = attach(self.session, Invoice, rows[0], prefix="i_")
        self._locked_invoices()[invoice.id] = invoice
        return invoice

    async def lock_with_attempt(
        self, payment_id: str, attempt_id: str, *, with_invoice: bool = False
    ) -> tuple[Payment, PaymentAttempt]:
        """A payment and one of its attempts, both row-locked, in one round trip; with
        `with_invoice`, its invoice too (settling moves it: `lock_invoice` then reads none)."""
        params = {"company_id": self.company_id, "payment_id": payment_id, "attempt_id": attempt_id}
        statement = _LOCK_WITH_ATTEMPT_AND_INVOICE if with_invoice else _LOCK_WITH_ATTEMPT
        rows = await run(self.session, statement, params)
        if not rows:
            raise not_found(self.what)
        payment = attach(self.session, Payment, rows[0], prefix="p_")
        attempt = attach(self.session, PaymentAttempt, rows[0], prefix="a_")
        if with_invoice:
            invoice = attach(self.session, Invoice, rows[0], prefix="i_")
            self._locked_invoices()[invoice.id] = invoice
        return payment, attempt

    async def lock_for_failover(
        self, payment_id: str, attempt_id: str, gateway_ids: Sequence[str]
    ) -> tuple[Payment, PaymentAttempt, dict[str, Gateway | None]]:
        """`lock_with_attempt`, and in the same round trip each of `gateway_ids` as it is
        now (None: archived or gone)."""
        params = {
            "company_id": self.company_id,
            "payment_id": payment_id,
            "attempt_id": attempt_id,
            "gateway_ids": list(gateway_ids),
        }
        rows = await run(self.session, _LOCK_WITH_ATTEMPT_AND_GATEWAYS, params)
        if not rows:
            raise not_found(self.what)
        payment = attach(self.session, Payment, rows[0], prefix="p_")
        attempt = attach(self.session, PaymentAttempt, rows[0], prefix="a_")
        found = {
            row.g_id: attach(self.session, Gateway, row, prefix="g_") for row in rows if row.g_id
        }
        return payment, attempt, {gateway_id: found.get(gateway_id) for gateway_id in gateway_ids}

    def _reference_params(
        self, gateway_id: str, references: Sequence[str], paygate_id: str | None
    ) -> dict[str, Any] | None:
        refs = [r for r in references if r]
        if not refs and not paygate_id:
            return None
        return {
            "company_id": self.company_id,
            "gateway_id": gateway_id,
            "refs": refs,
            "paygate_id": paygate_id or None,
        }

    async def by_reference(
        self, gateway_id: str, references: Sequence[str], paygate_id: str | None
    ) -> Payment | None:
        """The company's payment at this gateway known by one of the gateway's references,
        or by paygate's own id as the gateway echoes it."""
        params = self._reference_params(gateway_id, references, paygate_id)
        rows = await run(self.session, _BY_REFERENCE, params) if params else []
        return attach(self.session, Payment, rows[0], prefix="p_") if rows else None

    async def lock_reported(
        self, gateway_id: str, references: Sequence[str], paygate_id: str | None
    ) -> tuple[Payment, PaymentAttempt] | None:
        """`by_reference`, row-locked with its invoice (settling then reads none), and its
        newest attempt; None when there is no such payment."""
        params = self._reference_params(gateway_id, references, paygate_id)
        rows = await run(self.session, _LOCK_REPORTED, params) if params else []
        if not rows:
            return None
        invoice = attach(self.session, Invoice, rows[0], prefix="i_")
        self._locked_invoices()[invoice.id] = invoice
        payment = attach(self.session, Payment, rows[0], prefix="p_")
        return payment, attach(self.session, PaymentAttempt, rows[0], prefix="a_")

    async def claim_key_and_lock_invoice(
        self, key: str, request_hash: str, expires_at: datetime, invoice_id: str
    ) -> int | None:
        """`IdempotencyRepository.reserve` and `lock_invoice` in one round trip: the claim's
        row id (None: the key is taken); the invoice is then held for the transaction."""
        params = claim_params(self.company_id, key, request_hash, expires_at)
        rows = await run(
            self.session, _CLAIM_KEY_AND_LOCK_INVOICE, {**params, "invoice_id": invoice_id}
        )
        if not rows:
            raise not_found("invoice")
        invoice = attach(self.session, Invoice, rows[0], prefix="i_")
        self._locked_invoices()[invoice.id] = invoice
        return int(rows[0].claim_id) if rows[0].claim_id is not None else None

    async def of_invoice(self, invoice_id: str) -> Sequence[Payment]:
        statement = self.scoped().where(Payment.invoice_id == invoice_id).order_by(Payment.id)
        return (await self.session.execute(statement)).scalars().all()

    async def attempts(self, payment_ids: Sequence[str]) -> Sequence[PaymentAttempt]:
        """The payments' attempts, oldest first (a failed-over payment's answer shows them)."""
        params = {"company_id": self.company_id, "payment_ids": list(payment_ids)}
        rows = await run(self.session, _ATTEMPTS, params)
        return [attach(self.session, PaymentAttempt, row) for row in rows]

    async def latest_attempt(self, payment_id: str) -> PaymentAttempt | None:
        """The payment's newest attempt (the one a gateway's report is about)."""
        params = {"company_id": self.company_id, "payment_id": payment_id}
        rows = await run(self.session, _LATEST_ATTEMPT, params)
        return attach(self.session, PaymentAttempt, rows[0]) if rows else None

    async def events(self, payment_ids: Sequence[str]) -> Sequence[PaymentEvent]:
        """The payments' histories (every payment's answer shows its own)."""
        params = {"company_id": self.company_id, "payment_ids": list(payment_ids)}
        rows = await run(self.session, _EVENTS, params)
        return [attach(self.session, PaymentEvent, row) for row in rows]

    async def refunds(self, payment_ids: Sequence[str]) -> Sequence[Refund]:
        statement = (
            select(Refund)
            .where(Refund.company_id == self.company_id, Refund.payment_id.in_(payment_ids))
            .order_by(Refund.id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def pending_refund_amount(self, payment_id: str) -> int:
        statement = select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.company_id == self.company_id,
            Refund.payment_id == payment_id,
            Refund.status == "pending",
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def refund(self, refund_id: str, *, for_update: bool = False) -> Refund | None:
        statement = select(Refund).where(
            Refund.company_id == self.company_id, Refund.id == refund_id
        )
        if for_update:
            statement = statement.with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def payment_id_of_refund(self, refund_id: str) -> str | None:
        """The payment a refund belongs to (a plain read, to lock that payment first)."""
        statement = select(Refund.payment_id).where(
            Refund.company_id == self.company_id, Refund.id == refund_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def calls(
        self, payment_id: str | None, params: PageParams
    ) -> tuple[Sequence[GatewayCall], str | None]:
        statement = select(GatewayCall).where(GatewayCall.company_id == self.company_id)
        if payment_id:
            statement = statement.where(GatewayCall.payment_id == payment_id)
        if params.cursor:
            statement = statement.where(GatewayCall.id < params.cursor)
        rows = (
            (
                await self.session.execute(
                    statement.order_by(GatewayCall.id.desc()).limit(params.limit + 1)
                )
            )
            .scalars()
            .all()
        )
        cursor = rows[params.limit - 1].id if len(rows) > params.limit else None
        return rows[: params.limit], cursor


# An API payment's first statement: its key claimed and its invoice locked. Invoices are
# never deleted, so no row means no such invoice (and the claim rolls back with the 404).
_CLAIMED = CLAIM.cte("claimed")
_CLAIM_KEY_AND_LOCK_INVOICE = HotStatement(
    select(select(_CLAIMED.c.id).scalar_subquery().label("claim_id"), *labelled(Invoice, "i_"))
    .where(Invoice.company_id == bindparam("company_id"), Invoice.id == bindparam("invoice_id"))
    .with_for_update(of=Invoice.__table__)
)
