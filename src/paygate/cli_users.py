"""`paygate users`: create a company and its owner."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

import typer

from paygate.cli_common import _database_url, _migrate, _settings, console
from paygate.db import Database

users_app = typer.Typer(help="Manage users.", no_args_is_help=True)


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="The admin's email")],
    company: Annotated[str, typer.Option(prompt=True, help="The company's name")],
    password: Annotated[
        str | None, typer.Option(help="Leave out to be asked (or to generate one with --generate)")
    ] = None,
    generate: Annotated[bool, typer.Option(help="Generate a strong password and print it")] = False,
) -> None:
    """Create a company and its owner."""
    from paygate.demo import create_owner

    settings = _settings()
    if password is None:
        password = (
            secrets.token_urlsafe(18)
            if generate
            else typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        )
    url = _database_url(settings)
    _migrate(url)

    async def main() -> str:
        database = Database(url)
        try:
            return await create_owner(
                database, settings, email=email, password=password, company_name=company
            )
        finally:
            await database.dispose()

    try:
        company_id = asyncio.run(main())
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"Created {email} as owner of {company} ({company_id}).")
    if generate:
        console.print(f"Password: [bold]{password}[/bold]")
