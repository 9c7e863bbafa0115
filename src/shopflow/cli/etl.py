"""`shopflow etl` and `shopflow backfill`: recompute the curated zone from the raw zone."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from shopflow.settings import load_settings
from shopflow.transform.jobs import EtlRequest, backfill_request, etl_request

console = Console(stderr=True)


def _run(request: EtlRequest) -> None:
    from shopflow.transform.entrypoint import open_session
    from shopflow.transform.jobs import run_etl

    settings = load_settings()
    with console.status("starting the ETL engine"):
        session = open_session(settings)
    with console.status(f"ETL: {request.label}"):
        run = run_etl(session, settings, request)
    print(run.summary())


def etl(
    hour: Annotated[
        str | None,
        typer.Option("--hour", help="Recompute this event hour's date, YYYY-MM-DDTHH (UTC)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Recompute the event dates from this ISO-8601 time on."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="End (exclusive) of --since's range; default now."),
    ] = None,
) -> None:
    """Recompute every event date that received raw data since the last run (plus --hour's date
    or the --since/--until range) and replace its curated partitions whole; prints a summary."""
    _run(etl_request(hour=hour, since=since, until=until))


def backfill(
    start: Annotated[str, typer.Option("--start", help="First event date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last event date (included), YYYY-MM-DD.")],
) -> None:
    """Recompute whole event dates from the raw zone, whatever the ETL state (left unchanged)."""
    _run(backfill_request(start, end))


def register(app: typer.Typer) -> None:
    """Add `etl` and `backfill` to the top-level app."""
    app.command("etl")(etl)
    app.command("backfill")(backfill)
