"""`shopflow services up|down|status`."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Start, stop and inspect the local services a run needs.", no_args_is_help=True
)
