"""The routing engine alone: conditions, actions, the default list, skipping and explaining."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

import pytest

from paygate.gateways.models import Gateway
from paygate.routing.card_brand import card_brand_of
from paygate.routing.engine import (
    RoutingInput,
    Rule,
    RuleSet,
    SuccessRate,
    compile_rule,
    decide,
)


def gateway(gateway_id: str, **fields: Any) -> Gateway:
    values: dict[str, Any] = {
        "id": gateway_id,
        "name": gateway_id.upper(),
        "enabled": True,
        "supported_currencies": ["USD", "EUR", "JPY"],
        "min_amount": None,
        "max_amount": None,
        "payment_method_types": ["card", "paypal"],
        **fields,
    }
    return Gateway(**values)


GATEWAYS = {g.id: g for g in (gateway("a"), gateway("b"), gateway("c"))}
BY_PRIORITY = ["a", "b", "c"]


def rule(
    conditions: dict[str, Any] | None = None,
    action: dict[str, Any] | None = None,
    *,
    rule_id: str = "r1",
    position: int = 1,
    enabled: bool = True,
) -> Rule:
    return compile_rule(
        rule_id,
        f"rule {rule_id}",
        position,
        enabled,
        conditions or {},
        action or {"type": "priority", "gateway_ids": ["b", "a"]},
    )


def route(
    rules: list[Rule],
    payment: RoutingInput | None = None,
    *,
    default: tuple[str, ...] = (),
    gateways: dict[str, Gateway] | None = None,
    **kwargs: Any,
) -> Any:
    return decide(
        RuleSet(1, tuple(rules), default),
        payment or RoutingInput(amount=1000, currency="USD", payment_id="pay_1"),
        gateways or GATEWAYS,
        by_priority=BY_PRIORITY,
        **kwargs,
    )


def usd(**fields: Any) -> RoutingInput:
    values: dict[str, Any] = {"amount": 1000, "currency": "USD", "payment_id": "pay_x", **fields}
    return RoutingInput(**values)


CONDITION_CASES = [
    ({"currencies": ["EUR"]}, usd(currency="EUR"), usd(currency="USD")),
    ({"amount_min": 500, "amount_max": 2000}, usd(amount=500), usd(amount=2001)),
    ({"amount_min": 500}, usd(amount=10**9), usd(amount=499)),
    ({"payment_method_types": ["paypal"]}, usd(payment_method_type="paypal"), usd()),
    ({"card_brands": ["amex"]}, usd(card_brand="amex"), usd(card_brand="visa")),
    ({"card_brands": ["visa"]}, usd(card_brand="visa"), usd(card_brand=None)),
    ({"customer_countries": ["DE", "FR"]}, usd(customer_country="FR"), usd(customer_country=None)),
    ({"metadata": {"plan": "pro"}}, usd(metadata={"plan": "pro", "x": "1"}), usd(metadata={})),
    ({"metadata": {"plan": "pro"}}, usd(metadata={"plan": "pro"}), usd(metadata={"plan": "Pro"})),
]


@pytest.mark.parametrize(("conditions", "matching", "other"), CONDITION_CASES)
def test_each_condition_matches_only_what_it_names(
    conditions: dict[str, Any], matching: RoutingInput, other: RoutingInput
) -> None:
    rules = [rule(conditions, {"type": "priority", "gateway_ids": ["c"]})]
    hit = route(rules, matching)
    assert hit.source == "rule"
    assert hit.gateway_ids == ["c"]
    assert hit.rule.id == "r1"
    miss = route(rules, other)
    assert miss.rule is None
    assert miss.source == "all_eligible"
    assert miss.gateway_ids == ["a", "b", "c"]


def test_conditions_combine_and_rules_are_tried_in_order() -> None:
    rules = [
        rule(
            {"currencies": ["EUR"], "amount_min": 5000}, {"type": "priority", "gateway_ids": ["c"]}
        ),
        rule(
            {"currencies": ["EUR"]},
            {"type": "priority", "gateway_ids": ["b"]},
            rule_id="r2",
            position=2,
        ),
        rule({}, {"type": "priority", "gateway_ids": ["a"]}, rule_id="r3", position=3),
    ]
    assert route(rules, usd(currency="EUR", amount=6000)).gateway_ids == ["c"]
    second = route(rules, usd(currency="EUR", amount=10))
    assert (second.rule.id, second.gateway_ids) == ("r2", ["b"])
    assert route(rules, usd()).rule.id == "r3"


def test_a_disabled_rule_is_not_evaluated() -> None:
    rules = [rule({}, {"type": "priority", "gateway_ids": ["c"]}, enabled=False)]
    assert route(rules).rule is None


def test_the_default_list_applies_when_no_rule_matches() -> None:
    rules = [rule({"currencies": ["JPY"]})]
    decision = route(rules, default=("c", "a"))
    assert decision.source == "default"
    assert decision.gateway_ids == ["c", "a"]
    assert "no rule matched, so the default list applies" in decision.explain()


def test_without_a_default_list_every_eligible_gateway_goes_by_its_priority() -> None:
    decision = route([], usd(currency="EUR"))
    assert decision.source == "all_eligible"
    assert decision.gateway_ids == BY_PRIORITY


def test_gateways_that_cannot_take_it_are_skipped_with_the_reason() -> None:
    gateways = {
        "a": gateway("a", enabled=False),
        "b": gateway("b", supported_currencies=["EUR"]),
        "c": gateway("c", max_amount=500),
        "d": gateway("d", payment_method_types=["paypal"]),
        "e": gateway("e"),
        "f": gateway("f"),
    }
    rules = [rule({}, {"type": "priority", "gateway_ids": ["a", "b", "c", "d", "gone", "e", "f"]})]
    decision = route(rules, gateways=gateways, down={"e": "circuit open"})
    assert decision.gateway_ids == ["f"]
    reasons = {s.gateway_id: s.reason for s in decision.skipped}
    assert reasons == {
        "a": "disabled",
        "b": "currency",
        "c": "amount",
        "d": "method",
        "gone": "deleted",
        "e": "down",
    }
    text = decision.explain()
    assert text.startswith('Goes to F, because rule 1 ("rule r1") matched.')
    assert "E (down: circuit open)" in text


def test_a_rule_whose_gateways_are_all_skipped_falls_back_to_the_default() -> None:
    rules = [rule({}, {"type": "priority", "gateway_ids": ["a"]})]
    decision = route(rules, default=("b",), down={"a": "monitoring says down"})
    assert decision.gateway_ids == ["b"]
    assert decision.fell_back
    assert decision.rule is not None
    assert decision.source == "default"
    assert "none of its gateways can take it" in decision.explain()


def test_a_split_holds_within_two_points_over_ten_thousand_payments() -> None:
    split = {
        "type": "split",
        "split": [
            {"gateway_id": "a", "percent": 70},
            {"gateway_id": "b", "percent": 20},
            {"gateway_id": "c", "percent": 10},
        ],
    }
    rules = [rule({}, split)]
    firsts: Counter[str] = Counter()
    for _ in range(10_000):
        decision = route(rules, usd(payment_id=f"pay_{secrets.token_hex(8)}"))
        firsts[decision.gateway_ids[0]] += 1
        # The others follow as fallbacks.
        assert sorted(decision.gateway_ids) == ["a", "b", "c"]
    for gateway_id, share in (("a", 70), ("b", 20), ("c", 10)):
        assert abs(firsts[gateway_id] / 100 - share) <= 2, firsts


def test_a_split_draws_the_same_gateway_for_the_same_payment() -> None:
    split = {
        "type": "split",
        "split": [{"gateway_id": "a", "percent": 50}, {"gateway_id": "b", "percent": 50}],
    }
    rules = [rule({}, split)]
    for index in range(50):
        payment = usd(payment_id=f"pay_{index}")
        assert route(rules, payment).gateway_ids == route(rules, payment).gateway_ids


def test_a_split_share_whose_gateway_is_down_goes_to_the_others() -> None:
    split = {
        "type": "split",
        "split": [{"gateway_id": "a", "percent": 90}, {"gateway_id": "b", "percent": 10}],
    }
    decision = route([rule({}, split)], down={"a": "down"})
    assert decision.gateway_ids == ["b"]


def _success_rule(exploration: int) -> Rule:
    return rule(
        {},
        {
            "type": "success_rate",
            "gateway_ids": ["a", "b", "c"],
            "exploration_percent": exploration,
            "min_attempts": 20,
        },
    )


def test_success_rate_routing_prefers_the_better_gateway() -> None:
    rates = {"a": SuccessRate(60, 100), "b": SuccessRate(97, 100), "c": SuccessRate(80, 100)}
    decision = route([_success_rule(0)], rates=rates)
    assert decision.gateway_ids == ["b", "c", "a"]
    assert decision.gateways[0].note == "97% success"


def test_gateways_with_too_few_attempts_come_after_the_rated_ones() -> None:
    rates = {"a": SuccessRate(5, 5), "b": SuccessRate(30, 40)}
    assert route([_success_rule(0)], rates=rates).gateway_ids == ["b", "a", "c"]


def test_the_exploration_share_tries_the_others_first_now_and_then() -> None:
    rates = {"a": SuccessRate(50, 100), "b": SuccessRate(99, 100), "c": SuccessRate(50, 100)}
    firsts: Counter[str] = Counter()
    for _ in range(10_000):
        payment = usd(payment_id=f"pay_{secrets.token_hex(8)}")
        firsts[route([_success_rule(10)], payment, rates=rates).gateway_ids[0]] += 1
    assert abs(firsts["b"] / 100 - 90) <= 2, firsts
    # The explored share goes to the others (a recovered gateway earns its rate back).
    assert firsts["a"] > 300, firsts
    assert firsts["c"] > 300, firsts


def test_rates_may_be_asked_for_the_usable_gateways_only() -> None:
    asked: list[list[str]] = []

    def rates_for(_rule: Rule, usable: Any) -> dict[str, SuccessRate]:
        asked.append(list(usable))
        return {"c": SuccessRate(99, 100), "b": SuccessRate(10, 100)}

    decision = route([_success_rule(0)], rates=rates_for, down={"a": "down"})
    assert asked == [["b", "c"]]
    assert decision.gateway_ids == ["c", "b"]


@pytest.mark.parametrize(
    ("method", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4242 4242 4242 4242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3566002020360505", "jcb"),
        ("36227206271667", "diners"),
        ("6200000000000005", "unionpay"),
        ("pm_card_visa", "visa"),
        ("tok_mastercard", "mastercard"),
        ("pm_card_chargeCustomerFail", None),
        ("pm_1Nabc", None),
        ("cnon:card-nonce-ok", None),
        (None, None),
    ],
)
def test_card_brand_is_known_only_from_test_numbers_and_brand_tokens(
    method: str | None, brand: str | None
) -> None:
    assert card_brand_of(method) == brand
