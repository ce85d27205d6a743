"""Every action the audit log records, named in one place.

`audit.record` and `audit.record_by` take an `AuditAction`, so mypy refuses an action
that is not listed here, and the audit page's action filter offers exactly these
(web/audit_pages.py, which files each under a heading by its namespace, the part before
the dot). A new action is added here; a new namespace also gets its heading there.
"""

from __future__ import annotations

from typing import Literal, get_args

AuditAction = Literal[
    # gateways
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
    "gateway.monitoring_updated",
    "gateway.webhook_registered",
    "gateway.breaker_opened",
    "gateway.breaker_closed",
    # routing
    "routing_rule.created",
    "routing_rule.updated",
    "routing_rule.deleted",
    "routing_rules.reordered",
    "routing_rules.restored",
    "routing_default.updated",
    "retry_policy.updated",
    # invoices, payments, refunds
    "invoice.created",
    "invoice.finalized",
    "invoice.voided",
    "payment.created",
    "payment.reviewed",
    "payment.disputed",
    "payment.dispute_updated",
    "refund.created",
    "refund.reported_by_gateway",
    # webhooks from gateways, and to the company's endpoints
    "webhook.rejected",
    "webhook_event.replayed",
    "webhook_event.bulk_replay_started",
    "webhook_event.bulk_replay_finished",
    "webhook_endpoint.created",
    "webhook_endpoint.updated",
    "webhook_endpoint.enabled",
    "webhook_endpoint.disabled",
    "webhook_endpoint.deleted",
    "webhook_endpoint.restored",
    "webhook_endpoint.secret_rotated",
    "webhook_endpoint.previous_secret_wiped",
    "webhook_endpoint.test_sent",
    "webhook_delivery.redelivered",
    # health alerts
    "alert_recipient.added",
    "alert_recipient.updated",
    "alert_recipient.removed",
    "monitoring.alert_sent",
    # API keys
    "api_key.created",
    "api_key.rotated",
    "api_key.revoked",
    "api_key.expiry_notice_sent",
    # members
    "member.invited",
    "member.joined",
    "member.role_changed",
    "member.unlocked",
    "member.removed",
    "member.sessions_ended",
    "member.invitation_revoked",
    # sign-in and sessions
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
    # the company and its master keys
    "account.registered",
    "company.embed_origins_changed",
    "keys.rotation_started",
    "keys.rotation_finished",
    "keys.rotation_failed",
]

AUDIT_ACTIONS: tuple[AuditAction, ...] = get_args(AuditAction)
