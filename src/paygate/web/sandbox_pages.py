"""The sandbox's hosted customer-action page (its 3-D Secure stand-in): approve or fail,
then back to paygate, never to anywhere else."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from paygate.kit.deps import SettingsDep
from paygate.kit.errors import Problem
from paygate.settings import Settings
from paygate.web.forms import text
from paygate.web.render import PageRoute, render

router = APIRouter(route_class=PageRoute)


def same_origin_return(target: str, settings: Settings) -> str | None:
    """`target` when it stays on paygate (a path, or under the base URL); None otherwise."""
    if not target or any(c in target for c in "\r\n\t\\"):
        return None
    if target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        return target if not parts.scheme and not parts.netloc else None
    base = settings.base_url.rstrip("/")
    if target == base or target.startswith(base + "/"):
        parts, own = urlsplit(target), urlsplit(base)
        if (parts.scheme, parts.netloc) == (own.scheme, own.netloc):
            return target
    return None


def _refused_return() -> Problem:
    return Problem(
        400,
        "bad-return-url",
        "This link is not valid",
        "The page asked to send you somewhere outside paygate, so it was stopped.",
    )


@router.get("/sandbox/authorize/{reference}")
async def sandbox_authorize_page(
    reference: str, request: Request, settings: SettingsDep
) -> Response:
    return_to = same_origin_return(request.query_params.get("return_to", ""), settings)
    if return_to is None:
        raise _refused_return()
    return render(
        request,
        "pay/sandbox_authorize.html",
        {"reference": reference[:64], "return_to": return_to, "company_name": "Sandbox test bank"},
    )


@router.post("/sandbox/authorize/{reference}")
async def sandbox_authorize(reference: str, request: Request, settings: SettingsDep) -> Response:
    form = await request.form()
    return_to = same_origin_return(text(form, "return_to"), settings)
    if return_to is None:
        raise _refused_return()
    outcome = "approved" if text(form, "outcome") == "approve" else "failed"
    separator = "&" if "?" in return_to else "?"
    return RedirectResponse(
        f"{return_to}{separator}{urlencode({'outcome': outcome})}", status_code=303
    )
