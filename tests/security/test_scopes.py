"""Every /api/v1 route names the permission (API key scope) it needs, and refuses without it.

The routes are read from the app itself, so a route added later is checked too: it either
declares its permission with `require(...)` or is on ALLOWED_WITHOUT_PERMISSION with a
reason. A key holding every scope but the route's own is refused with 403 problem+json
before the route looks at its body or path (no 404 or 422 that would tell it more), and
every refusal is in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from paygate.accounts.auth import required_permission
from paygate.accounts.permissions import Permission
from paygate.db import Database
from paygate.kit.ids import new_id
from paygate.security.models import AuditEntry
from tests.conftest import Tenant

API_PREFIX = "/api/v1/"

# Routes that need no permission, and why. Anything else under /api/v1 must require one.
ALLOWED_WITHOUT_PERMISSION: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/auth/register"): "sign-up: there is no caller yet",
    ("POST", "/api/v1/auth/login"): "sign-in: the password is the credential",
    ("POST", "/api/v1/auth/refresh"): "the refresh token is the credential",
    ("POST", "/api/v1/invitations/accept"): "the invitation token is the credential",
    ("POST", "/api/v1/auth/logout"): "ends the caller's own session, nothing else",
    ("GET", "/api/v1/me"): "tells the caller who it is and which permissions it holds",
    ("GET", "/api/v1/roles"): "the fixed table of roles and permissions, the same everywhere",
    ("POST", "/api/v1/me/password"): "a user's own password, with the current one; keys refused",
    ("POST", "/api/v1/auth/password-reset"): "asks for a reset mail: there is no caller yet",
    ("POST", "/api/v1/auth/password-reset/confirm"): "the emailed reset token is the credential",
    ("GET", "/api/v1/sessions"): "lists the caller's own sign-in sessions; keys refused",
    ("POST", "/api/v1/sessions/end-others"): "signs the caller's own other sessions out",
    ("DELETE", "/api/v1/sessions/{session_id}"): "ends one of the caller's own sessions",
}

# Plausible ids for path parameters: well-formed, belonging to no one.
ID_PREFIXES = {
    "key_id": "key",
    "gateway_id": "gw",
    "invoice_id": "inv",
    "payment_id": "pay",
    "refund_id": "re",
    "membership_id": "mem",
    "invitation_id": "ivt",
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: Permission | None

    def url(self) -> str:
        url = self.path
        while "{" in url:
            start, end = url.index("{"), url.index("}")
            name = url[start + 1 : end].split(":")[0]
            url = (
                url[:start]
                + new_id(ID_PREFIXES.get(name, name.removesuffix("_id")))
                + url[end + 1 :]
            )
        return url

    def json(self) -> dict[str, Any] | None:
        return {} if self.method in ("POST", "PUT", "PATCH") else None


def permissions_in(dependant: Dependant) -> set[Permission]:
    """Every permission checked anywhere in a route's dependency tree."""
    found: set[Permission] = set()
    for dependency in dependant.dependencies:
        permission = required_permission(dependency.call)
        if permission is not None:
            found.add(permission)
        found |= permissions_in(dependency)
    return found


def api_endpoints(app: Any) -> list[Endpoint]:
    # FastAPI 0.16x keeps included routers as they are in app.routes; iter_route_contexts
    # gives each route as served: full path, methods and dependency tree.
    endpoints = []
    for route in iter_route_contexts(app.routes):
        if not (route.path or "").startswith(API_PREFIX) or not route.methods:
            continue
        dependant = route.dependant
        assert isinstance(dependant, Dependant), route.path
        permissions = permissions_in(dependant)
        assert len(permissions) <= 1, (route.path, permissions)
        for method in sorted(route.methods):
            endpoints.append(Endpoint(method, str(route.path), next(iter(permissions), None)))
    return endpoints


async def key_with(client: httpx.AsyncClient, tenant: Tenant, scopes: list[Permission]) -> str:
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "scope probe", "scopes": [s.value for s in scopes]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def test_every_api_route_declares_its_permission_or_says_why_not(app: Any) -> None:
    endpoints = api_endpoints(app)
    unguarded = {
        (e.method, e.path) for e in endpoints if e.permission is None
    } - ALLOWED_WITHOUT_PERMISSION.keys()
    assert unguarded == set(), "add require(...) to these routes, or allow them with a reason"
    # The allow-list names only routes that exist and check no permission.
    stale = ALLOWED_WITHOUT_PERMISSION.keys() - {
        (e.method, e.path) for e in endpoints if e.permission is None
    }
    assert stale == set()
    # The walk finds what the routes declare.
    declared = {(e.method, e.path): e.permission for e in endpoints}
    assert declared[("GET", "/api/v1/api-keys")] is Permission.API_KEYS_READ
    assert declared[("POST", "/api/v1/api-keys/{key_id}/rotate")] is Permission.API_KEYS_WRITE
    assert declared[("PUT", "/api/v1/company/embed-origins")] is Permission.COMPANY_WRITE
    assert declared[("POST", "/api/v1/payments/{payment_id}/refunds")] is (
        Permission.PAYMENTS_WRITE
    )


async def test_a_key_without_the_routes_scope_is_refused_first_and_audited(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
) -> None:
    guarded = [e for e in api_endpoints(app) if e.permission is not None]
    assert len(guarded) > 20
    keys_without = {
        permission: await key_with(client, tenant, [p for p in Permission if p is not permission])
        for permission in {e.permission for e in guarded if e.permission is not None}
    }
    keys_with = {
        permission: await key_with(client, tenant, [permission]) for permission in keys_without
    }

    wrong: list[str] = []
    for endpoint in guarded:
        assert endpoint.permission is not None
        url = endpoint.url()
        refused = await client.request(
            endpoint.method,
            url,
            json=endpoint.json(),
            headers={"Authorization": f"Bearer {keys_without[endpoint.permission]}"},
        )
        if (
            refused.status_code != 403
            or refused.headers["content-type"] != "application/problem+json"
            or endpoint.permission.value not in refused.json().get("detail", "")
        ):
            wrong.append(
                f"without {endpoint.permission}: {endpoint.method} {url} -> "
                f"{refused.status_code} {refused.text[:200]}"
            )
        allowed = await client.request(
            endpoint.method,
            url,
            json=endpoint.json(),
            headers={"Authorization": f"Bearer {keys_with[endpoint.permission]}"},
        )
        if allowed.status_code in (401, 403) or allowed.status_code >= 500:
            wrong.append(
                f"with {endpoint.permission}: {endpoint.method} {url} -> "
                f"{allowed.status_code} {allowed.text[:200]}"
            )
    assert wrong == []

    async with database.transaction() as session:
        denials = (
            (
                await session.execute(
                    select(AuditEntry).where(AuditEntry.action == "authorization.denied")
                )
            )
            .scalars()
            .all()
        )
    ours = [d for d in denials if d.company_id == tenant.company_id]
    assert len(ours) == len(guarded)
    assert all(d.outcome == "denied" and d.actor_type == "api_key" for d in ours)
    assert {(d.object_id, d.detail.split(" ")[0]) for d in ours if d.detail} == {
        (e.permission.value, e.method) for e in guarded if e.permission is not None
    }
    assert not [d for d in denials if d.company_id == other_tenant.company_id]


async def test_a_member_refused_by_role_is_audited_with_what_they_tried(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    invitation = (
        await client.post(
            "/api/v1/members",
            json={"email": "viewer@acme-invoicing.com", "role": "viewer"},
            headers=tenant.headers,
        )
    ).json()
    viewer = (
        await client.post(
            "/api/v1/invitations/accept",
            json={"token": invitation["invite_url"].rsplit("/", 1)[1], "password": tenant.password},
        )
    ).json()
    refused = await client.post(
        "/api/v1/api-keys",
        json={"name": "mine", "scopes": ["gateways:read"]},
        headers={"Authorization": f"Bearer {viewer['access_token']}"},
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This needs the api_keys:write permission."

    log = (
        await client.get(
            "/api/v1/audit-log",
            params={"action": "authorization.denied"},
            headers=tenant.headers,
        )
    ).json()["data"]
    assert len(log) == 1
    assert log[0]["actor_label"] == "viewer@acme-invoicing.com"
    assert log[0]["outcome"] == "denied"
    assert log[0]["object_id"] == "api_keys:write"
    assert log[0]["detail"] == "POST /api/v1/api-keys"
    # Nothing of the refused request itself was kept.
    assert (await client.get("/api/v1/api-keys", headers=tenant.headers)).json() == []
