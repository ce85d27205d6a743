"""The audit log page: filters, newest-first paging, readable before/after diffs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep
from paygate.kit.pagination import PageParams
from paygate.security.audit import CHANGED
from paygate.security.audit_actions import AUDIT_ACTIONS
from paygate.security.audit_object_types import AUDIT_OBJECT_TYPES, AuditObjectType
from paygate.security.models import AuditEntry
from paygate.security.repository import AuditFilters, AuditRepository
from paygate.web.forms import FormErrors, day_range
from paygate.web.render import PageRoute, render
from paygate.web.session import User, need

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 50
Short = Annotated[str, Query(max_length=60)]

# The object type filter offers every type the code records on: AUDIT_OBJECT_TYPES, the
# one list every `audit.record` call is checked against (security/audit_object_types.py),
# in its order, each under the label given here (a test checks each type has one). A value
# outside them (from a link) still filters, and is offered as the selected choice.
OBJECT_TYPE_LABELS: dict[AuditObjectType, str] = {
    "gateway": "Gateway",
    "routing_rule": "Routing rule",
    "routing_rule_set": "Routing rule set",
    "retry_policy": "Retry policy",
    "invoice": "Invoice",
    "payment": "Payment",
    "webhook_event": "Webhook event",
    "webhook_replay": "Webhook replay",
    "webhook_endpoint": "Webhook endpoint",
    "webhook_delivery": "Webhook delivery",
    "alert_recipient": "Alert recipient",
    "api_key": "API key",
    "member": "Member",
    "invitation": "Invitation",
    "user": "User",
    "session": "Session",
    "permission": "Permission",
    "company": "Company",
    "key_rotation": "Key rotation",
}
OBJECT_TYPES: dict[str, str] = {
    kind: OBJECT_TYPE_LABELS.get(kind, kind) for kind in AUDIT_OBJECT_TYPES
}
# The action filter offers every action the code records: AUDIT_ACTIONS, the one list
# every `audit.record` call is checked against (security/audit_actions.py), grouped here
# by namespace (the part before the dot) under a heading. A test checks each namespace
# has one. A value outside them (from a link) still filters, and is offered as chosen.
ACTION_GROUPS: dict[str, str] = {
    "gateway": "Gateways",
    "routing_rule": "Routing",
    "routing_rules": "Routing",
    "routing_default": "Routing",
    "retry_policy": "Routing",
    "invoice": "Invoices and payments",
    "payment": "Invoices and payments",
    "refund": "Invoices and payments",
    "webhook": "Webhooks from gateways",
    "webhook_event": "Webhooks from gateways",
    "webhook_endpoint": "Webhook endpoints",
    "webhook_delivery": "Webhook endpoints",
    "alert_recipient": "Health alerts",
    "monitoring": "Health alerts",
    "api_key": "API keys",
    "member": "Members",
    "auth": "Sign-in and sessions",
    "authorization": "Sign-in and sessions",
    "account": "Company and keys",
    "company": "Company and keys",
    "keys": "Company and keys",
}
OTHER_ACTIONS = "Other"


def grouped_actions(actions: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """{heading: actions}, headings and actions in the order the actions are listed."""
    groups: dict[str, list[str]] = {}
    for action in actions:
        heading = ACTION_GROUPS.get(action.split(".", 1)[0], OTHER_ACTIONS)
        groups.setdefault(heading, []).append(action)
    return {heading: tuple(codes) for heading, codes in groups.items()}


ACTIONS = grouped_actions(AUDIT_ACTIONS)
KNOWN_ACTIONS = frozenset(AUDIT_ACTIONS)


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
