"""The API keys page: create (the key shown once), rotate with a grace period, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from paygate.accounts.api_keys import ApiKeyService
from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import PERMISSION_DESCRIPTIONS, Permission
from paygate.accounts.repository import ApiKeyRepository
from paygate.accounts.schemas import ApiKeyCreate, ApiKeyRotate
from paygate.kit.clock import utcnow
from paygate.kit.deps import OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.web.forms import FormErrors, parse, text, texts
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render, section_response
from paygate.web.session import User, accounts_of, flash, need

router = APIRouter(route_class=PageRoute)


def _keys(
    request: Request, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> ApiKeyService:
    return ApiKeyService(accounts_of(request, session, settings, origin))


async def _keys_context(session: SessionDep, auth: AuthContext, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "keys": await ApiKeyRepository(session, auth.company_id).active(),
        "scopes": list(Permission),
        "scope_descriptions": PERMISSION_DESCRIPTIONS,
        "errors": FormErrors(),
        "values": {"name": "", "scopes": [], "expires_in_days": ""},
        "created": None,
        "rotate_errors": None,
        "now": utcnow(),
    }
    context.update(extra)
    return context


@router.get("/api-keys")
async def api_keys_page(request: Request, auth: User, session: SessionDep) -> Response:
    await need(request, auth, Permission.API_KEYS_READ)
    return render(request, "api_keys/index.html", await _keys_context(session, auth), auth=auth)


@router.post("/api-keys")
async def create_api_key(
    request: Request, auth: User, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Response:
    await need(request, auth, Permission.API_KEYS_WRITE)
    form = await request.form()
    values = {
        "name": text(form, "name"),
        "scopes": texts(form, "scopes"),
        "expires_in_days": text(form, "expires_in_days").strip(),
    }
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            fields: dict[str, Any] = {"name": values["name"], "scopes": values["scopes"]}
            if values["expires_in_days"]:
                fields["expires_in_days"] = values["expires_in_days"]
            body = parse(ApiKeyCreate, fields)
            api_key, key = await _keys(request, session, settings, origin).create_api_key(
                auth, body
            )
    except Problem as problem:
        errors = FormErrors.from_problem(
            problem,
            ["name", "scopes", "expires_in_days"],
            labels={"name": "Name", "scopes": "Scopes", "expires_in_days": "Expiry"},
        )
        # "scopes.3" (an unknown scope) belongs next to the scope checkboxes.
        for message in list(errors.general):
            if message.lower().startswith("scopes"):
                errors.general.remove(message)
                errors.fields.setdefault("scopes", []).append(message)
        context = await _keys_context(session, auth, errors=errors, values=values)
        return section_response(request, auth, "api_keys", context, status_code=422)
    # The key itself is rendered this once, into a no-store response; only its prefix is kept.
    context = await _keys_context(session, auth, created={"name": api_key.name, "key": key})
    return section_response(
        request,
        auth,
        "api_keys",
        context,
        notice=Notice("success", f"API key {api_key.name} created."),
    )


@router.post("/api-keys/{key_id}/rotate")
async def rotate_api_key(
    request: Request,
    key_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.API_KEYS_WRITE)
    form = await request.form()
    grace = text(form, "grace_period_hours").strip()
    try:
        # A savepoint: a refused rotation leaves nothing behind, even in memory.
        async with session.begin_nested():
            body = parse(ApiKeyRotate, {"grace_period_hours": grace} if grace else {})
            new, key, old = await _keys(request, session, settings, origin).rotate_api_key(
                auth, key_id, body.grace_period_hours
            )
    except Problem as problem:
        if problem.status == 404:
            raise
        message = (
            "Enter a number of hours from 0 to 168 (7 days)."
            if problem.errors
            else problem.detail or problem.title
        )
        context = await _keys_context(
            session, auth, rotate_errors={"key_id": key_id, "message": message, "value": grace}
        )
        return section_response(
            request,
            auth,
            "api_keys",
            context,
            status_code=problem.status,
            notice=Notice("error", message),
        )
    # Like creation: the new key is rendered this once, into a no-store response.
    created = {
        "name": new.name,
        "key": key,
        "previous_prefix": old.prefix,
        "previous_stops_at": old.expires_at,
    }
    context = await _keys_context(session, auth, created=created)
    return section_response(
        request,
        auth,
        "api_keys",
        context,
        notice=Notice("success", f"API key {new.name} rotated."),
    )


@router.post("/api-keys/{key_id}/revoke")
async def revoke_api_key(
    request: Request,
    key_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.API_KEYS_WRITE)
    api_key = await _keys(request, session, settings, origin).revoke_api_key(auth, key_id)
    if not is_htmx(request):
        flash(request, "api_key_revoked")
        return redirect("/api-keys", request)
    context = await _keys_context(session, auth)
    return section_response(
        request,
        auth,
        "api_keys",
        context,
        notice=Notice("success", f"API key {api_key.name} revoked."),
    )
