"""The `paygate` command: serve, worker, migrate, demo, users, keys, audit."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from alembic import command
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from paygate.db import Database, resolve_database_url
from paygate.migrations_check import alembic_config
from paygate.security.crypto import Keyring, KeyringError, generate_master_key
from paygate.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from paygate.demo import DemoLogin

app = typer.Typer(
    help="paygate: a multi-tenant payment gateway service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Master keys for the encryption of gateway credentials.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
console = Console()

DEMO_EMAIL = "admin@demo.example.com"
DEMO_COMPANY = "Demo Company"


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


@app.command()
def migrate() -> None:
    """Apply every database migration (safe to run again)."""
    settings = _settings()
    _migrate(_database_url(settings))
    console.print("Database is at the newest migration.")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    demo: Annotated[bool, typer.Option(help="Migrate and create the demo data first")] = False,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the API and web UI (with an in-process job worker unless PAYGATE_RUN_WORKER=false)."""
    from paygate.kit.logging import configure_logging

    settings = _settings()
    # First: every line from here on (PostgreSQL, migrations, the worker) in one format.
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)
    if host:
        settings.host = host
    if port:
        settings.port = port
    url = _database_url(settings)
    _migrate(url)
    result = asyncio.run(_create_demo(settings, url)) if demo else None

    def banner() -> None:
        console.print(f"paygate is listening on [bold]{settings.base_url}[/bold]", soft_wrap=True)
        if result is not None:
            _print_demo_login(settings, result)

    _exit_normally_on_stop_signals()
    if workers > 1:
        # Separate processes read their settings from the environment.
        import os

        os.environ["PAYGATE_DATABASE_URL"] = url
        banner()
        from paygate.server import serve_workers

        serve_workers(settings.host, settings.port, workers)
    else:
        from paygate.app import create_app
        from paygate.server import tune_garbage_collector

        config = uvicorn.Config(
            create_app(settings), host=settings.host, port=settings.port, log_level="warning"
        )
        tune_garbage_collector()
        _ServerWithBanner(config, banner).run()


class _ServerWithBanner(uvicorn.Server):
    """Prints the login and pay link once serving, so they are the last lines on screen."""

    def __init__(self, config: uvicorn.Config, banner: Callable[[], None]) -> None:
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.banner()


def _exit_normally_on_stop_signals() -> None:
    """uvicorn stops gracefully on SIGTERM or SIGINT, then raises the signal again under the
    handler it found at start. Python's default handler for SIGTERM ends the process at once,
    skipping the atexit hook that stops the embedded PostgreSQL: exit normally instead."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


@app.command()
def worker(concurrency: Annotated[int, typer.Option(help="Jobs run at once")] = 4) -> None:
    """Run a background job worker (for scaling out; `serve` runs one in-process by default)."""
    from paygate.jobs import run_worker
    from paygate.kit.logging import configure_logging

    settings = _settings()
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)
    database = Database(_database_url(settings))

    async def main() -> None:
        try:
            await run_worker(database, settings, _keyring(settings), concurrency=concurrency)
        finally:
            await database.dispose()

    asyncio.run(main())


async def _create_demo(settings: Settings, url: str) -> DemoLogin:
    from paygate.demo import create_demo

    database = Database(url)
    try:
        return await create_demo(database, settings, email=DEMO_EMAIL, company_name=DEMO_COMPANY)
    finally:
        await database.dispose()


def _print_demo_login(settings: Settings, result: DemoLogin) -> None:
    console.print()
    console.print(f"  Open      [bold]{settings.base_url}/login[/bold]", soft_wrap=True)
    console.print(f"  Email     [bold]{DEMO_EMAIL}[/bold]")
    if result.password:
        console.print(
            f"  Password  [bold]{result.password}[/bold]  (kept in {result.password_file})",
            soft_wrap=True,
        )
    else:
        console.print("  Password  as printed when the demo was created")
    if result.pay_url:
        console.print(f"  Pay link  [bold]{result.pay_url}[/bold]", soft_wrap=True)
        console.print(
            "            a demo invoice: pay it with the sandbox card 4242 4242 4242 4242"
        )
    console.print()


@app.command()
def demo() -> None:
    """Create a demo company, its admin user and a sandbox gateway (once), and print the login."""
    settings = _settings()
    url = _database_url(settings)
    _migrate(url)
    _print_demo_login(settings, asyncio.run(_create_demo(settings, url)))


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


@keys_app.command("generate")
def keys_generate(
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-11")],
) -> None:
    """Print a new master key entry to put first in PAYGATE_MASTER_KEYS (or the key file)."""
    typer.echo(generate_master_key(key_id))


def _keyring(settings: Settings) -> Keyring:
    try:
        return Keyring.parse(settings.master_keys_text())
    except KeyringError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


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


@audit_app.command("verify")
def audit_verify(
    company: Annotated[
        str | None, typer.Option(help="Verify only this company's chain (its id)")
    ] = None,
) -> None:
    """Recompute the audit log's hash chains; exit 1 at an edited, deleted or moved entry."""
    from paygate.security.audit import ChainReport, verify_chains

    settings = _settings()
    database = Database(_database_url(settings))

    async def main() -> ChainReport:
        try:
            async with database.transaction() as session:
                return await verify_chains(session, company)
        finally:
            await database.dispose()

    report = asyncio.run(main())
    for link in report.broken:
        console.print(
            f"[red]BROKEN[/red] chain {link.company_id or '(no company)'} at entry"
            f" {link.seq} ({link.entry_id}): {link.problem}",
            soft_wrap=True,
        )
    table = Table("chain (company)", "entries", "head entry", "head hash (sha256)")
    table.columns[3].overflow = "fold"
    for chain in report.chains:
        table.add_row(
            chain.company_id or "(no company)",
            str(chain.entries),
            str(chain.head_seq),
            chain.head_hash,
        )
    console.print(table)
    total = sum(chain.entries for chain in report.chains)
    if not report.ok:
        console.print(f"[red]{len(report.broken)} of {len(report.chains)} chains are broken.[/red]")
        raise typer.Exit(1)
    console.print(f"{total} entries in {len(report.chains)} chains: every link holds.")


def main() -> None:
    app()
