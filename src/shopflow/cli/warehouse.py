"""`shopflow load` and `shopflow metrics`."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from shopflow.errors import ShopflowError
from shopflow.metrics import METRIC_VIEWS
from shopflow.metrics.results import fetch_metrics
from shopflow.quality import gated_load
from shopflow.settings import load_settings
from shopflow.warehouse import TABLES

_DATE_HELP = "Load only this UTC date (YYYY-MM-DD); repeat for more. Default: every curated date."
_TABLE_HELP = f"Load only this table; repeat for more. Default: all ({', '.join(TABLES)})."


def parse_date(text: str, option: str = "--date") -> date:
    """A date option's value; a bad one is a one-line error naming `option`."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ShopflowError(
            f"{option} {text!r} is not a date; use YYYY-MM-DD, e.g. 2026-11-25"
        ) from None


def load(
    dates: list[str] = typer.Option([], "--date", help=_DATE_HELP),
    tables: list[str] = typer.Option([], "--table", help=_TABLE_HELP),
    accept_volume_drop: list[str] = typer.Option(
        [],
        "--accept-volume-drop",
        metavar="DATE",
        help="A date whose drop in events is deliberate (a deleted hour, a backfill): its failed "
        "volume check is recorded as 'overridden' in quality_results and does not stop this "
        "load. Repeatable; this run only.",
    ),
) -> None:
    """Check, then load curated lake partitions into the warehouse (replacing them) and refresh
    the metric views.

    The data-quality checks run first over the dates loaded (default: every curated date); their
    results go to `quality_results`; a failed error check stops here, one line naming it, and
    nothing is loaded (see `shopflow quality`)."""
    settings = load_settings()
    days = [parse_date(d) for d in dates] or None
    accepted = {parse_date(d, "--accept-volume-drop") for d in accept_volume_drop}
    checked, report = gated_load(
        settings, dates=days, tables=tables or None, accept_volume_drop=accepted
    )
    for warning in checked.warnings:
        typer.echo(f"quality warning: {warning.line()}", err=True)
    for override in checked.overridden:
        typer.echo(f"quality override: {override.line()}", err=True)
    typer.echo(
        f"quality checks passed for {checked.span} ({len(checked.results)} results, "
        f"{len(checked.warnings)} warnings)"
    )
    for table in report.tables:
        scope = (
            "whole table"
            if table.partitions is None
            else ", ".join(str(p) for p in table.partitions)
        )
        typer.echo(f"{table.table}: {table.rows:,} rows ({scope})")
    for name, reason in report.skipped.items():
        typer.echo(f"{name}: skipped, {reason}")
    typer.echo(f"loaded {report.rows:,} rows into {len(report.tables)} tables")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | Decimal):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Table:
    names = columns or (list(rows[0]) if rows else [])
    table = Table(title=title, title_justify="left")
    for name in names:
        table.add_column(
            name,
            justify="right"
            if rows and isinstance(rows[0][name], int | float | Decimal)
            else "left",
        )
    for row in rows:
        table.add_row(*(_cell(row[name]) for name in names))
    return table


def print_metrics(results: dict[str, list[dict[str, Any]]], limit: int) -> None:
    """The metric views as rich tables, `limit` rows each."""
    console = Console()
    for view in METRIC_VIEWS:
        rows = results[view.name]
        if view.name == "metric_top_products":
            base = [
                "product_id",
                "product_name",
                "lines_sold",
                "units_sold",
                "wishlisted",
                "returned",
            ]
            for rank, label in (
                ("sold_rank", "most sold"),
                ("wishlisted_rank", "most wishlisted"),
                ("returned_rank", "most returned"),
            ):
                top = sorted(rows, key=lambda r: int(r[rank]))[:limit]
                console.print(_table(f"{view.name}: {label}", top, base))
            continue
        console.print(_table(f"{view.name}: {view.title}", rows[:limit]))
        if len(rows) > limit:
            console.print(f"({len(rows) - limit:,} more rows; --json prints all)")


def metrics(
    as_json: bool = typer.Option(False, "--json", help="Print every row of every view as JSON."),
    limit: int = typer.Option(10, "--limit", min=1, help="Rows per table in the table output."),
) -> None:
    """Print the five metric views of the warehouse (rich tables, or JSON with --json)."""
    results = fetch_metrics(load_settings())
    if as_json:
        typer.echo(json.dumps(results, default=str, indent=1))
        return
    print_metrics(results, limit)


def register(app: typer.Typer) -> None:
    """Add `load` and `metrics` to the top-level app."""
    app.command("load")(load)
    app.command("metrics")(metrics)
