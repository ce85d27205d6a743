"""The audit log page: filters, newest-first paging, readable before/after diffs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep
from paygate.kit.pagination import PageParams
from paygate.security.audit import CHANGED
from paygate.security.models import AuditEntry
from paygate.security.repository import AuditFilters, AuditRepository
from paygate.web.forms import FormErrors, day_range
from paygate.web.render import PageRoute, render
from paygate.web.session import User, need

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 50
Short = Annotated[str, Query(max_length=60)]

# The filters' choices: every object type and action paygate records, by what it is about.
# A test checks this against the actions written in the code; a value outside these lists
# (from a link) still filters, and is offered as the selected choice.
OBJECT_TYPES: dict[str, str] = {
    "gateway": "Gateway",
    "invoice": "Invoice",
    "payment": "Payment",
    "api_key": "API key",
    "member": "Member",
    "invitation": "Invitation",
    "user": "User",
    "session": "Session",
    "company": "Company",
    "permission": "Permission",
    "key_rotation": "Key rotation",
}
ACTIONS: dict[str, tuple[str, ...]] = {
    "Gateways": (
        "gateway.created",
        "gateway.updated",
        "gateway.enabled",
        "gateway.disabled",
        "gateway.tested",
        "gateway.deleted",
        "gateway.archived",
        "gateway.restored",
        "gateway.credentials_rotated",
        "gateway.previous_credentials_wiped",
        "gateway.credentials_undecryptable",
    ),
    "Invoices and payments": (
        "invoice.created",
        "invoice.finalized",
        "invoice.voided",
        "payment.created",
        "payment.reviewed",
        "refund.created",
    ),
    "API keys": (
        "api_key.created",
        "api_key.rotated",
        "api_key.revoked",
        "api_key.expiry_notice_sent",
    ),
    "Members": (
        "member.invited",
        "member.joined",
        "member.role_changed",
        "member.unlocked",
        "member.removed",
        "member.sessions_ended",
        "member.invitation_revoked",
    ),
    "Sign-in and sessions": (
        "auth.sign_in",
        "auth.sign_out",
        "auth.account_locked",
        "auth.session_ended",
        "auth.other_sessions_ended",
        "auth.refresh_token_reused",
        "auth.password_changed",
        "auth.password_reset_requested",
        "auth.password_reset",
        "authorization.denied",
    ),
    "Gateway health and webhooks": (
        "gateway.monitoring_updated",
        "gateway.webhook_registered",
        "gateway.down",
        "gateway.up",
    ),
    "Reported by gateways": (
        "payment.processing",
        "payment.requires_action",
        "payment.succeeded",
        "payment.failed",
        "payment.updated",
        "payment.refunded",
        "payment.disputed",
        "payment.dispute_updated",
        "invoice.paid",
        "refund.succeeded",
        "refund.failed",
        "refund.updated",
        "refund.reported_by_gateway",
    ),
    "Company and keys": (
        "account.registered",
        "company.embed_origins_changed",
        "keys.rotation_started",
        "keys.rotation_finished",
        "keys.rotation_failed",
    ),
}
KNOWN_ACTIONS = frozenset(a for group in ACTIONS.values() for a in group)


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Row:
    entry: AuditEntry
    changes: list[Change]


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if value == CHANGED:
        return "changed (secret, not shown)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, (dict, bool)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _changes(entry: AuditEntry) -> list[Change]:
    result = []
    for name, change in sorted((entry.changes or {}).items()):
        if isinstance(change, dict) and set(change) <= {"before", "after"}:
            result.append(Change(name, _show(change.get("before")), _show(change.get("after"))))
        else:
            result.append(Change(name, "", _show(change)))
    return result


@router.get("/audit")
async def audit_page(
    request: Request,
    auth: User,
    session: SessionDep,
    object_type: Short = "",
    object_id: Short = "",
    actor_id: Short = "",
    action: Short = "",
    since: Short = "",
    until: Short = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    await need(request, auth, Permission.AUDIT_READ)
    values = {
        "object_type": object_type.strip(),
        "object_id": object_id.strip(),
        "actor_id": actor_id.strip(),
        "action": action.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }
    errors = FormErrors()
    since_at, until_at = day_range(values["since"], values["until"], errors)
    filters = AuditFilters(
        object_type=values["object_type"] or None,
        object_id=values["object_id"] or None,
        actor_id=values["actor_id"] or None,
        action=values["action"] or None,
        since=since_at,
        until=until_at,
    )
    rows, next_cursor = await AuditRepository(session, auth.company_id).search(
        filters, PageParams(limit=PAGE_SIZE, cursor=cursor or None)
    )
    active = {k: v for k, v in values.items() if v}
    return render(
        request,
        "audit/index.html",
        {
            "rows": [Row(entry, _changes(entry)) for entry in rows],
            "values": values,
            "errors": errors,
            "filtered": bool(active),
            "older_url": f"/audit?{urlencode({**active, 'cursor': next_cursor})}"
            if next_cursor
            else None,
            "newest_url": f"/audit?{urlencode(active)}" if cursor else None,
            "object_types": OBJECT_TYPES,
            "actions": ACTIONS,
            "known_actions": KNOWN_ACTIONS,
        },
        auth=auth,
    )
