"""Roles, permissions (which are also API key scopes), and which role holds which."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


class Permission(StrEnum):
    GATEWAYS_READ = "gateways:read"
    GATEWAYS_WRITE = "gateways:write"
    API_KEYS_READ = "api_keys:read"
    API_KEYS_WRITE = "api_keys:write"
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    AUDIT_READ = "audit:read"
    INVOICES_READ = "invoices:read"
    INVOICES_WRITE = "invoices:write"
    PAYMENTS_READ = "payments:read"
    PAYMENTS_WRITE = "payments:write"  # take payments and refunds
    COMPANY_WRITE = "company:write"  # company security settings (embedding origins)
    KEYS_ROTATE = "keys:rotate"  # re-wrap the company's data keys under the new master key
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"  # outbound webhook endpoints, redeliveries


_VIEWER = frozenset(
    {
        Permission.GATEWAYS_READ,
        Permission.API_KEYS_READ,
        Permission.MEMBERS_READ,
        Permission.AUDIT_READ,
        Permission.INVOICES_READ,
        Permission.PAYMENTS_READ,
        Permission.WEBHOOKS_READ,
    }
)
_DEVELOPER = _VIEWER | {
    Permission.API_KEYS_WRITE,
    Permission.INVOICES_WRITE,
    Permission.PAYMENTS_WRITE,
    Permission.WEBHOOKS_WRITE,
}
_ADMIN = _DEVELOPER | {Permission.GATEWAYS_WRITE}
_OWNER = _ADMIN | {Permission.MEMBERS_WRITE, Permission.COMPANY_WRITE, Permission.KEYS_ROTATE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.DEVELOPER: _DEVELOPER,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _OWNER,
}

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.OWNER: "Everything, including members and roles",
    Role.ADMIN: "Manage gateways and API keys",
    Role.DEVELOPER: "Read everything, manage API keys, invoices, payments and webhooks",
    Role.VIEWER: "Read only",
}

PERMISSION_DESCRIPTIONS: dict[Permission, str] = {
    Permission.GATEWAYS_READ: "See gateway configurations (secrets stay masked)",
    Permission.GATEWAYS_WRITE: "Add, change, test and delete gateways",
    Permission.API_KEYS_READ: "List API keys",
    Permission.API_KEYS_WRITE: "Create, rotate and revoke API keys",
    Permission.MEMBERS_READ: "List members and invitations",
    Permission.MEMBERS_WRITE: "Invite, change roles and remove members",
    Permission.AUDIT_READ: "Read the audit log",
    Permission.INVOICES_READ: "List and read invoices",
    Permission.INVOICES_WRITE: "Create, finalize and void invoices",
    Permission.PAYMENTS_READ: "Read payments, refunds and gateway calls",
    Permission.PAYMENTS_WRITE: "Take payments and refunds, sync payments",
    Permission.COMPANY_WRITE: "Change company settings, e.g. where payment pages may be embedded",
    Permission.KEYS_ROTATE: "Re-wrap the gateway credentials under the current master key",
    Permission.WEBHOOKS_READ: "See webhook endpoints and their delivery logs",
    Permission.WEBHOOKS_WRITE: "Add, change and delete webhook endpoints, rotate their secrets, "
    "redeliver",
}


def permissions_of(role: Role) -> list[Permission]:
    return sorted(ROLE_PERMISSIONS[role], key=lambda p: p.value)
