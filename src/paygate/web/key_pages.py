"""The encryption keys page: which master key wraps the company's credentials, and the
re-wrap job an owner starts, with its progress polled by htmx."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from paygate.accounts.permissions import Permission
from paygate.kit.deps import KeyringDep, SessionDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.security.key_rotation import KeyRotationService
from paygate.security.models import KeyRotation
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, flash, need

router = APIRouter(route_class=PageRoute)


async def rotation_service(
    request: Request, auth: User, session: SessionDep, keyring: KeyringDep
) -> KeyRotationService:
    await need(request, auth, Permission.GATEWAYS_READ)
    return KeyRotationService(session, keyring, auth)


Rotations = Annotated[KeyRotationService, Depends(rotation_service)]


def _percent(rotation: KeyRotation) -> int:
    if rotation.total <= 0:
        return 100
    return min(100, round(100 * (rotation.done + rotation.failed) / rotation.total))


@router.get("/security/keys")
async def keys_page(request: Request, auth: User, rotations: Rotations) -> Response:
    overview = await rotations.overview()
    rotation = await rotations.latest()
    context = {
        "overview": overview,
        "rotation": rotation,
        "percent": _percent(rotation) if rotation else 0,
    }
    return render(request, "security/keys.html", context, auth=auth)


@router.post("/security/keys/rotations")
async def start_rotation(request: Request, auth: User, rotations: Rotations) -> Response:
    await need(request, auth, Permission.KEYS_ROTATE)
    try:
        rotation = await rotations.start()
    except Problem as problem:
        if problem.status != 409:
            raise
        notice = Notice("error", problem.detail or "A re-wrap is already running.")
        latest = await rotations.latest()
        return _rotation_fragment(request, auth, latest, notice, "key_rotation_busy")
    notice = Notice("success", "Re-wrap started: it runs in the background.")
    return _rotation_fragment(request, auth, rotation, notice, "key_rotation_started")


@router.get("/security/keys/rotations/{rotation_id}")
async def rotation_progress(
    request: Request, rotation_id: ObjectId, auth: User, rotations: Rotations
) -> Response:
    rotation = await rotations.get(rotation_id)
    if not is_htmx(request):
        return redirect("/security/keys", request)
    return _rotation_fragment(request, auth, rotation, None, "")


def _rotation_fragment(
    request: Request,
    auth: User,
    rotation: KeyRotation | None,
    notice: Notice | None,
    flash_key: str,
) -> Response:
    if not is_htmx(request):
        flash(request, flash_key)
        return redirect("/security/keys", request)
    context = {"rotation": rotation, "percent": _percent(rotation) if rotation else 0}
    return render(request, "security/_rotation.html", context, auth=auth, notice=notice)
