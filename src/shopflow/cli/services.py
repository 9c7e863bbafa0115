"""`shopflow services up|down|status`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from shopflow.services import ALL_SERVICES, ensure_services, service_statuses, stop_services
from shopflow.settings import load_settings

app = typer.Typer(
    help="Start, stop and inspect the local services a run needs.", no_args_is_help=True
)

_NAMES_HELP = f"Services to act on (default: all of {', '.join(ALL_SERVICES)})."


@app.command("up")
def up(names: list[str] | None = typer.Argument(None, help=_NAMES_HELP)) -> None:
    """Start the named services that are not running yet and wait until each answers."""
    ensure_services(load_settings(), names or ALL_SERVICES, report=typer.echo)


@app.command("down")
def down(names: list[str] | None = typer.Argument(None, help=_NAMES_HELP)) -> None:
    """Stop the named services this home started (external ones are left alone)."""
    stop_services(load_settings(), names or ALL_SERVICES, report=typer.echo)


@app.command("status")
def status() -> None:
    """A table of every local service: state, pid, address and log file."""
    table = Table(title="shopflow services")
    for column in ("name", "state", "pid", "address", "log file"):
        table.add_column(column, overflow="fold")
    for s in service_statuses(load_settings()):
        table.add_row(s.name, s.state, str(s.pid or "-"), s.address, str(s.log_file))
    Console(width=160).print(table)
