"""Templates, the page route class (HTML errors, login redirects, cookies) and render helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.kit.clock import utcnow
from paygate.kit.errors import Problem
from paygate.kit.money import Money, is_currency
from paygate.settings import Settings
from paygate.web.navigation import HOME, sidebar
from paygate.web.session import (
    CsrfRefused,
    LoginRequired,
    apply_cookie_changes,
    csrf_token,
    login_url_for,
    take_flash,
)

logger = structlog.get_logger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Swap 422 (a form with its errors) into the form's place; other errors go to the notices.
HTMX_CONFIG = json.dumps(
    {
        "includeIndicatorStyles": False,
        "allowEval": False,
        "allowScriptTags": False,
        "historyCacheSize": 0,
        # Settling "style" (htmx's default) writes style attributes, which the CSP refuses
        # (style-src 'self', no 'unsafe-inline'); paygate's markup has none to settle.
        "attributesToSettle": ["class", "width", "height"],
        "responseHandling": [
            {"code": "204", "swap": False},
            {"code": "[23]..", "swap": True},
            {"code": "422", "swap": True},
            {
                "code": "[45]..",
                "swap": True,
                "error": True,
                "target": "#notices",
                "swapOverride": "afterbegin",
            },
        ],
    },
    separators=(",", ":"),
)


def _utc(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime(fmt) + " UTC"


def _utc_plain(value: datetime, fmt: str) -> str:
    """For columns whose heading already says UTC."""
    return value.astimezone(UTC).strftime(fmt)


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 45:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = round(seconds / size) if unit != "day" else seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def _amount(value: int | None, currencies: list[str] | None = None) -> str:
    """An amount in minor units, shown in the currency when there is exactly one."""
    if value is None:
        return "No limit"
    if currencies and len(currencies) == 1 and is_currency(currencies[0]):
        return Money(value, currencies[0]).format()
    return f"{value:,} (minor units)"


def _wbr(value: str | None) -> Markup:
    """Text that may wrap only between its parts: after an @, before a dot (emails, domains),
    never in the middle of a word."""
    if not value:
        return Markup("")
    # Markup.join escapes each part: only the <wbr> tags are markup.
    return Markup("@<wbr>").join(
        Markup("<wbr>.").join(part.split(".")) for part in value.split("@")
    )


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a typo in a template fails the test, not the user
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        utc=_utc, utc_plain=_utc_plain, ago=_ago, amount=_amount, tojson_text=_json, wbr=_wbr
    )
    env.globals.update(Permission=Permission, htmx_config=HTMX_CONFIG)
    return env


templates = _environment()


@dataclass(frozen=True)
class Notice:
    kind: str  # success, info, error
    text: str


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    auth: AuthContext | None = None,
    status_code: int = 200,
    notice: Notice | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page, or only its content block for htmx (the layout is already there)."""
    partial = is_htmx(request)
    notices: list[Notice] = []
    if not partial:
        flashed = take_flash(request)
        if flashed:
            notices.append(Notice(*flashed))
    if notice is not None and not partial:
        notices.append(notice)
    values: dict[str, Any] = {
        "layout": "fragment.html" if partial else "layout.html",
        "auth": auth,
        "csrf_token": csrf_token(request),
        "notices": notices,
        "path": request.url.path,
        "company_name": getattr(request.state, "company_name", None),
        "home": HOME,
        "nav": sidebar(auth, request.url.path) if auth is not None and not partial else [],
    }
    values.update(context or {})
    body = templates.get_template(template).render(values)
    if notice is not None and partial:
        # htmx puts it into the page's notices region, beside the main swap.
        body += templates.get_template("_oob_notice.html").render({"notice": notice})
    return HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))


def section_response(
    request: Request,
    auth: AuthContext,
    folder: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    notice: Notice | None = None,
) -> Response:
    """htmx swaps just the page's section; a plain form post gets the whole page."""
    template = f"{folder}/_section.html" if is_htmx(request) else f"{folder}/index.html"
    return render(request, template, context, auth=auth, status_code=status_code, notice=notice)


def redirect(url: str, request: Request) -> Response:
    """A redirect that also works for htmx (which would otherwise follow it into a fragment)."""
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _error_page(request: Request, status: int, title: str, detail: str | None) -> Response:
    if is_htmx(request):
        return render(
            request,
            "_notice.html",
            {"notice": Notice("error", detail or title)},
            status_code=status,
        )
    return render(
        request,
        "error.html",
        {"status": status, "title": title, "detail": detail},
        auth=getattr(request.state, "page_auth", None),
        status_code=status,
    )


class PageRoute(APIRoute):
    """Each page route: HTML problems, /login for the signed-out, cookies set on the way out."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            try:
                response = await handler(request)
            except LoginRequired:
                response = redirect(login_url_for(request), request)
            except CsrfRefused:
                response = _error_page(
                    request,
                    403,
                    "This form has expired",
                    "The security token of this form is missing or out of date. "
                    "Reload the page and try again.",
                )
            except Problem as problem:
                response = _error_page(request, problem.status, problem.title, problem.detail)
                if "Retry-After" in problem.headers:
                    response.headers["Retry-After"] = problem.headers["Retry-After"]
            except RequestValidationError:
                response = _error_page(
                    request, 400, "Bad request", "The request was not understood."
                )
            # Pages hold per-user data (and sometimes a key shown once): never cache them.
            # Security headers are SecurityHeadersMiddleware's (paygate.kit.middleware).
            response.headers.setdefault("Cache-Control", "no-store")
            apply_cookie_changes(request, response, settings)
            return response

        return page_handler
