"""`paygate audit`: verify the audit log's hash chains."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from paygate.cli_common import _database_url, _settings, console
from paygate.db import Database

audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


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
