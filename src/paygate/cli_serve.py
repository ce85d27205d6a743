"""Running paygate: `paygate migrate`, `serve`, `worker` and `demo`."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn

from paygate.cli_common import _database_url, _keyring, _migrate, _settings, console
from paygate.db import Database
from paygate.settings import Settings

if TYPE_CHECKING:
    from paygate.demo import DemoLogin


DEMO_EMAIL = "admin@demo.example.com"
DEMO_COMPANY = "Demo Company"


def migrate() -> None:
    """Apply every database migration (safe to run again)."""
    settings = _settings()
    _migrate(_database_url(settings))
    console.print("Database is at the newest migration.")


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


def worker(concurrency: Annotated[int, typer.Option(help="Jobs run at once")] = 4) -> None:
    """Run a background job worker (for scaling out; `serve` runs one in-process by default)."""
    from paygate.jobs import run_worker
    from paygate.kit.logging import configure_logging
    from paygate.server import tune_garbage_collector

    tune_garbage_collector()
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


def demo() -> None:
    """Create a demo company, its admin user and a sandbox gateway (once), and print the login."""
    settings = _settings()
    url = _database_url(settings)
    _migrate(url)
    _print_demo_login(settings, asyncio.run(_create_demo(settings, url)))
