"""The gateways page: cards, add/edit in a modal, enable/disable, test connection, delete."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import FormData

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.gateways.adapters.base import GatewayType, GatewayTypeSpec
from paygate.gateways.adapters.registry import all_specs, spec_for
from paygate.gateways.credentials import accepted_previous_until
from paygate.gateways.models import Gateway
from paygate.gateways.service import GatewayService
from paygate.kit.clock import utcnow
from paygate.kit.deps import KeyringDep, ResolverDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem, not_found
from paygate.kit.ids import ObjectId
from paygate.web.forms import (
    FormErrors,
    GatewayFormValues,
    gateway_create,
    gateway_known_fields,
    gateway_labels,
    gateway_list_values,
    gateway_update,
    text,
)
from paygate.web.pay_words import default_public_label
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, flash, need
from paygate.webhooks.inbound.registration import WebhookRegistration, WebhookSetup

router = APIRouter(route_class=PageRoute)


async def gateway_service(
    request: Request,
    auth: User,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> GatewayService:
    await need(request, auth, Permission.GATEWAYS_READ)
    return GatewayService(session, keyring, settings, auth, resolver=resolver)


Gateways = Annotated[GatewayService, Depends(gateway_service)]


# How long a replaced secret stays accepted: the choices of the edit form ("" = the setting).
GRACE_CHOICES: list[tuple[str, str]] = [
    ("", "The default (credential_grace_hours, 24 hours unless changed)"),
    ("0", "Not at all: refuse the old one now (after a leak)"),
    ("1", "1 hour"),
    ("24", "24 hours"),
    ("72", "3 days"),
    ("168", "7 days"),
]


# --- view models ----------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    label: str
    masked: str
    changed_at: datetime | None
    # While set, the replaced value is still accepted (webhooks in flight) until then.
    previous_until: datetime | None


@dataclass(frozen=True)
class Setting:
    label: str
    value: str
    is_url: bool


@dataclass(frozen=True)
class GatewayCard:
    """What a card shows: only masks and public settings, never a decrypted secret."""

    gateway: Gateway
    spec: GatewayTypeSpec
    credentials: list[Credential]
    settings: list[Setting]
    # False when the master keys cannot open the secrets: the card asks to re-enter them.
    readable: bool
    default_label: str  # what customers see while the gateway has no public label
    # Its webhook URL and the provider's setup steps; None for types that send none.
    webhook: WebhookSetup | None = None


def card_of(gateway: Gateway, gateways: GatewayService) -> GatewayCard:
    spec = spec_for(GatewayType(gateway.gateway_type))
    hints = gateway.secret_hints or {}
    now = utcnow()
    credentials = [
        Credential(
            f.label,
            hints[f.name]["masked"],
            _changed_at(hints[f.name].get("changed_at", "")),
            accepted_previous_until(gateway, f.name, now),
        )
        for f in spec.fields
        if f.secret and f.name in hints
    ]
    settings = [
        Setting(f.label, gateway.public_config[f.name], f.kind.value == "url")
        for f in spec.fields
        if not f.secret and gateway.public_config.get(f.name)
    ]
    readable = not hints or gateways.credentials_readable(gateway)
    methods = gateway.payment_method_types or spec.payment_method_types
    default_label = default_public_label(gateway.gateway_type, methods[0])
    webhook = WebhookRegistration(gateways).setup_of(gateway)
    return GatewayCard(gateway, spec, credentials, settings, readable, default_label, webhook)


def _changed_at(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _spec(type_name: str) -> GatewayTypeSpec:
    try:
        return spec_for(GatewayType(type_name))
    except ValueError:
        raise not_found("gateway type") from None


async def _list_response(
    request: Request,
    auth: AuthContext,
    gateways: GatewayService,
    notice: Notice | None,
    flash_key: str,
) -> Response:
    if not is_htmx(request):
        flash(request, flash_key)
        return redirect("/gateways", request)
    return render(
        request,
        "gateways/_list.html",
        {"cards": [card_of(g, gateways) for g in await gateways.list_all()]},
        auth=auth,
        notice=notice,
    )


def _card_response(
    request: Request,
    auth: AuthContext,
    gateways: GatewayService,
    gateway: Gateway,
    notice: Notice,
    flash_key: str,
) -> Response:
    if not is_htmx(request):
        flash(request, flash_key)
        return redirect("/gateways", request)
    return render(
        request,
        "gateways/_card.html",
        {"card": card_of(gateway, gateways)},
        auth=auth,
        notice=notice,
    )


def _form_context(
    spec: GatewayTypeSpec,
    values: GatewayFormValues,
    errors: FormErrors,
    gateway: Gateway | None,
    webhook: WebhookSetup | None = None,
) -> dict[str, object]:
    hints = (gateway.secret_hints or {}) if gateway else {}
    stored: dict[str, str] = {name: hint["masked"] for name, hint in hints.items()}
    return {
        "spec": spec,
        "values": values,
        "errors": errors,
        "gateway": gateway,
        "stored": stored,
        "fields": list(spec.fields),
        "action": f"/gateways/{gateway.id}/edit" if gateway else "/gateways",
        "grace_choices": GRACE_CHOICES,
        "webhook": webhook,
        "default_label": default_public_label(spec.type.value, spec.payment_method_types[0]),
    }


# --- pages ------------------------------------------------------------------------------


@router.get("/gateways")
async def gateways_page(request: Request, auth: User, gateways: Gateways) -> Response:
    cards = [card_of(g, gateways) for g in await gateways.list_all()]
    return render(request, "gateways/index.html", {"cards": cards}, auth=auth)


@router.get("/gateways/new")
async def new_gateway(
    request: Request,
    auth: User,
    gateways: Gateways,
    type_: Annotated[str | None, Query(alias="type", max_length=20)] = None,
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    if not type_:
        return render(request, "gateways/new.html", {"specs": all_specs()}, auth=auth)
    spec = _spec(type_)
    context = _form_context(spec, GatewayFormValues.for_new(spec), FormErrors(), None)
    return render(request, "gateways/form.html", context, auth=auth)


@router.post("/gateways")
async def create_gateway(
    request: Request, auth: User, gateways: Gateways, session: SessionDep
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    form = await request.form()
    spec = _spec(text(form, "gateway_type"))
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            gateway = await gateways.create(gateway_create(form, spec))
    except Problem as problem:
        if problem.status != 422:
            raise
        return _refused_form(request, auth, problem, spec, form, None)
    response = await _list_response(
        request,
        auth,
        gateways,
        Notice("success", f"{gateway.name} added."),
        "gateway_created",
    )
    _close_modal(request, response)
    return response


def _refused_form(
    request: Request,
    auth: AuthContext,
    problem: Problem,
    spec: GatewayTypeSpec,
    form: FormData,
    gateway: Gateway | None,
) -> Response:
    """The form again with the field errors inline and what was typed, except secrets."""
    errors = FormErrors.from_problem(
        problem,
        gateway_known_fields(spec),
        labels=gateway_labels(spec),
        values=gateway_list_values(form),
    )
    context = _form_context(spec, GatewayFormValues.from_form(form, spec), errors, gateway)
    return render(request, "gateways/form.html", context, auth=auth, status_code=422)


def _close_modal(request: Request, response: Response) -> None:
    """The form was swapped into the modal: put the new list in the page and close it."""
    if is_htmx(request):
        response.headers["HX-Retarget"] = "#gateway-list"
        response.headers["HX-Reswap"] = "outerHTML"
        response.headers["HX-Trigger-After-Swap"] = json.dumps({"pg:close-modal": True})


@router.get("/gateways/{gateway_id}/edit")
async def edit_gateway(
    request: Request, gateway_id: ObjectId, auth: User, gateways: Gateways
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    gateway = await gateways.get(gateway_id)
    spec = spec_for(GatewayType(gateway.gateway_type))
    webhook = WebhookRegistration(gateways).setup_of(gateway)
    context = _form_context(
        spec, GatewayFormValues.from_gateway(gateway, spec), FormErrors(), gateway, webhook
    )
    return render(request, "gateways/form.html", context, auth=auth)


@router.post("/gateways/{gateway_id}/edit")
async def update_gateway(
    request: Request, gateway_id: ObjectId, auth: User, gateways: Gateways, session: SessionDep
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    form = await request.form()
    gateway = await gateways.get(gateway_id)
    spec = spec_for(GatewayType(gateway.gateway_type))
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            gateway = await gateways.update(gateway_id, gateway_update(form, spec))
    except Problem as problem:
        if problem.status != 422:
            raise
        # The savepoint expired what the service changed in memory: read the row again.
        gateway = await gateways.get(gateway_id)
        return _refused_form(request, auth, problem, spec, form, gateway)
    response = await _list_response(
        request,
        auth,
        gateways,
        Notice("success", f"{gateway.name} saved."),
        "gateway_saved",
    )
    _close_modal(request, response)
    return response


@router.post("/gateways/{gateway_id}/enable")
async def enable_gateway(
    request: Request, gateway_id: ObjectId, auth: User, gateways: Gateways
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    gateway = await gateways.set_enabled(gateway_id, True)
    notice = Notice("success", f"{gateway.name} is enabled.")
    return _card_response(request, auth, gateways, gateway, notice, "gateway_enabled")


@router.post("/gateways/{gateway_id}/disable")
async def disable_gateway(
    request: Request, gateway_id: ObjectId, auth: User, gateways: Gateways
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    gateway = await gateways.set_enabled(gateway_id, False)
    notice = Notice("info", f"{gateway.name} is disabled: no payments will be routed to it.")
    return _card_response(request, auth, gateways, gateway, notice, "gateway_disabled")


@router.post("/gateways/{gateway_id}/test")
async def test_gateway(
    request: Request, gateway_id: ObjectId, auth: User, gateways: Gateways
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    result = await gateways.test_connection(gateway_id)
    gateway = await gateways.get(gateway_id)
    if result.ok:
        notice = Notice("success", f"{gateway.name}: connected in {result.latency_ms} ms.")
    else:
        notice = Notice("error", f"{gateway.name}: connection failed. {result.message}")
    return _card_response(request, auth, gateways, gateway, notice, "gateway_tested")


@router.post("/gateways/{gateway_id}/delete")
async def delete_gateway(
    request: Request, gateway_id: ObjectId, auth: User, gateways: Gateways
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    gateway = await gateways.get(gateway_id)
    name = gateway.name
    outcome = await gateways.delete(gateway_id)
    notice = Notice(
        "success" if outcome == "deleted" else "info",
        f"{name} deleted." if outcome == "deleted" else f"{name} archived: payments refer to it.",
    )
    return await _list_response(request, auth, gateways, notice, f"gateway_{outcome}")
