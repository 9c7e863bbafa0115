"""`shopflow airflow up|down|status`: the local Airflow with the project's DAGs."""

from __future__ import annotations

import typer

from shopflow.orchestration.local_airflow import (
    USER,
    AirflowStatus,
    airflow_home,
    airflow_status,
    start_airflow,
    stop_airflow,
)
from shopflow.settings import load_settings

app = typer.Typer(
    help="Start, stop and inspect the local Airflow 3 that schedules the pipeline.",
    no_args_is_help=True,
)


def _describe(status: AirflowStatus) -> None:
    login = f"{USER} / {status.password}" if status.password else "(not generated yet)"
    typer.echo(f"Airflow UI and REST API: {status.url}  login: {login}")
    if status.health:
        typer.echo("health: " + ", ".join(f"{k} {v}" for k, v in sorted(status.health.items())))


@app.command("up")
def up() -> None:
    """Start Airflow (standalone) with the DAGs in dags/ and wait until it is healthy."""
    settings = load_settings()
    typer.echo(f"starting Airflow in {airflow_home(settings)} (about 30 s)")
    status = start_airflow(settings)
    typer.echo(f"Airflow running (pid {status.pid})")
    _describe(status)


@app.command("down")
def down() -> None:
    """Stop every process `shopflow airflow up` started."""
    stopped = stop_airflow(load_settings())
    typer.echo("Airflow stopped" if stopped else "Airflow was not running")


@app.command("status")
def status() -> None:
    """Whether the local Airflow runs, its address, login and the health of its parts."""
    current = airflow_status(load_settings())
    typer.echo(
        f"Airflow {'running (pid ' + str(current.pid) + ')' if current.running else 'stopped'}"
    )
    if current.running:
        _describe(current)
