"""`shopflow ingest orders|catalog|events`: land the sources in the lake's raw zone."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from shopflow.ingest.report import IngestReport
from shopflow.settings import load_settings

app = typer.Typer(help="Land the sources in the lake's raw zone.", no_args_is_help=True)
console = Console(stderr=True)


def _print(report: IngestReport) -> None:
    print(report.summary())


@app.command("orders")
def ingest_orders_command(
    page_size: Annotated[
        int | None, typer.Option(min=1, help="Order lines per API page (default: the API maximum).")
    ] = None,
) -> None:
    """Pull order lines changed since the last pull from the orders API (run every 10 minutes)."""
    from shopflow.ingest.orders import ingest_orders

    settings = load_settings()
    with console.status("pulling orders") as status:
        pages = 0

        def on_page(count: int) -> None:
            nonlocal pages
            pages += 1
            status.update(f"pulling orders: page {pages}")

        report = ingest_orders(settings, page_size=page_size, on_page=on_page)
    _print(report)


@app.command("catalog")
def ingest_catalog_command() -> None:
    """Pull products and users changed since the last pull from the shop database (every 30 min):
    Spark over JDBC with the spark engine, psycopg into Arrow with the duckdb engine."""
    from shopflow.ingest.catalog import ingest_catalog

    settings = load_settings()
    spark = None
    if settings.etl_engine == "spark":
        from shopflow.transform.session import build_spark_session

        with console.status("starting Spark"):
            spark = build_spark_session(settings, app_name="shopflow-ingest-catalog")
    for report in ingest_catalog(spark, settings):
        _print(report)


@app.command("events")
def ingest_events_command(
    max_seconds: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many seconds (default: run on).")
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="Stop after reading this many messages.")
    ] = None,
    idle_stop_seconds: Annotated[
        float | None,
        typer.Option(min=0, help="Stop once the bus has been empty for this many seconds."),
    ] = None,
) -> None:
    """Land events from the bus into raw/events (invalid ones into deadletter/events); Ctrl-C or
    SIGTERM finishes the open batch and stops."""
    from shopflow.ingest.events import ingest_events

    settings = load_settings()
    with console.status(f"landing events from {settings.bus}") as status:

        def on_batch(report: IngestReport) -> None:
            status.update(
                f"landing events: read {report.read:,}, wrote {report.written:,}, "
                f"dead-lettered {report.deadlettered:,}"
            )

        report = ingest_events(
            settings,
            max_messages=max_messages,
            max_seconds=max_seconds,
            idle_stop_seconds=idle_stop_seconds,
            on_batch=on_batch,
        )
    _print(report)
