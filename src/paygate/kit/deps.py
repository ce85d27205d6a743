"""Request-scoped dependencies: settings, the one transaction per request, the caller's origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.security.crypto import Keyring
from paygate.security.ssrf import Resolver, resolve_host
from paygate.settings import Settings


# Dependencies are `async def` so FastAPI runs them inline, not in its thread pool.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


async def get_resolver(request: Request) -> Resolver:
    """How outbound host names are resolved for the SSRF check (tests set a fake one)."""
    resolver: Resolver = getattr(request.app.state, "outbound_resolver", resolve_host)
    return resolver


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, rolled back if it raises.

    Scoped to the endpoint function, so the commit happens before the response is sent.
    """
    database: Database = request.app.state.database
    async with database.transaction() as session:
        yield session


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for the audit log."""

    ip: str | None
    user_agent: str | None
    request_id: str | None


async def get_origin(request: Request) -> Origin:
    return Origin(
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:400] or None,
        request_id=getattr(request.state, "request_id", None),
    )


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
KeyringDep = Annotated[Keyring, Depends(get_keyring)]
OriginDep = Annotated[Origin, Depends(get_origin)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ResolverDep = Annotated[Resolver, Depends(get_resolver)]
