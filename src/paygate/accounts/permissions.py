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


_VIEWER = frozenset(
    {
        Permission.GATEWAYS_READ,
        Permission.API_KEYS_READ,
        Permission.MEMBERS_READ,
        Permission.AUDIT_READ,
    }
)
_DEVELOPER = _VIEWER | {Permission.API_KEYS_WRITE}
_ADMIN = _DEVELOPER | {Permission.GATEWAYS_WRITE}
_OWNER = _ADMIN | {Permission.MEMBERS_WRITE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.DEVELOPER: _DEVELOPER,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _OWNER,
}

ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.OWNER: "Everything, including members and roles",
    Role.ADMIN: "Manage gateways and API keys",
    Role.DEVELOPER: "Read everything, manage API keys",
    Role.VIEWER: "Read only",
}
