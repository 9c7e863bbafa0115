"""`shopflow quality`: the data-quality checks on demand, as a table; results recorded."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shopflow.cli.warehouse import parse_date
from shopflow.errors import ShopflowError
from shopflow.lake import LakeLayout
from shopflow.quality import (
    QualityGateError,
    QualityReport,
    curated_dates,
    record_results,
    run_checks,
)
from shopflow.settings import load_settings

#: The most dates one run checks (a year): a typo in --start should not read the whole lake.
MAX_DATES = 366
#: Exit code of `shopflow quality` when none of the dates has curated data: nothing was checked
#: (not a pass, 0; not a failed check, 2).
NOTHING_TO_CHECK = 3


def _dates(dates: list[str], start: str | None, end: str | None) -> list[date]:
    if dates and (start or end):
        raise ShopflowError("give --date, or --start/--end, not both")
    if dates:
        return sorted({parse_date(d) for d in dates})
    if not (start and end):
        raise ShopflowError("give the dates to check: --date D (repeatable) or --start D --end D")
    first, last = parse_date(start), parse_date(end)
    if last < first:
        raise ShopflowError(f"--end {last} is before --start {first}")
    days = (last - first).days + 1
    if days > MAX_DATES:
        raise ShopflowError(f"--start..--end spans {days:,} dates; check at most {MAX_DATES}")
    return [first + timedelta(days=n) for n in range(days)]


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def print_report(report: QualityReport, console: Console) -> None:
    """The results as one table, failures first."""
    table = Table(title=f"quality checks, {report.span}", title_justify="left")
    for name, justify in (
        ("check", "left"),
        ("table", "left"),
        ("partition", "left"),
        ("severity", "left"),
        ("observed", "right"),
        ("threshold", "right"),
        ("result", "left"),
        ("detail", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in sorted(report.results, key=lambda r: (r.passed, r.severity.value != "error")):
        verdict = "pass" if r.passed else ("FAIL" if r.severity == "error" else "warn")
        table.add_row(
            r.check_name,
            r.table_name,
            str(r.partition or "-"),
            r.severity.value,
            _cell(r.observed),
            _cell(r.threshold),
            verdict,
            r.detail,
        )
    console.print(table)


def quality(
    dates: Annotated[
        list[str], typer.Option("--date", help="Check this UTC date (YYYY-MM-DD); repeatable.")
    ] = [],  # noqa: B006 - Typer reads the default; it is never mutated
    start: Annotated[str | None, typer.Option("--start", help="First date to check.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last date to check (included).")] = None,
) -> None:
    """Run the data-quality checks over the curated partitions of the dates, print every result,
    and append them to the warehouse's `quality_results`. Exits 2 with one line naming the first
    failed error-severity check when one failed (what would stop a load); exits 3 with one line,
    recording nothing, when none of the dates has curated data (nothing to check)."""
    settings = load_settings()
    days = _dates(dates, start, end)
    curated = f"{LakeLayout.from_settings(settings).root}/curated"
    present = set(curated_dates(settings))
    if not present:
        _nothing_to_check(f"no curated data in {curated}")
    absent = [d for d in days if d not in present]
    if len(absent) == len(days):
        _nothing_to_check(f"no curated data for {_span(absent)} in {curated}")
    if absent:
        typer.echo(f"no curated data for {_span(absent)}: not checked")
    report = run_checks(settings, [d for d in days if d in present])
    record_results(settings, report)
    print_report(report, Console(width=200))
    if report.errors:
        raise QualityGateError(report.failure_message())
    typer.echo(f"{report.failure_message()} ({len(report.warnings)} warnings)")


def _span(days: list[date]) -> str:
    return ", ".join(d.isoformat() for d in days[:5]) + (
        f" and {len(days) - 5} more dates" if len(days) > 5 else ""
    )


def _nothing_to_check(why: str) -> None:
    typer.echo(f"shopflow: nothing to check: {why}", err=True)
    raise typer.Exit(NOTHING_TO_CHECK)


def register(app: typer.Typer) -> None:
    """Add `quality` to the top-level app."""
    app.command("quality")(quality)
