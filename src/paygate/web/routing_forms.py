"""The routing pages' form fields to the routing API's shapes, and their errors back.

No rule lives here: routing/schemas.py and routing/service.py decide what is valid, exactly
as for the JSON API; this module only translates between HTML form fields and those shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from paygate.kit.errors import FieldError, Problem
from paygate.routing.models import RoutingRule
from paygate.routing.policy import Policy
from paygate.routing.schemas import RetryPolicyIn, RuleCreate
from paygate.web.forms import FormErrors, parse, split_list, text, texts

RULE_FIELDS = (
    "name",
    "currencies",
    "amount_min",
    "amount_max",
    "payment_method_types",
    "card_brands",
    "customer_countries",
    "metadata",
    "action_type",
    "gateways",
    "exploration_percent",
    "min_attempts",
    "window_minutes",
)
RULE_LABELS = {
    "name": "Name",
    "currencies": "Currencies",
    "amount_min": "Minimum amount",
    "amount_max": "Maximum amount",
    "customer_countries": "Countries",
    "metadata": "Invoice metadata",
    "gateways": "Gateways",
    "exploration_percent": "Exploration share",
    "min_attempts": "Minimum attempts",
    "window_minutes": "Window",
}


def number(raw: str) -> int | str | None:
    """Empty is "not set"; digits are a number; anything else goes on for the schema to refuse."""
    raw = raw.strip().replace(",", "").replace("_", "")
    if not raw:
        return None
    return int(raw) if re.fullmatch(r"-?\d{1,18}", raw) else raw


def pairs(raw: str) -> dict[str, str] | str:
    """ "plan=pro" lines to {"plan": "pro"}; a line without "=" is sent on as it is (refused)."""
    found: dict[str, str] = {}
    for line in raw.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            return line
        found[key.strip()] = value.strip()
    return found


def chosen_slots(form: FormData, prefix: str) -> list[str]:
    """The gateways chosen in numbered selects (`gateway_0`, `gateway_1`, ...), in order."""
    chosen = []
    for index in range(64):
        value = text(form, f"{prefix}_{index}")
        if f"{prefix}_{index}" not in form:
            break
        if value:
            chosen.append(value)
    return chosen


@dataclass
class RuleFormValues:
    """What the rule form shows: typed values when re-rendered, stored ones when editing."""

    name: str = ""
    enabled: bool = True
    currencies: str = ""
    amount_min: str = ""
    amount_max: str = ""
    payment_method_types: list[str] = field(default_factory=list)
    card_brands: list[str] = field(default_factory=list)
    customer_countries: str = ""
    metadata: str = ""
    action_type: str = "priority"
    gateways: list[str] = field(default_factory=list)
    percents: list[str] = field(default_factory=list)
    exploration_percent: str = "10"
    min_attempts: str = "20"
    window_minutes: str = "60"

    @classmethod
    def from_form(cls, form: FormData) -> RuleFormValues:
        gateways, percents = [], []
        for index in range(64):
            if f"gateway_{index}" not in form:
                break
            gateways.append(text(form, f"gateway_{index}"))
            percents.append(text(form, f"percent_{index}"))
        return cls(
            name=text(form, "name"),
            enabled=text(form, "enabled") == "on",
            currencies=text(form, "currencies"),
            amount_min=text(form, "amount_min"),
            amount_max=text(form, "amount_max"),
            payment_method_types=texts(form, "payment_method_types"),
            card_brands=texts(form, "card_brands"),
            customer_countries=text(form, "customer_countries"),
            metadata=text(form, "metadata"),
            action_type=text(form, "action_type") or "priority",
            gateways=gateways,
            percents=percents,
            exploration_percent=text(form, "exploration_percent"),
            min_attempts=text(form, "min_attempts"),
            window_minutes=text(form, "window_minutes"),
        )

    @classmethod
    def from_rule(cls, rule: RoutingRule) -> RuleFormValues:
        conditions, action = rule.conditions, rule.action
        values = cls(
            name=rule.name,
            enabled=rule.enabled,
            currencies=", ".join(conditions.get("currencies") or []),
            amount_min=_text(conditions.get("amount_min")),
            amount_max=_text(conditions.get("amount_max")),
            payment_method_types=list(conditions.get("payment_method_types") or []),
            card_brands=list(conditions.get("card_brands") or []),
            customer_countries=", ".join(conditions.get("customer_countries") or []),
            metadata="\n".join(f"{k}={v}" for k, v in (conditions.get("metadata") or {}).items()),
            action_type=action["type"],
        )
        if action["type"] == "split":
            values.gateways = [s["gateway_id"] for s in action["split"]]
            values.percents = [str(s["percent"]) for s in action["split"]]
        else:
            values.gateways = list(action["gateway_ids"])
        for name in ("exploration_percent", "min_attempts", "window_minutes"):
            if name in action:
                setattr(values, name, str(action[name]))
        return values

    def rule_body(self) -> dict[str, Any]:
        conditions: dict[str, Any] = {
            "currencies": split_list(self.currencies),
            "amount_min": number(self.amount_min),
            "amount_max": number(self.amount_max),
            "payment_method_types": self.payment_method_types,
            "card_brands": self.card_brands,
            "customer_countries": split_list(self.customer_countries),
            "metadata": pairs(self.metadata),
        }
        percents = self.percents + [""] * (len(self.gateways) - len(self.percents))
        chosen = [(g, p) for g, p in zip(self.gateways, percents, strict=True) if g]
        action: dict[str, Any] = {"type": self.action_type}
        if self.action_type == "split":
            action["split"] = [{"gateway_id": g, "percent": number(p)} for g, p in chosen]
        else:
            action["gateway_ids"] = [g for g, _ in chosen]
        if self.action_type == "success_rate":
            for name in ("exploration_percent", "min_attempts", "window_minutes"):
                value = number(getattr(self, name))
                if value is not None:
                    action[name] = value
        return {
            "name": self.name,
            "enabled": self.enabled,
            "conditions": conditions,
            "action": action,
        }

    def parse(self) -> RuleCreate:
        return parse(RuleCreate, self.rule_body())


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _form_name(path: str) -> str:
    """An API field path ("conditions.currencies.0", "action.split.1.percent") to the form
    field it came from."""
    parts = path.split(".")
    if parts[0] == "conditions" and len(parts) > 1:
        return parts[1]
    if parts[0] == "action":
        rest = parts[1:]
        named = [p for p in rest if p in ("exploration_percent", "min_attempts", "window_minutes")]
        if named:
            return named[0]
        if rest and rest[0] in ("priority", "split", "success_rate") and len(rest) > 1:
            rest = rest[1:]
        return "gateways" if rest and rest[0] in ("gateway_ids", "split") else "action_type"
    return parts[0]


def rule_errors(problem: Problem) -> FormErrors:
    """The service's refusal, each error next to its form field."""
    renamed = Problem(
        problem.status,
        problem.slug,
        problem.title,
        problem.detail,
        errors=[FieldError(_form_name(e.field), e.message, e.code) for e in problem.errors],
    )
    return FormErrors.from_problem(renamed, RULE_FIELDS, labels=RULE_LABELS)


POLICY_FIELDS = (
    "max_attempts",
    "retry_decline_codes",
    "failover_customer_present",
    "failover_api",
    "breaker_failures",
    "breaker_cooldown_seconds",
)


@dataclass
class PolicyFormValues:
    max_attempts: str = "3"
    retry_decline_codes: list[str] = field(default_factory=list)
    failover_customer_present: bool = True
    failover_api: bool = True
    breaker_failures: str = "5"
    breaker_cooldown_seconds: str = "60"

    @classmethod
    def from_form(cls, form: FormData) -> PolicyFormValues:
        return cls(
            max_attempts=text(form, "max_attempts"),
            retry_decline_codes=texts(form, "retry_decline_codes"),
            failover_customer_present=text(form, "failover_customer_present") == "on",
            failover_api=text(form, "failover_api") == "on",
            breaker_failures=text(form, "breaker_failures"),
            breaker_cooldown_seconds=text(form, "breaker_cooldown_seconds"),
        )

    @classmethod
    def from_policy(cls, policy: Policy) -> PolicyFormValues:
        return cls(
            max_attempts=str(policy.max_attempts),
            retry_decline_codes=list(policy.retry_decline_codes),
            failover_customer_present=policy.failover_customer_present,
            failover_api=policy.failover_api,
            breaker_failures=str(policy.breaker_failures),
            breaker_cooldown_seconds=str(policy.breaker_cooldown_seconds),
        )

    def parse(self) -> RetryPolicyIn:
        return parse(
            RetryPolicyIn,
            {
                "max_attempts": number(self.max_attempts),
                "retry_decline_codes": self.retry_decline_codes,
                "failover_customer_present": self.failover_customer_present,
                "failover_api": self.failover_api,
                "breaker_failures": number(self.breaker_failures),
                "breaker_cooldown_seconds": number(self.breaker_cooldown_seconds),
            },
        )


def policy_errors(problem: Problem) -> FormErrors:
    renamed = Problem(
        problem.status,
        problem.slug,
        problem.title,
        problem.detail,
        errors=[FieldError(e.field.split(".")[0], e.message, e.code) for e in problem.errors],
    )
    return FormErrors.from_problem(
        renamed,
        POLICY_FIELDS,
        labels={
            "max_attempts": "Attempts",
            "retry_decline_codes": "Declines tried again",
            "breaker_failures": "Failures",
            "breaker_cooldown_seconds": "Cool-down",
        },
    )


__all__ = [
    "PolicyFormValues",
    "RuleFormValues",
    "chosen_slots",
    "pairs",
    "policy_errors",
    "rule_errors",
]
