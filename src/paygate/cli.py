"""The `paygate` command: serve, worker, migrate, demo, users, keys, audit.

The one Typer app; each role's commands are in cli_serve.py (migrate, serve, worker,
demo), cli_users.py, cli_keys.py and cli_audit.py, their shared helpers in cli_common.py.
"""

from __future__ import annotations

import typer

from paygate.cli_audit import audit_app
from paygate.cli_keys import keys_app
from paygate.cli_serve import demo, migrate, serve, worker
from paygate.cli_users import users_app

app = typer.Typer(
    help="paygate: a multi-tenant payment gateway service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)


# Each role's commands live in a module beside this one (cli_*.py); the order here is
# the order `paygate --help` lists them in.
app.command()(migrate)
app.command()(serve)
app.command()(worker)
app.command()(demo)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


def main() -> None:
    app()
