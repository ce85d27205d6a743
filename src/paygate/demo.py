"""Demo data for `paygate demo` / `make run`, and the first owner for `users create-admin`."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import ROLE_PERMISSIONS, Role
from paygate.accounts.repository import UserRepository
from paygate.accounts.schemas import RegisterRequest
from paygate.accounts.service import AccountService
from paygate.db import Database
from paygate.gateways.adapters.base import Environment, GatewayType
from paygate.gateways.schemas import GatewayCreate
from paygate.gateways.service import GatewayService
from paygate.invoices.schemas import Customer, InvoiceCreate, LineItemIn
from paygate.invoices.service import InvoiceService
from paygate.kit.deps import Origin
from paygate.kit.errors import Problem
from paygate.security.crypto import Keyring
from paygate.security.revocation import RevocationList
from paygate.settings import Settings

CLI_ORIGIN = Origin(ip=None, user_agent="paygate-cli", request_id=None)


@dataclass(frozen=True)
class DemoLogin:
    password: str | None  # None when the demo predates the saved login file
    password_file: Path
    pay_url: str | None = None


async def create_owner(
    database: Database, settings: Settings, *, email: str, password: str, company_name: str
) -> str:
    """Create a company and its owner, under the same rules as sign-up; returns the company id."""
    revocations = RevocationList.from_settings(settings)
    try:
        async with database.transaction() as session:
            service = AccountService(session, settings, CLI_ORIGIN, revocations=revocations)
            try:
                signed_in = await service.register(
                    RegisterRequest(email=email, password=password, company_name=company_name)
                )
            except Problem as problem:
                raise ValueError(problem.detail or problem.title) from None
            return signed_in.company_id
    finally:
        await revocations.close()


async def create_demo(
    database: Database, settings: Settings, *, email: str, company_name: str
) -> DemoLogin:
    """The demo company with its admin and a sandbox gateway; does nothing when it exists."""
    password_file = settings.data_dir / "demo-login.txt"
    async with database.transaction() as session:
        exists = await UserRepository(session).by_email(email) is not None
    if exists:
        saved = password_file.read_text().split() if password_file.exists() else []
        return DemoLogin(
            saved[1] if len(saved) > 1 else None,
            password_file,
            saved[2] if len(saved) > 2 else None,
        )
    password = "-".join(secrets.token_urlsafe(6) for _ in range(3))
    company_id = await create_owner(
        database, settings, email=email, password=password, company_name=company_name
    )
    async with database.transaction() as session:
        user = await UserRepository(session).by_email(email)
        assert user is not None
        auth = AuthContext(
            company_id=company_id,
            actor_type="user",
            actor_id=user.id,
            actor_label=email,
            permissions=ROLE_PERMISSIONS[Role.OWNER],
            origin=CLI_ORIGIN,
            role=Role.OWNER,
            user_id=user.id,
        )
        gateways = GatewayService(
            session, Keyring.parse(settings.master_keys_text()), settings, auth
        )
        await gateways.create(
            GatewayCreate(
                gateway_type=GatewayType.SANDBOX,
                name="Sandbox",
                environment=Environment.TEST,
                supported_currencies=["USD", "EUR", "GBP"],
            )
        )
        invoice = await InvoiceService(session, auth).create(
            InvoiceCreate(
                customer=Customer(name="Jane Buyer", email="jane@example.com"),
                currency="USD",
                line_items=[
                    LineItemIn(description="Website redesign", quantity=1, unit_amount=240_000),
                    LineItemIn(description="Hosting (12 months)", quantity=12, unit_amount=1_500),
                ],
                memo="Thank you for your business.",
            )
        )
        pay_url = f"{settings.base_url}/pay/{invoice.pay_token}"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    password_file.write_text(f"{email}\n{password}\n{pay_url}\n")
    password_file.chmod(0o600)
    return DemoLogin(password, password_file, pay_url)
