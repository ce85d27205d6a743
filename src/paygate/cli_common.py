"""What every `paygate` command shares: the console, the settings (refused with a clear
message), the database URL, migrations and the master keyring.
"""

from __future__ import annotations

import typer
from alembic import command
from rich.console import Console

from paygate.db import resolve_database_url
from paygate.migrations_check import alembic_config
from paygate.security.crypto import Keyring, KeyringError
from paygate.settings import Settings, get_settings

console = Console()


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic wraps the production checks
        console.print(f"[red]Configuration refused:[/red] {exc}")
        raise typer.Exit(2) from None


def _database_url(settings: Settings) -> str:
    url = resolve_database_url(settings)
    # Later steps in this process (and the server) use the same database.
    settings.database_url = url
    return url


def _migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


def _keyring(settings: Settings) -> Keyring:
    try:
        return Keyring.parse(settings.master_keys_text())
    except KeyringError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
