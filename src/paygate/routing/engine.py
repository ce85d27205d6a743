"""The routing decision itself: pure, no I/O, fast (the payment path calls it per payment).

Modelled on Hyperswitch's static routing: ordered rules whose output is a priority list or a
volume split, a default ("fallback") list when no rule matches, and an eligibility filter
after the choice, so a gateway that cannot take the payment is skipped with its reason.
Success-rate routing orders a rule's gateways by their recent success rate with a small
exploration share, as Hyperswitch's dynamic (success-based) routing does.

`routing.service.decide` loads the inputs (rules, gateways, breakers, success rates) and
calls `decide` here; preview and simulation call it too, so all three agree by design.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from paygate.gateways.eligibility import unfit
from paygate.gateways.models import Gateway

Source = Literal["rule", "default", "all_eligible"]
BUCKETS = 10_000  # a split's resolution: 0.01 %


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """What routing knows about a payment."""

    amount: int
    currency: str
    payment_method_type: str = "card"
    card_brand: str | None = None
    customer_country: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # A split and the exploration share draw by this, so a retry draws the same again.
    payment_id: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule as the engine evaluates it (compiled from its stored JSON by `compile_rule`)."""

    id: str
    name: str
    position: int
    enabled: bool
    kind: Literal["priority", "split", "success_rate"]
    gateway_ids: tuple[str, ...]
    weights: tuple[int, ...] = ()  # split: percent per gateway_ids entry
    exploration_percent: int = 0
    window_minutes: int = 60
    min_attempts: int = 20
    currencies: frozenset[str] = frozenset()
    amount_min: int | None = None
    amount_max: int | None = None
    methods: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    metadata: tuple[tuple[str, str], ...] = ()

    def matches(self, payment: RoutingInput) -> bool:
        if self.currencies and payment.currency not in self.currencies:
            return False
        if self.amount_min is not None and payment.amount < self.amount_min:
            return False
        if self.amount_max is not None and payment.amount > self.amount_max:
            return False
        if self.methods and payment.payment_method_type not in self.methods:
            return False
        # An unknown brand or country never matches a rule that asks for one.
        if self.brands and payment.card_brand not in self.brands:
            return False
        if self.countries and payment.customer_country not in self.countries:
            return False
        return all(payment.metadata.get(key) == value for key, value in self.metadata)


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int
    rules: tuple[Rule, ...]
    default_gateway_ids: tuple[str, ...] = ()


def compile_rule(
    rule_id: str,
    name: str,
    position: int,
    enabled: bool,
    conditions: Mapping[str, Any],
    action: Mapping[str, Any],
) -> Rule:
    """A stored rule (the JSON of routing/schemas.py's Conditions and Action) for the engine."""
    kind = action["type"]
    if kind == "split":
        shares = action["split"]
        ids = tuple(share["gateway_id"] for share in shares)
        weights = tuple(int(share["percent"]) for share in shares)
    else:
        ids, weights = tuple(action["gateway_ids"]), ()
    return Rule(
        id=rule_id,
        name=name,
        position=position,
        enabled=enabled,
        kind=kind,
        gateway_ids=ids,
        weights=weights,
        exploration_percent=int(action.get("exploration_percent", 0)),
        window_minutes=int(action.get("window_minutes", 60)),
        min_attempts=int(action.get("min_attempts", 20)),
        currencies=frozenset(conditions.get("currencies") or ()),
        amount_min=conditions.get("amount_min"),
        amount_max=conditions.get("amount_max"),
        methods=frozenset(conditions.get("payment_method_types") or ()),
        brands=frozenset(conditions.get("card_brands") or ()),
        countries=frozenset(conditions.get("customer_countries") or ()),
        metadata=tuple(sorted((conditions.get("metadata") or {}).items())),
    )


@dataclass(frozen=True, slots=True)
class SuccessRate:
    """A gateway's finished attempts in the rule's window."""

    succeeded: int
    finished: int

    def rate(self, min_attempts: int) -> float | None:
        """None while there are too few attempts to say."""
        if self.finished < min_attempts or self.finished == 0:
            return None
        return self.succeeded / self.finished


@dataclass(frozen=True, slots=True)
class Routed:
    gateway_id: str
    name: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    gateway_id: str
    name: str
    reason: str  # disabled, deleted, currency, amount, method, down
    detail: str


@dataclass(frozen=True, slots=True)
class MatchedRule:
    id: str
    name: str
    position: int


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Which gateways, in what order, and why: what routing answers for one payment."""

    gateways: tuple[Routed, ...]
    skipped: tuple[Skipped, ...]
    rule: MatchedRule | None
    source: Source
    # The matched rule's gateways were all skipped, so the default applied instead.
    fell_back: bool = False

    @property
    def gateway_ids(self) -> list[str]:
        return [g.gateway_id for g in self.gateways]

    def explain(self) -> str:
        """In plain words: "Goes to X, then Y, because rule 2 ("EUR") matched. Skipped: Z
        (down: ...)."."""
        if self.gateways:
            names = [g.name + (f" ({g.note})" if g.note else "") for g in self.gateways]
            route = "Goes to " + ", then ".join(names)
        else:
            route = "No gateway can take it"
        why = {
            "rule": "",
            "default": "the default list applies",
            "all_eligible": "every eligible gateway by its priority (no default list is set)",
        }[self.source]
        if self.rule is not None:
            matched = f'rule {self.rule.position} ("{self.rule.name}") matched'
            why = (
                f"{matched}, but none of its gateways can take it, so {why}"
                if self.fell_back
                else matched
            )
        elif self.source != "rule":
            why = f"no rule matched, so {why}"
        text = f"{route}, because {why}."
        if self.skipped:
            text += " Skipped: " + "; ".join(
                f"{s.name} ({s.reason}: {s.detail})" for s in self.skipped
            )
            text += "."
        return text


def draw(payment_id: str, salt: str, buckets: int) -> int:
    """A number in [0, buckets) fixed by the payment's id: the same payment draws the same."""
    digest = hashlib.blake2b(f"{salt}:{payment_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def _split_order(ids: Sequence[str], weights: Sequence[int], payment_id: str) -> list[str]:
    """The drawn gateway first (weighted), the others after it in their listed order."""
    total = sum(weights)
    if total <= 0:
        return list(ids)
    point = draw(payment_id, "split", BUCKETS) * total / BUCKETS
    running = 0
    chosen = len(ids) - 1
    for index, weight in enumerate(weights):
        running += weight
        if point < running:
            chosen = index
            break
    return [ids[chosen], *ids[:chosen], *ids[chosen + 1 :]]


def _success_rate_order(
    rule: Rule, ids: Sequence[str], rates: Mapping[str, SuccessRate], payment_id: str
) -> tuple[list[str], dict[str, str]]:
    """Best known success rate first (ties and unknowns in listed order); with
    `exploration_percent` chance, another gateway goes first."""
    notes: dict[str, str] = {}
    known: list[tuple[float, int, str]] = []
    unknown: list[str] = []
    for index, gateway_id in enumerate(ids):
        rate = rates.get(gateway_id, SuccessRate(0, 0)).rate(rule.min_attempts)
        if rate is None:
            unknown.append(gateway_id)
            notes[gateway_id] = "too few recent attempts to rate"
        else:
            known.append((-rate, index, gateway_id))
            notes[gateway_id] = f"{rate:.0%} success"
    ordered = [gateway_id for _, _, gateway_id in sorted(known)] + unknown
    if len(ordered) > 1 and draw(payment_id, "explore", 100) < rule.exploration_percent:
        others = ordered[1:]
        explored = others[draw(payment_id, "explore-pick", len(others))]
        ordered.remove(explored)
        ordered.insert(0, explored)
        notes[explored] += ", exploring"
    return ordered, notes


@dataclass(frozen=True, slots=True)
class _Filtered:
    usable: list[str]
    skipped: list[Skipped]


def _filter(
    ids: Sequence[str],
    payment: RoutingInput,
    gateways: Mapping[str, Gateway],
    down: Mapping[str, str],
) -> _Filtered:
    usable: list[str] = []
    skipped: list[Skipped] = []
    for gateway_id in dict.fromkeys(ids):  # each once, first place kept
        gateway = gateways.get(gateway_id)
        if gateway is None:
            skipped.append(Skipped(gateway_id, gateway_id, "deleted", "no such gateway any more"))
            continue
        problem = unfit(gateway, payment.currency, payment.amount, payment.payment_method_type)
        if problem is not None:
            skipped.append(Skipped(gateway_id, gateway.name, problem[0].value, problem[1]))
        elif gateway_id in down:
            skipped.append(Skipped(gateway_id, gateway.name, "down", down[gateway_id]))
        else:
            usable.append(gateway_id)
    return _Filtered(usable, skipped)


def matching_rule(rule_set: RuleSet, payment: RoutingInput) -> Rule | None:
    return next((r for r in rule_set.rules if r.enabled and r.matches(payment)), None)


RatesFor = Callable[[Rule, Sequence[str]], Mapping[str, SuccessRate]]


def decide(
    rule_set: RuleSet,
    payment: RoutingInput,
    gateways: Mapping[str, Gateway],
    *,
    by_priority: Sequence[str],
    down: Mapping[str, str] | None = None,
    rates: Mapping[str, SuccessRate] | RatesFor | None = None,
) -> RouteDecision:
    """Route one payment.

    `gateways`: the company's gateways by id (archived ones left out); `by_priority`: their
    ids by their own priority (what applies when nothing is configured); `down`: gateways
    that are down (circuit open, monitoring) with why; `rates`: success rates for
    success-rate rules, or a function giving them for a rule's usable gateways.
    """
    down = down or {}
    rule = matching_rule(rule_set, payment)
    notes: dict[str, str] = {}
    skipped: list[Skipped] = []
    fell_back = False
    if rule is not None:
        filtered = _filter(rule.gateway_ids, payment, gateways, down)
        skipped.extend(filtered.skipped)
        ordered = filtered.usable
        if rule.kind == "split":
            weight_of = dict(zip(rule.gateway_ids, rule.weights, strict=True))
            ordered = _split_order(ordered, [weight_of[g] for g in ordered], payment.payment_id)
            notes = {g: f"{weight_of[g]}% share" for g in ordered}
        elif rule.kind == "success_rate" and ordered:
            found = rates(rule, ordered) if callable(rates) else (rates or {})
            ordered, notes = _success_rate_order(rule, ordered, found, payment.payment_id)
        if ordered:
            return RouteDecision(
                tuple(Routed(g, gateways[g].name, notes.get(g)) for g in ordered),
                tuple(skipped),
                MatchedRule(rule.id, rule.name, rule.position),
                "rule",
            )
        fell_back = True
    source: Source = "default" if rule_set.default_gateway_ids else "all_eligible"
    candidates = rule_set.default_gateway_ids or tuple(by_priority)
    filtered = _filter(candidates, payment, gateways, down)
    already = {s.gateway_id for s in skipped}
    skipped.extend(s for s in filtered.skipped if s.gateway_id not in already)
    return RouteDecision(
        tuple(Routed(g, gateways[g].name) for g in filtered.usable),
        tuple(skipped),
        MatchedRule(rule.id, rule.name, rule.position) if rule is not None else None,
        source,
        fell_back,
    )
