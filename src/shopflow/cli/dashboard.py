"""`shopflow dashboard`: serve the local web dashboard over the warehouse."""

from __future__ import annotations

import os
import sys

import typer

from shopflow.dashboard.server import (
    check_port_free,
    dashboard_environment,
    dashboard_url,
    streamlit_command,
)
from shopflow.extras import require_module
from shopflow.settings import load_settings
from shopflow.warehouse import duckdb_path


def dashboard(
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; 0.0.0.0 serves other machines too."
    ),
) -> None:
    """Serve the dashboard (Streamlit): the five metrics as charts, a date filter, freshness."""
    require_module("streamlit")  # the `dashboard` extra; checked before this process becomes it
    settings = load_settings()
    check_port_free(host, port)
    if settings.profile.value == "local" and not duckdb_path(settings).is_file():
        typer.echo(
            f"note: no warehouse at {duckdb_path(settings)} yet; the page will say so until "
            "`shopflow load` (or `shopflow demo`) has run"
        )
    typer.echo(f"shopflow dashboard: {dashboard_url(host, port)} (Ctrl-C to stop)")
    sys.stdout.flush()
    sys.stderr.flush()
    command = streamlit_command(host, port)
    # Become the Streamlit server: Ctrl-C and SIGTERM reach it directly, no orphan is left.
    os.execve(command[0], command, dashboard_environment(settings))


def register(app: typer.Typer) -> None:
    """Add `dashboard` to the top-level app."""
    app.command("dashboard")(dashboard)
