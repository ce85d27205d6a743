"""Every kind of object the audit log records an action on, named in one place.

`audit.record` and `audit.record_by` take an `AuditObjectType` as `object_type`, so mypy
refuses a type that is not listed here, and the audit page's object type filter offers
exactly these (web/audit_pages.py, which gives each its label). A new type is added here
and gets its label there.
"""

from __future__ import annotations

from typing import Literal, get_args

AuditObjectType = Literal[
    # gateways and routing
    "gateway",
    "routing_rule",
    "routing_rule_set",
    "retry_policy",
    # invoices and payments
    "invoice",
    "payment",
    # webhooks from gateways, and to the company's endpoints
    "webhook_event",
    "webhook_replay",
    "webhook_endpoint",
    "webhook_delivery",
    # health alerts
    "alert_recipient",
    # API keys, members, sign-in
    "api_key",
    "member",
    "invitation",
    "user",
    "session",
    "permission",
    # the company and its master keys
    "company",
    "key_rotation",
]

AUDIT_OBJECT_TYPES: tuple[AuditObjectType, ...] = get_args(AuditObjectType)
