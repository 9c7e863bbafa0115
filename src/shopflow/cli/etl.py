"""`shopflow etl` and `shopflow backfill`: recompute the curated zone from the raw zone."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.console import Console

from shopflow.errors import ShopflowError
from shopflow.settings import EtlEngine, load_settings

if TYPE_CHECKING:
    from shopflow.transform.jobs import EtlRequest

console = Console(stderr=True)
ENGINES = get_args(EtlEngine)

EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="ETL engine for this run: spark or duckdb (default: SHOPFLOW_ETL_ENGINE).",
    ),
]


def _run(request: EtlRequest, engine: str | None) -> None:
    from shopflow.transform.entrypoint import etl_session
    from shopflow.transform.jobs import run_etl

    if engine is not None and engine.strip().lower() not in ENGINES:
        raise ShopflowError(f"--engine {engine!r} is not one of: {', '.join(ENGINES)}")
    overrides: dict[str, object] = {"etl_engine": engine.strip().lower()} if engine else {}
    settings = load_settings(**overrides)
    with contextlib.ExitStack() as stack:
        with console.status(f"starting the ETL engine ({settings.etl_engine})"):
            session = stack.enter_context(etl_session(settings))
        with console.status(f"ETL ({settings.etl_engine}): {request.label}"):
            run = run_etl(session, settings, request)
    console.print(f"ETL engine: {settings.etl_engine}", highlight=False)
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
    engine: EngineOption = None,
) -> None:
    """Recompute every event date that received raw data since the last run (plus --hour's date
    or the --since/--until range) and replace its curated partitions whole; prints a summary."""
    # Imported here: the transforms import pyspark.sql (the `spark` extra), `--help` does not.
    from shopflow.transform.jobs import etl_request

    _run(etl_request(hour=hour, since=since, until=until), engine)


def backfill(
    start: Annotated[str, typer.Option("--start", help="First event date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last event date (included), YYYY-MM-DD.")],
    engine: EngineOption = None,
) -> None:
    """Recompute whole event dates from the raw zone, whatever the ETL state (left unchanged)."""
    from shopflow.transform.jobs import backfill_request

    _run(backfill_request(start, end), engine)


def register(app: typer.Typer) -> None:
    """Add `etl` and `backfill` to the top-level app."""
    app.command("etl")(etl)
    app.command("backfill")(backfill)
