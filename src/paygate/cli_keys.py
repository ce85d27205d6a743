"""`paygate keys`: generate master keys, see what each wraps, rotate onto the primary."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from paygate.cli_common import _database_url, _keyring, _settings, console
from paygate.db import Database
from paygate.security.crypto import generate_master_key

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


keys_app = typer.Typer(
    help="Master keys for the encryption of gateway credentials.", no_args_is_help=True
)


@keys_app.command("generate")
def keys_generate(
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-11")],
) -> None:
    """Print a new master key entry to put first in PAYGATE_MASTER_KEYS (or the key file)."""
    typer.echo(generate_master_key(key_id))


async def _sealed_by_key(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """Key id -> (gateway configurations, webhook endpoint secrets) it wraps."""
    from paygate.gateways.repository import count_by_key_id
    from paygate.webhooks.outbound.repository import endpoint_count_by_key_id

    gateways = await count_by_key_id(session)
    endpoints = await endpoint_count_by_key_id(session)
    return {
        key_id: (gateways.get(key_id, 0), endpoints.get(key_id, 0))
        for key_id in set(gateways) | set(endpoints)
    }


@keys_app.command("status")
def keys_status() -> None:
    """How many gateway configurations and webhook endpoint secrets each master key wraps."""
    settings = _settings()
    keyring = _keyring(settings)
    database = Database(_database_url(settings))

    async def main() -> dict[str, tuple[int, int]]:
        try:
            async with database.transaction() as session:
                return await _sealed_by_key(session)
        finally:
            await database.dispose()

    counts = asyncio.run(main())
    table = Table("key id", "configurations", "webhook endpoints", "status")
    for key_id in sorted(set(counts) | set(keyring.key_ids)):
        gateways, endpoints = counts.get(key_id, (0, 0))
        if key_id == keyring.primary_key_id:
            state = "primary"
        elif key_id in keyring.key_ids:
            state = "configured" if gateways + endpoints else "configured, unused: can be retired"
        else:
            state = "MISSING: secrets under it cannot be read"
        table.add_row(key_id, str(gateways), str(endpoints), state)
    console.print(table)


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    company: Annotated[
        str | None, typer.Option(help="Only this company's configurations (its id)")
    ] = None,
) -> None:
    """Re-wrap every data key under the primary master key, while paygate keeps serving.

    Exits 1 when a configuration cannot be decrypted (it is named, and audited), or when
    some were busy and it should be run again.
    """
    from paygate.gateways.repository import count_by_key_id
    from paygate.gateways.resealing import rewrap_all
    from paygate.webhooks.outbound.repository import endpoint_count_by_key_id
    from paygate.webhooks.outbound.tasks import rewrap_endpoint_secrets

    settings = _settings()
    keyring = _keyring(settings)
    database = Database(_database_url(settings))

    async def main() -> tuple[int, tuple[str, ...]]:
        try:
            async with database.transaction() as session:
                counts = await count_by_key_id(session, company)
            total = sum(n for key_id, n in counts.items() if key_id != keyring.primary_key_id)
            with Progress(
                TextColumn("Re-wrapping under [bold]{task.fields[key]}[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("rotate", total=total, key=keyring.primary_key_id)
                remaining = total
                failed: tuple[str, ...] = ()
                async for step in rewrap_all(
                    database, keyring, company_id=company, batch_size=batch_size
                ):
                    progress.update(
                        task,
                        completed=step.rewrapped + len(step.failed_ids),
                        total=step.rewrapped + len(step.failed_ids) + step.remaining,
                    )
                    remaining, failed = step.remaining, step.failed_ids
            if company is None:
                # Webhook endpoint secrets follow within ten minutes by themselves; the
                # operator's rotation does not wait for that before saying a key can go.
                await rewrap_endpoint_secrets(database, keyring)
                async with database.transaction() as session:
                    left = await endpoint_count_by_key_id(session)
                stuck = sum(n for key_id, n in left.items() if key_id != keyring.primary_key_id)
                if stuck:
                    console.print(
                        f"[red]{stuck} webhook endpoint secrets could not be re-wrapped[/red]"
                        " (the log names them): restore the master key they name, or have each"
                        " company rotate those endpoints' secrets."
                    )
                    raise typer.Exit(1)
            return remaining, failed
        finally:
            await database.dispose()

    remaining, failed = asyncio.run(main())
    if failed:
        console.print(
            f"[red]{len(failed)} configurations could not be decrypted and were left as they"
            f" are:[/red] {', '.join(failed)}",
            soft_wrap=True,
        )
        console.print(
            "Restore the master key they name (see `paygate keys status`), or have each"
            " company re-enter those gateways' credentials. Do not retire a key they still need."
        )
        raise typer.Exit(1)
    if remaining:
        console.print(f"[yellow]{remaining} configurations were busy; run it again.[/yellow]")
        raise typer.Exit(1)
    console.print(
        f"Every configuration is wrapped by {keyring.primary_key_id}. Older keys can be retired."
    )
