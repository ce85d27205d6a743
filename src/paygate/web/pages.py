"""Server-rendered pages (Jinja2 + htmx).

Every page route uses `PageRoute` (HTML error pages, login redirects, cookies) and the
router-wide CSRF check; the pages themselves call the same services as the JSON API.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from paygate.web import (
    account_pages,
    alert_pages,
    api_key_pages,
    audit_pages,
    auth_pages,
    failure_pages,
    gateway_history_pages,
    gateway_pages,
    health_pages,
    invoice_pages,
    key_pages,
    member_pages,
    overview_pages,
    pay_pages,
    payment_pages,
    routing_pages,
    sandbox_pages,
    webhook_endpoint_pages,
    webhook_pages,
)
from paygate.web.render import PageRoute
from paygate.web.session import verify_csrf

router = APIRouter(
    include_in_schema=False, route_class=PageRoute, dependencies=[Depends(verify_csrf)]
)

for module in (
    auth_pages,
    overview_pages,
    invoice_pages,
    payment_pages,
    gateway_pages,
    gateway_history_pages,
    audit_pages,
    account_pages,
    api_key_pages,
    member_pages,
    key_pages,
    pay_pages,
    sandbox_pages,
    health_pages,
    failure_pages,
    alert_pages,
    webhook_endpoint_pages,
    webhook_pages,
    routing_pages,
):
    router.include_router(module.router)
