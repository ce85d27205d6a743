"""Simulation: a proposed rule set run over the company's last 30 days of payments.

Each payment is routed again by the same engine as live payments, as the gateways are
configured now and with every gateway up (the breakers of the past are not known), and
counted beside what happened: where it went and whether it succeeded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.invoices.models import Invoice
from paygate.kit.clock import utcnow
from paygate.payments.models import Payment
from paygate.routing.card_brand import card_brand_of
from paygate.routing.decision import compile_rules, load_inputs, success_rates
from paygate.routing.engine import RoutingInput, Rule, RuleSet, SuccessRate
from paygate.routing.engine import decide as engine_decide
from paygate.routing.models import RoutingRule

PERIOD = timedelta(days=30)
MAX_PAYMENTS = 50_000


@dataclass(frozen=True)
class GatewayCount:
    gateway_id: str
    name: str
    simulated: int
    actual: int
    actual_succeeded: int


@dataclass(frozen=True)
class Simulation:
    since: datetime
    until: datetime
    payments: int
    truncated: bool
    changed: int
    unroutable: int
    gateways: list[GatewayCount]


async def simulate(
    session: AsyncSession,
    company_id: str,
    rules: Sequence[RoutingRule],
    default_gateway_ids: Sequence[str],
) -> Simulation:
    until = utcnow()
    since = until - PERIOD
    inputs = await load_inputs(session, company_id, now=until)
    rule_set = RuleSet(-1, compile_rules(rules), tuple(default_gateway_ids))
    # Success-rate rules are ordered by the rates of now: one read per rule, not per payment.
    rates: dict[str, dict[str, SuccessRate]] = {}
    for rule in rule_set.rules:
        if rule.kind == "success_rate":
            found = await success_rates(session, company_id, rule, rule.gateway_ids, until)
            rates[rule.id] = dict(found)

    def rates_for(rule: Rule, _usable: Sequence[str]) -> dict[str, SuccessRate]:
        return rates.get(rule.id, {})

    statement = (
        select(
            Payment.id,
            Payment.amount,
            Payment.currency,
            Payment.payment_method_type,
            Payment.payment_method,
            Payment.gateway_id,
            Payment.status,
            Invoice.customer_country,
            Invoice.meta,
        )
        .join(Invoice, Invoice.id == Payment.invoice_id)
        .where(Payment.company_id == company_id, Payment.created_at >= since)
        .order_by(Payment.created_at.desc())
        .limit(MAX_PAYMENTS + 1)
    )
    rows = (await session.execute(statement)).all()
    truncated = len(rows) > MAX_PAYMENTS
    simulated: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    succeeded: Counter[str] = Counter()
    changed = unroutable = 0
    for row in rows[:MAX_PAYMENTS]:
        payment = RoutingInput(
            amount=row.amount,
            currency=row.currency,
            payment_method_type=row.payment_method_type,
            card_brand=card_brand_of(row.payment_method),
            customer_country=row.customer_country,
            metadata=row.meta or {},
            payment_id=row.id,
        )
        decision = engine_decide(
            rule_set, payment, inputs.gateways, by_priority=inputs.by_priority, rates=rates_for
        )
        actual[row.gateway_id] += 1
        if row.status == "succeeded":
            succeeded[row.gateway_id] += 1
        if not decision.gateways:
            unroutable += 1
            changed += 1
            continue
        first = decision.gateway_ids[0]
        simulated[first] += 1
        if first != row.gateway_id:
            changed += 1
    names = {gateway_id: gateway.name for gateway_id, gateway in inputs.gateways.items()}
    seen = list(dict.fromkeys([*inputs.by_priority, *simulated, *actual]))
    counts = [
        GatewayCount(
            gateway_id,
            names.get(gateway_id, gateway_id),
            simulated[gateway_id],
            actual[gateway_id],
            succeeded[gateway_id],
        )
        for gateway_id in seen
        if simulated[gateway_id] or actual[gateway_id] or gateway_id in names
    ]
    return Simulation(
        since, until, min(len(rows), MAX_PAYMENTS), truncated, changed, unroutable, counts
    )
