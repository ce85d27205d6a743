"""The routing JSON API: rules, their order and versions, preview, simulation, retry policy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId
from paygate.routing.engine import RouteDecision
from paygate.routing.models import RoutingRule
from paygate.routing.policy import Policy, RetryPolicyService
from paygate.routing.schemas import (
    DecisionOut,
    DefaultListIn,
    MatchedRuleOut,
    PreviewIn,
    ReorderIn,
    RetryPolicyIn,
    RetryPolicyOut,
    RoutedGatewayOut,
    RuleCreate,
    RuleOut,
    RuleSetOut,
    RuleUpdate,
    SimulatedGatewayOut,
    SimulateIn,
    SimulationOut,
    SkippedGatewayOut,
    SnapshotRule,
    VersionDetailOut,
)
from paygate.routing.service import RoutingService
from paygate.routing.simulation import Simulation
from paygate.security.history_schemas import VersionNumber, VersionOut

router = APIRouter(prefix="/api/v1", tags=["routing"], responses=PROBLEM_RESPONSES)

# Routing decides which gateway takes a payment: part of gateway configuration, so it is
# read and changed with the gateway permissions.
Reading = Annotated[AuthContext, Depends(require(Permission.GATEWAYS_READ))]
Writing = Annotated[AuthContext, Depends(require(Permission.GATEWAYS_WRITE))]


def rule_out(rule: RoutingRule, position: int) -> RuleOut:
    return RuleOut.model_validate(
        {
            "id": rule.id,
            "position": position,
            "name": rule.name,
            "enabled": rule.enabled,
            "conditions": rule.conditions,
            "action": rule.action,
            "created_at": rule.created_at,
            "updated_at": rule.updated_at,
        }
    )


async def rule_set_out(service: RoutingService) -> RuleSetOut:
    version, default, rules = await service.current()
    return RuleSetOut(
        version=version,
        default_gateway_ids=default,
        rules=[rule_out(rule, index) for index, rule in enumerate(rules, start=1)],
    )


def decision_out(decision: RouteDecision, explanation: str) -> DecisionOut:
    return DecisionOut(
        gateways=[
            RoutedGatewayOut(gateway_id=g.gateway_id, name=g.name, note=g.note)
            for g in decision.gateways
        ],
        skipped=[
            SkippedGatewayOut(
                gateway_id=s.gateway_id, name=s.name, reason=s.reason, detail=s.detail
            )
            for s in decision.skipped
        ],
        rule=MatchedRuleOut(
            id=decision.rule.id, name=decision.rule.name, position=decision.rule.position
        )
        if decision.rule
        else None,
        source=decision.source,
        explanation=explanation,
    )


def simulation_out(result: Simulation) -> SimulationOut:
    return SimulationOut(
        since=result.since,
        until=result.until,
        payments=result.payments,
        truncated=result.truncated,
        changed=result.changed,
        unroutable=result.unroutable,
        gateways=[
            SimulatedGatewayOut(
                gateway_id=g.gateway_id,
                name=g.name,
                simulated=g.simulated,
                actual=g.actual,
                actual_succeeded=g.actual_succeeded,
            )
            for g in result.gateways
        ],
    )


def policy_out(policy: Policy) -> RetryPolicyOut:
    return RetryPolicyOut(
        max_attempts=policy.max_attempts,
        retry_decline_codes=list(policy.retry_decline_codes),
        failover_customer_present=policy.failover_customer_present,
        failover_api=policy.failover_api,
        breaker_failures=policy.breaker_failures,
        breaker_cooldown_seconds=policy.breaker_cooldown_seconds,
        updated_at=policy.updated_at,
    )


@router.get("/routing-rules", response_model=RuleSetOut)
async def list_rules(auth: Reading, session: SessionDep) -> RuleSetOut:
    """The rules in the order they are evaluated, and the default list."""
    return await rule_set_out(RoutingService(session, auth))


@router.post("/routing-rules", status_code=status.HTTP_201_CREATED, response_model=RuleOut)
async def create_rule(body: RuleCreate, auth: Writing, session: SessionDep) -> RuleOut:
    service = RoutingService(session, auth)
    rule = await service.create(body)
    return rule_out(*await service.get(rule.id))


@router.put("/routing-rules/default", response_model=RuleSetOut)
async def set_default(body: DefaultListIn, auth: Writing, session: SessionDep) -> RuleSetOut:
    """The gateways tried, in order, when no rule matches."""
    service = RoutingService(session, auth)
    await service.set_default(body)
    return await rule_set_out(service)


@router.post("/routing-rules/reorder", response_model=RuleSetOut)
async def reorder_rules(body: ReorderIn, auth: Writing, session: SessionDep) -> RuleSetOut:
    service = RoutingService(session, auth)
    await service.reorder(body)
    return await rule_set_out(service)


@router.get("/routing-rules/versions", response_model=list[VersionOut])
async def list_versions(auth: Reading, session: SessionDep) -> list[VersionOut]:
    """Newest first: every change made a version."""
    return [VersionOut.of(v) for v in await RoutingService(session, auth).versions()]


@router.get("/routing-rules/versions/{version}", response_model=VersionDetailOut)
async def get_version(
    version: VersionNumber, auth: Reading, session: SessionDep
) -> VersionDetailOut:
    found = await RoutingService(session, auth).version(version)
    return VersionDetailOut(
        **VersionOut.of(found).model_dump(),
        default_gateway_ids=found.snapshot["default_gateway_ids"],
        rules=[SnapshotRule.model_validate(rule) for rule in found.snapshot["rules"]],
    )


@router.post("/routing-rules/versions/{version}/restore", response_model=RuleSetOut)
async def restore_version(version: VersionNumber, auth: Writing, session: SessionDep) -> RuleSetOut:
    """Put that version's rules and default list back (recorded as a new version)."""
    service = RoutingService(session, auth)
    await service.restore(version)
    return await rule_set_out(service)


@router.post("/routing-rules/preview", response_model=DecisionOut)
async def preview(body: PreviewIn, auth: Reading, session: SessionDep) -> DecisionOut:
    """Where a payment like this would go now, and why (nothing is written)."""
    decision, sentence = await RoutingService(session, auth).preview(body)
    return decision_out(decision, sentence)


@router.post("/routing-rules/simulate", response_model=SimulationOut)
async def simulate_rules(body: SimulateIn, auth: Reading, session: SessionDep) -> SimulationOut:
    """Run a proposed rule set (or a stored version, or the current rules) over the last
    30 days of payments, beside where they went."""
    return simulation_out(await RoutingService(session, auth).simulate(body))


@router.get("/routing-rules/{rule_id}", response_model=RuleOut)
async def get_rule(rule_id: ObjectId, auth: Reading, session: SessionDep) -> RuleOut:
    return rule_out(*await RoutingService(session, auth).get(rule_id))


@router.patch("/routing-rules/{rule_id}", response_model=RuleOut)
async def update_rule(
    rule_id: ObjectId, body: RuleUpdate, auth: Writing, session: SessionDep
) -> RuleOut:
    service = RoutingService(session, auth)
    await service.update(rule_id, body)
    return rule_out(*await service.get(rule_id))


@router.delete("/routing-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: ObjectId, auth: Writing, session: SessionDep) -> Response:
    await RoutingService(session, auth).delete(rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/retry-policy", response_model=RetryPolicyOut)
async def get_retry_policy(auth: Reading, session: SessionDep) -> RetryPolicyOut:
    return policy_out(await RetryPolicyService(session, auth).get())


@router.put("/retry-policy", response_model=RetryPolicyOut)
async def put_retry_policy(
    body: RetryPolicyIn, auth: Writing, session: SessionDep
) -> RetryPolicyOut:
    return policy_out(await RetryPolicyService(session, auth).update(body))
