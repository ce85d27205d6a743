"""The routing pages: rules in order (move up and down, add, edit, delete), the default list,
a preview, a 30-day simulation, the versions with restore, and the retry policy.

They call the same services as /api/v1/routing-rules and /api/v1/retry-policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.gateways.adapters.registry import all_specs
from paygate.gateways.repository import GatewayRepository
from paygate.kit.deps import SessionDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.kit.money import is_currency
from paygate.routing.models import RoutingRule
from paygate.routing.policy import RetryPolicyService
from paygate.routing.repository import RoutingRepository
from paygate.routing.schemas import CardBrand, DefaultListIn, PreviewIn, RuleUpdate, SimulateIn
from paygate.routing.service import RoutingService
from paygate.routing.status_map import SOFT_DECLINE_CODES, TECHNICAL_FAILURES
from paygate.security.history_schemas import VersionNumber
from paygate.web.forms import FormErrors, parse, text
from paygate.web.pay_forms import parse_amount
from paygate.web.render import Notice, PageRoute, redirect, render
from paygate.web.routing_forms import (
    PolicyFormValues,
    RuleFormValues,
    chosen_slots,
    pairs,
    policy_errors,
    rule_errors,
)
from paygate.web.routing_views import describe_action, describe_conditions, names_of
from paygate.web.session import User, flash, need

router = APIRouter(route_class=PageRoute)
MAX_SLOTS = 20


async def routing_service(request: Request, auth: User, session: SessionDep) -> RoutingService:
    await need(request, auth, Permission.GATEWAYS_READ)
    return RoutingService(session, auth)


Routing = Annotated[RoutingService, Depends(routing_service)]


# --- view models -------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleView:
    rule: RoutingRule
    position: int
    conditions: list[str]
    action: str


async def _context(service: RoutingService, session: SessionDep) -> dict[str, Any]:
    gateways = list(await GatewayRepository(session, service.auth.company_id).listing())
    names = names_of(gateways)
    version, default, rules = await service.current()
    return {
        "version": version,
        "rules": [
            RuleView(
                rule,
                index,
                describe_conditions(rule.conditions),
                describe_action(rule.action, names),
            )
            for index, rule in enumerate(rules, start=1)
        ],
        "default_ids": default,
        "default_names": [names.get(g, f"{g} (deleted)") for g in default],
        "gateways": gateways,
        "slots": max(2, min(MAX_SLOTS, len(gateways))),
        "versions": await service.versions(),
        "brands": [b.value for b in CardBrand],
        "methods": _methods(),
        "can_write": service.auth.can(Permission.GATEWAYS_WRITE),
        "preview": None,
        "preview_errors": FormErrors(),
        "preview_values": {
            "amount": "",
            "currency": "USD",
            "method": "card",
            "card_brand": "",
            "country": "",
            "metadata": "",
        },
        "simulation": None,
    }


def _methods() -> list[str]:
    return list(dict.fromkeys(m for spec in all_specs() for m in spec.payment_method_types))


# --- the rules page -------------------------------------------------------------------------


@router.get("/routing")
async def routing_page(
    request: Request, auth: User, service: Routing, session: SessionDep
) -> Response:
    return render(request, "routing/index.html", await _context(service, session), auth=auth)


async def _rule_form(
    request: Request,
    auth: AuthContext,
    session: SessionDep,
    values: RuleFormValues,
    errors: FormErrors,
    rule: RoutingRule | None,
    status_code: int = 200,
) -> Response:
    gateways = list(await GatewayRepository(session, auth.company_id).listing())
    slots = max(2, min(MAX_SLOTS, max(len(gateways), len(values.gateways))))
    values.gateways += [""] * (slots - len(values.gateways))
    values.percents += [""] * (slots - len(values.percents))
    context = {
        "values": values,
        "errors": errors,
        "rule": rule,
        "gateways": gateways,
        "slots": slots,
        "brands": [b.value for b in CardBrand],
        "methods": _methods(),
        "action": f"/routing/rules/{rule.id}/edit" if rule else "/routing/rules",
    }
    return render(request, "routing/rule_form.html", context, auth=auth, status_code=status_code)


@router.get("/routing/rules/new")
async def new_rule_page(
    request: Request, auth: User, service: Routing, session: SessionDep
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    return await _rule_form(request, auth, session, RuleFormValues(), FormErrors(), None)


@router.post("/routing/rules")
async def create_rule(
    request: Request, auth: User, service: Routing, session: SessionDep
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    values = RuleFormValues.from_form(await request.form())
    try:
        await service.create(values.parse())
    except Problem as problem:
        if problem.status != 422:
            raise
        return await _rule_form(
            request, auth, session, values, rule_errors(problem), None, status_code=422
        )
    flash(request, "routing_rule_saved")
    return redirect("/routing", request)


@router.get("/routing/rules/{rule_id}/edit")
async def edit_rule_page(
    request: Request, rule_id: ObjectId, auth: User, service: Routing, session: SessionDep
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    rule, _ = await service.get(rule_id)
    values = RuleFormValues.from_rule(rule)
    return await _rule_form(request, auth, session, values, FormErrors(), rule)


@router.post("/routing/rules/{rule_id}/edit")
async def edit_rule(
    request: Request, rule_id: ObjectId, auth: User, service: Routing, session: SessionDep
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    rule, _ = await service.get(rule_id)
    values = RuleFormValues.from_form(await request.form())
    try:
        body = values.parse()
        update = RuleUpdate(
            name=body.name, enabled=body.enabled, conditions=body.conditions, action=body.action
        )
        await service.update(rule_id, update)
    except Problem as problem:
        if problem.status != 422:
            raise
        return await _rule_form(
            request, auth, session, values, rule_errors(problem), rule, status_code=422
        )
    flash(request, "routing_rule_saved")
    return redirect("/routing", request)


@router.post("/routing/rules/{rule_id}/move")
async def move_rule(request: Request, rule_id: ObjectId, auth: User, service: Routing) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    direction = text(await request.form(), "direction")
    if direction not in ("up", "down"):
        raise Problem(400, "bad-request", "Bad request", "Move a rule up or down.")
    await service.move(rule_id, -1 if direction == "up" else 1)
    flash(request, "routing_rule_moved")
    return redirect(f"/routing#rule-{rule_id}", request)


@router.post("/routing/rules/{rule_id}/delete")
async def delete_rule(
    request: Request, rule_id: ObjectId, auth: User, service: Routing
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    await service.delete(rule_id)
    flash(request, "routing_rule_deleted")
    return redirect("/routing", request)


@router.post("/routing/default")
async def set_default(request: Request, auth: User, service: Routing) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    chosen = chosen_slots(await request.form(), "default")
    await service.set_default(parse(DefaultListIn, {"gateway_ids": chosen}))
    flash(request, "routing_default_saved")
    return redirect("/routing#default", request)


@router.post("/routing/versions/{version}/restore")
async def restore_version(
    request: Request, version: VersionNumber, auth: User, service: Routing
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    await service.restore(version)
    flash(request, "routing_restored")
    return redirect("/routing", request)


# --- preview and simulation (htmx fragments; whole pages without JavaScript) -------------


@router.post("/routing/preview")
async def preview(request: Request, auth: User, service: Routing, session: SessionDep) -> Response:
    form = await request.form()
    values = {
        "amount": text(form, "amount"),
        "currency": text(form, "currency").strip().upper(),
        "method": text(form, "method") or "card",
        "card_brand": text(form, "card_brand"),
        "country": text(form, "country"),
        "metadata": text(form, "metadata"),
    }
    errors = FormErrors()
    result = None
    try:
        currency = values["currency"]
        if not is_currency(currency):
            raise Problem(
                422,
                "validation-error",
                "Validation failed",
                f"{currency or 'The currency'} is not an ISO 4217 currency code.",
            )
        amount = parse_amount(values["amount"], currency)
        body = parse(
            PreviewIn,
            {
                "amount": amount,
                "currency": currency,
                "payment_method_type": values["method"],
                "card_brand": values["card_brand"] or None,
                "customer_country": values["country"] or None,
                "metadata": pairs(values["metadata"]),
            },
        )
        decision, sentence = await service.preview(body)
        result = {"decision": decision, "sentence": sentence}
    except Problem as problem:
        if problem.status != 422:
            raise
        errors = FormErrors(general=[_sentence(e.message) for e in problem.errors])
        if not problem.errors:
            errors.general.append(problem.detail or problem.title)
    context = {"preview": result, "preview_errors": errors, "preview_values": values}
    if request.headers.get("hx-request") == "true":
        return render(request, "routing/_preview.html", context, auth=auth)
    full = {**await _context(service, session), **context}
    return render(request, "routing/index.html", full, auth=auth)


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else message + "."


@router.post("/routing/simulate")
async def simulate(request: Request, auth: User, service: Routing, session: SessionDep) -> Response:
    raw = text(await request.form(), "version")
    version = int(raw) if raw.isdigit() and 0 < int(raw) < 2**31 else None
    result = await service.simulate(SimulateIn(version=version))
    context = {"simulation": result, "simulated_version": version}
    if request.headers.get("hx-request") == "true":
        return render(request, "routing/_simulation.html", context, auth=auth)
    full = {**await _context(service, session), **context}
    return render(request, "routing/index.html", full, auth=auth)


# --- the retry policy --------------------------------------------------------------------


async def _policy_page(
    request: Request,
    auth: AuthContext,
    session: SessionDep,
    values: PolicyFormValues,
    errors: FormErrors,
    status_code: int = 200,
    notice: Notice | None = None,
) -> Response:
    gateways = list(await GatewayRepository(session, auth.company_id).listing())
    breakers = {
        b.gateway_id: b for b in await RoutingRepository(session, auth.company_id).breakers()
    }
    context = {
        "values": values,
        "errors": errors,
        "soft_codes": SOFT_DECLINE_CODES,
        "technical": TECHNICAL_FAILURES,
        "breakers": [(g, breakers.get(g.id)) for g in gateways],
        "can_write": auth.can(Permission.GATEWAYS_WRITE),
    }
    return render(
        request, "routing/retries.html", context, auth=auth, status_code=status_code, notice=notice
    )


@router.get("/routing/retries")
async def retries_page(request: Request, auth: User, session: SessionDep) -> Response:
    await need(request, auth, Permission.GATEWAYS_READ)
    policy = await RetryPolicyService(session, auth).get()
    return await _policy_page(
        request, auth, session, PolicyFormValues.from_policy(policy), FormErrors()
    )


@router.post("/routing/retries")
async def save_retries(request: Request, auth: User, session: SessionDep) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    values = PolicyFormValues.from_form(await request.form())
    try:
        await RetryPolicyService(session, auth).update(values.parse())
    except Problem as problem:
        if problem.status != 422:
            raise
        return await _policy_page(
            request, auth, session, values, policy_errors(problem), status_code=422
        )
    flash(request, "retry_policy_saved")
    return redirect("/routing/retries", request)
