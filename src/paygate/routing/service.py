"""Routing rules: create, edit, reorder, delete, the default list, versions and restore.

Every change locks the company's routing head (`routing_configs`), applies itself, and
records the whole rule set as a new version in the configuration history
(security/history.py) and an audit entry with what changed. Restoring a version writes its
rules back and records that as a version of its own, so a restore can be undone too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.gateways.repository import GatewayRepository
from paygate.kit.clock import utcnow
from paygate.kit.countries import is_country
from paygate.kit.errors import FieldError, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.money import Money, is_currency
from paygate.routing.decision import decide
from paygate.routing.engine import RouteDecision, RoutingInput
from paygate.routing.models import RoutingConfig, RoutingRule
from paygate.routing.repository import RoutingRepository, RuleRepository
from paygate.routing.schemas import (
    Conditions,
    DefaultListIn,
    PreviewIn,
    ProposedRule,
    ReorderIn,
    RuleCreate,
    RuleUpdate,
    SimulateIn,
    SnapshotRule,
)
from paygate.routing.simulation import Simulation, simulate
from paygate.routing.validation import check_default, check_rule
from paygate.security import audit
from paygate.security.audit_actions import AuditAction
from paygate.security.history import ConfigHistory, ConfigVersion

HISTORY_TYPE = "routing_rule_set"
MAX_RULES = 200


def rule_set_snapshot(config: RoutingConfig, rules: Sequence[RoutingRule]) -> dict[str, Any]:
    return {
        "default_gateway_ids": list(config.default_gateway_ids),
        "rules": [rule.snapshot() for rule in rules],
    }


class RoutingService:
    def __init__(self, session: AsyncSession, auth: AuthContext) -> None:
        self.session = session
        self.auth = auth
        self.rules = RuleRepository(session, auth.company_id)
        self.routing = RoutingRepository(session, auth.company_id)
        self.history = ConfigHistory(session, auth.company_id, HISTORY_TYPE)

    # --- reading -------------------------------------------------------------------------

    async def current(self) -> tuple[int, list[str], Sequence[RoutingRule]]:
        """The version, the default list and the rules in order."""
        config = await self.routing.config()
        if config is None:
            return 0, [], []
        return config.version, list(config.default_gateway_ids), await self.rules.ordered()

    async def get(self, rule_id: str) -> tuple[RoutingRule, int]:
        """A rule and its position (1 is evaluated first)."""
        rule = await self.rules.get(rule_id)
        ordered = await self.rules.ordered()
        return rule, next(i for i, r in enumerate(ordered, start=1) if r.id == rule.id)

    async def versions(self) -> Sequence[ConfigVersion]:
        return await self.history.versions(self.auth.company_id)

    async def version(self, number: int) -> ConfigVersion:
        return await self.history.get(self.auth.company_id, number)

    async def _gateway_ids(self) -> set[str]:
        return {g.id for g in await GatewayRepository(self.session, self.auth.company_id).listing()}

    # --- changing ------------------------------------------------------------------------

    async def create(self, request: RuleCreate) -> RoutingRule:
        action = request.action.model_dump()
        check_rule(request.conditions, action, await self._gateway_ids())
        config = await self.routing.lock_config()
        ordered = list(await self.rules.ordered())
        if len(ordered) >= MAX_RULES:
            raise validation_failed(
                [FieldError("name", f"a company has at most {MAX_RULES} rules", "too_many")]
            )
        rule = RoutingRule(
            id=new_id("rr"),
            company_id=self.auth.company_id,
            position=0,
            name=request.name,
            enabled=request.enabled,
            conditions=request.conditions.model_dump(),
            action=action,
        )
        index = (
            len(ordered) if request.position is None else min(request.position - 1, len(ordered))
        )
        ordered.insert(index, rule)
        await self.rules.add(rule)
        self._renumber(ordered)
        await self._changed(
            config,
            ordered,
            "routing_rule.created",
            rule.id,
            f'rule "{rule.name}" added',
            before={},
            after=rule.snapshot(),
        )
        return rule

    async def update(self, rule_id: str, request: RuleUpdate) -> RoutingRule:
        config = await self.routing.lock_config()
        rule = await self.rules.get(rule_id, for_update=True)
        before = rule.snapshot()
        conditions = request.conditions or Conditions.model_validate(rule.conditions)
        action = request.action.model_dump() if request.action else rule.action
        check_rule(conditions, action, await self._gateway_ids())
        if request.name is not None:
            rule.name = request.name
        if request.enabled is not None:
            rule.enabled = request.enabled
        rule.conditions = conditions.model_dump()
        rule.action = action
        rule.updated_at = utcnow()
        await self.session.flush()
        if rule.snapshot() != before:
            await self._changed(
                config,
                await self.rules.ordered(),
                "routing_rule.updated",
                rule.id,
                f'rule "{rule.name}" edited',
                before=before,
                after=rule.snapshot(),
            )
        return rule

    async def delete(self, rule_id: str) -> None:
        config = await self.routing.lock_config()
        rule = await self.rules.get(rule_id, for_update=True)
        before = rule.snapshot()
        await self.session.delete(rule)
        await self.session.flush()
        ordered = list(await self.rules.ordered())
        self._renumber(ordered)
        await self._changed(
            config,
            ordered,
            "routing_rule.deleted",
            rule_id,
            f'rule "{before["name"]}" deleted',
            before=before,
            after={},
        )

    async def reorder(self, request: ReorderIn) -> Sequence[RoutingRule]:
        config = await self.routing.lock_config()
        ordered = list(await self.rules.ordered())
        by_id = {rule.id: rule for rule in ordered}
        if sorted(request.rule_ids) != sorted(by_id) or len(set(request.rule_ids)) != len(by_id):
            raise validation_failed(
                [FieldError("rule_ids", "must list every rule exactly once", "not_a_permutation")]
            )
        if request.rule_ids == [rule.id for rule in ordered]:
            return ordered
        before = {"order": [rule.id for rule in ordered]}
        ordered = [by_id[rule_id] for rule_id in request.rule_ids]
        self._renumber(ordered)
        await self._changed(
            config,
            ordered,
            "routing_rules.reordered",
            None,
            "rules reordered",
            before=before,
            after={"order": request.rule_ids},
        )
        return ordered

    async def move(self, rule_id: str, offset: int) -> Sequence[RoutingRule]:
        """Move one rule up (-1) or down (+1): what the page's buttons do."""
        ordered = [rule.id for rule in await self.rules.ordered()]
        await self.rules.get(rule_id)  # another company's rule is not found
        index = ordered.index(rule_id)
        target = max(0, min(len(ordered) - 1, index + offset))
        ordered.insert(target, ordered.pop(index))
        return await self.reorder(ReorderIn(rule_ids=ordered))

    async def set_default(self, request: DefaultListIn) -> list[str]:
        check_default(request.gateway_ids, await self._gateway_ids(), "gateway_ids")
        config = await self.routing.lock_config()
        before = list(config.default_gateway_ids)
        if before != request.gateway_ids:
            config.default_gateway_ids = list(request.gateway_ids)
            await self._changed(
                config,
                await self.rules.ordered(),
                "routing_default.updated",
                None,
                "default list changed",
                before={"default_gateway_ids": before},
                after={"default_gateway_ids": list(request.gateway_ids)},
            )
        return list(config.default_gateway_ids)

    async def restore(self, number: int) -> ConfigVersion:
        """Put the rule set of version `number` back; recorded as a new version."""
        config = await self.routing.lock_config()
        restored = await self.history.get(self.auth.company_id, number)
        current = await self.rules.ordered()
        before = rule_set_snapshot(config, current)
        await self.rules.delete_all()
        rules = [
            RoutingRule(
                id=item["id"],
                company_id=self.auth.company_id,
                position=index,
                name=item["name"],
                enabled=item["enabled"],
                conditions=item["conditions"],
                action=item["action"],
            )
            for index, item in enumerate(restored.snapshot["rules"], start=1)
        ]
        self.session.add_all(rules)
        config.default_gateway_ids = list(restored.snapshot["default_gateway_ids"])
        await self.session.flush()
        return await self._changed(
            config,
            rules,
            "routing_rules.restored",
            None,
            f"restored version {number}",
            before=before,
            after=restored.snapshot,
            restored_from=number,
        )

    def _renumber(self, ordered: Sequence[RoutingRule]) -> None:
        for position, rule in enumerate(ordered, start=1):
            if rule.position != position:
                rule.position = position
                rule.updated_at = utcnow()

    async def _changed(
        self,
        config: RoutingConfig,
        rules: Sequence[RoutingRule],
        action: AuditAction,
        rule_id: str | None,
        summary: str,
        *,
        before: dict[str, Any],
        after: dict[str, Any],
        restored_from: int | None = None,
    ) -> ConfigVersion:
        """Record the new version of the whole rule set and audit the change."""
        await self.session.flush()
        version = await self.history.record(
            self.auth.company_id,
            rule_set_snapshot(config, rules),
            actor=self.auth.actor,
            summary=summary,
            restored_from=restored_from,
        )
        config.version = version.version
        config.updated_at = utcnow()
        await self.session.flush()
        await audit.record_by(
            self.session,
            self.auth,
            action=action,
            object_type="routing_rule" if rule_id else "routing_rule_set",
            object_id=rule_id or self.auth.company_id,
            changes=audit.diff(before, after),
            detail=version.detail(),
        )
        return version

    # --- preview -----------------------------------------------------------------------

    async def simulate(self, request: SimulateIn) -> Simulation:
        """Run a proposed rule set, a stored version, or the current rules over the last
        30 days of payments."""
        gateway_ids = await self._gateway_ids()
        _, default, current = await self.current()
        rules: Sequence[RoutingRule] = current
        if request.version is not None:
            found = await self.version(request.version)
            snapshot = [SnapshotRule.model_validate(r) for r in found.snapshot["rules"]]
            rules = proposed_rows(self.auth.company_id, snapshot)
            default = list(found.snapshot["default_gateway_ids"])
        if request.rules is not None:
            for index, rule in enumerate(request.rules):
                check_rule(
                    rule.conditions, rule.action.model_dump(), gateway_ids, f"rules.{index}."
                )
            rules = proposed_rows(self.auth.company_id, request.rules)
        if request.default_gateway_ids is not None:
            check_default(request.default_gateway_ids, gateway_ids, "default_gateway_ids")
            default = list(request.default_gateway_ids)
        return await simulate(self.session, self.auth.company_id, rules, default)

    async def preview(self, request: PreviewIn) -> tuple[RouteDecision, str]:
        """Where a payment like this would go now, and the sentence that says why."""
        if not is_currency(request.currency):
            raise validation_failed(
                [FieldError("currency", "is not an ISO 4217 currency code", "unsupported_currency")]
            )
        if request.customer_country is not None and not is_country(request.customer_country):
            raise validation_failed(
                [FieldError("customer_country", "is not an ISO 3166 country code", "unknown")]
            )
        payment = RoutingInput(
            amount=request.amount,
            currency=request.currency,
            payment_method_type=request.payment_method_type,
            card_brand=request.card_brand.value if request.card_brand else None,
            customer_country=request.customer_country,
            metadata=dict(request.metadata),
            payment_id=request.payment_id or new_id("pay"),
        )
        decision = await decide(self.session, self.auth.company_id, payment)
        described = [Money(request.amount, request.currency).format(), request.payment_method_type]
        if request.card_brand:
            described.append(request.card_brand.value)
        if request.customer_country:
            described.append(f"from {request.customer_country}")
        sentence = f"A payment of {', '.join(described)}: {decision.explain()}"
        return decision, sentence


def proposed_rows(
    company_id: str, rules: Sequence[ProposedRule | SnapshotRule]
) -> list[RoutingRule]:
    """Rules of a proposed set as unsaved rows (for a simulation)."""
    return [
        RoutingRule(
            id=f"proposed_{index}",
            company_id=company_id,
            position=index,
            name=rule.name,
            enabled=rule.enabled,
            conditions=rule.conditions.model_dump(),
            action=rule.action.model_dump(),
        )
        for index, rule in enumerate(rules, start=1)
    ]
