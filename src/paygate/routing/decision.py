"""Loading what a routing decision needs and making it: the function the payment path calls.

`route_for(session, company_id, payment)` reads the company's rule set (parsed once per
version and kept in this process), its gateways, its circuit breakers and the health
monitor's view, and lets the pure engine (`routing/engine.py`) decide; its `Route` keeps the
ordered gateways and the policy, so the payment path's failover walks the same list without
reading routing again. Preview and simulation go through the same engine, so what the page
shows is what payments do.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.models import Gateway
from paygate.gateways.repository import GatewayRepository
from paygate.kit.clock import utcnow
from paygate.routing import breaker
from paygate.routing.engine import (
    RouteDecision,
    RoutingInput,
    Rule,
    RuleSet,
    SuccessRate,
    compile_rule,
)
from paygate.routing.engine import decide as engine_decide
from paygate.routing.models import RoutingRule
from paygate.routing.policy import Policy, policy_of
from paygate.routing.repository import RoutingRepository, RuleRepository

# Parsed rule sets by company, valid for the version they were read at. The version is
# read (one row) by every decision, so a change made by any process is seen at once.
_CACHE_SIZE = 1000
_rule_sets: OrderedDict[str, RuleSet] = OrderedDict()
# A gateway's newest finished attempts read for its success rate: enough to rate it,
# bounded so a busy gateway costs no more than a quiet one.
RATE_SAMPLE = 200


def compile_rules(rows: Sequence[RoutingRule]) -> tuple[Rule, ...]:
    return tuple(
        compile_rule(row.id, row.name, index + 1, row.enabled, row.conditions, row.action)
        for index, row in enumerate(rows)
    )


async def load_rule_set(
    session: AsyncSession,
    company_id: str,
    version: int | None,
    default_gateway_ids: tuple[str, ...] = (),
) -> RuleSet:
    """The company's rules at `version` (None: never configured), parsed once per version."""
    cached = _rule_sets.get(company_id)
    if cached is not None and cached.version == (version or 0):
        _rule_sets.move_to_end(company_id)
        return cached
    rows = await RuleRepository(session, company_id).ordered() if version is not None else []
    rule_set = RuleSet(version or 0, compile_rules(rows), default_gateway_ids)
    _rule_sets[company_id] = rule_set
    while len(_rule_sets) > _CACHE_SIZE:
        _rule_sets.popitem(last=False)
    return rule_set


@dataclass(frozen=True)
class Inputs:
    """Everything but the payment that a decision reads."""

    rule_set: RuleSet
    gateways: dict[str, Gateway]
    by_priority: list[str]
    down: dict[str, str]
    probe_due: set[str]
    policy: Policy


async def load_inputs(
    session: AsyncSession, company_id: str, *, now: datetime | None = None
) -> Inputs:
    moment = now or utcnow()
    listed = await GatewayRepository(session, company_id).listing()
    head = await RoutingRepository(session, company_id).head()
    policy = policy_of(head.policy)
    view = breaker.view(head.open_breakers, policy, moment)
    down = {**head.monitored_down, **view.down}
    return Inputs(
        rule_set=await load_rule_set(session, company_id, head.version, head.default_gateway_ids),
        gateways={g.id: g for g in listed},
        by_priority=[g.id for g in listed],
        down=down,
        probe_due=view.probe_due - set(down),
        policy=policy,
    )


async def success_rates(
    session: AsyncSession, company_id: str, rule: Rule, gateway_ids: Sequence[str], now: datetime
) -> Mapping[str, SuccessRate]:
    since = now - timedelta(minutes=rule.window_minutes)
    sample = max(rule.min_attempts, RATE_SAMPLE)
    return await RoutingRepository(session, company_id).success_rates(gateway_ids, since, sample)


async def decide_with(
    session: AsyncSession,
    company_id: str,
    payment: RoutingInput,
    inputs: Inputs,
    *,
    claim_probes: bool = False,
    now: datetime | None = None,
) -> RouteDecision:
    """Decide with loaded inputs. `claim_probes`: the payment path lets one trial payment
    through a half-open breaker (preview and simulation only look)."""
    moment = now or utcnow()
    rates: dict[str, SuccessRate] = {}
    rule = next((r for r in inputs.rule_set.rules if r.enabled and r.matches(payment)), None)
    if rule is not None and rule.kind == "success_rate":
        usable = [g for g in rule.gateway_ids if g in inputs.gateways]
        rates = dict(await success_rates(session, company_id, rule, usable, moment))
    decision = engine_decide(
        inputs.rule_set,
        payment,
        inputs.gateways,
        by_priority=inputs.by_priority,
        down=inputs.down,
        rates=rates,
    )
    first = decision.gateway_ids[0] if decision.gateways else None
    if claim_probes and first in inputs.probe_due:
        # The first gateway's breaker is due for its one trial: only the winner of the claim
        # sends it there; the others see it down until the trial's outcome is known.
        assert first is not None
        routing = RoutingRepository(session, company_id)
        if not await routing.claim_probe(first, inputs.policy.breaker_cooldown, moment):
            down = {**inputs.down, first: "circuit half-open: a trial payment is in progress"}
            decision = engine_decide(
                inputs.rule_set,
                payment,
                inputs.gateways,
                by_priority=inputs.by_priority,
                down=down,
                rates=rates,
            )
    return decision


async def decide(
    session: AsyncSession,
    company_id: str,
    payment: RoutingInput,
    *,
    claim_probes: bool = False,
) -> RouteDecision:
    """Which of the company's gateways take this payment, in what order, and why."""
    return (await route_for(session, company_id, payment, claim_probes=claim_probes)).decision


@dataclass(frozen=True)
class Route:
    """A decision with the gateways and policy it was made from. The payment path keeps it:
    the first gateway takes the payment, and a failover goes on down the same list without
    deciding again (as Hyperswitch walks the connector list it routed)."""

    decision: RouteDecision
    gateways: tuple[Gateway, ...]  # the decision's order
    policy: Policy

    @property
    def first(self) -> Gateway | None:
        return self.gateways[0] if self.gateways else None


async def route_for(
    session: AsyncSession, company_id: str, payment: RoutingInput, *, claim_probes: bool = False
) -> Route:
    """Decide for `payment` with freshly read inputs (`claim_probes`: see `decide_with`)."""
    now = utcnow()
    inputs = await load_inputs(session, company_id, now=now)
    decision = await decide_with(
        session, company_id, payment, inputs, claim_probes=claim_probes, now=now
    )
    gateways = tuple(inputs.gateways[gateway_id] for gateway_id in decision.gateway_ids)
    return Route(decision, gateways, inputs.policy)


async def choose(session: AsyncSession, company_id: str, payment: RoutingInput) -> Route:
    """The payment path's call: the decision, a half-open breaker's one trial claimed."""
    return await route_for(session, company_id, payment, claim_probes=True)


async def routed_gateways(
    session: AsyncSession, company_id: str, payment: RoutingInput
) -> list[Gateway]:
    """The gateways routing would try for this payment, in order (the payment page offers
    these, first choice first)."""
    return list((await route_for(session, company_id, payment)).gateways)
