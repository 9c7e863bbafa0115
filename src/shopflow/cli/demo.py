"""`shopflow demo`: the whole pipeline on one machine, end to end."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shopflow.settings import load_settings

DEFAULT_EVENTS = 100_000


def demo(
    events: Annotated[
        int, typer.Option("--events", min=100, help="Valid events to simulate.")
    ] = DEFAULT_EVENTS,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Simulator seed.")] = 42,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine", help="ETL engine for this run: spark or duckdb (default: setting)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics and the dirt summary as JSON.")
    ] = False,
) -> None:
    """From an empty SHOPFLOW_HOME: start services, seed the shop, publish simulated events, land
    them, ingest orders and catalogue, run the ETL, load the warehouse and print the metrics."""
    from shopflow.cli.warehouse import print_metrics
    from shopflow.orchestration.demo import run_demo

    overrides: dict[str, object] = {"etl_engine": engine} if engine else {}
    settings = load_settings(**overrides)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("publishing simulated events", total=events)

        def on_step(name: str) -> None:
            console.print(f"[green]done[/green] {name}")
            if name == "shop seeded, events published":
                progress.update(task, completed=events, description="published")

        def on_published(count: int) -> None:
            progress.update(task, completed=min(count, events))

        report = run_demo(
            settings, events=events, seed=seed, on_step=on_step, on_published=on_published
        )
    assert report.dirt is not None
    if as_json:
        body = {
            "metrics": report.metrics,
            "dirt": {
                **{k: getattr(report.dirt, k) for k in report.dirt.__dataclass_fields__},
                "duplicates_removed": report.dirt.duplicates_removed,
            },
            "steps_seconds": report.steps,
            "seconds": report.seconds,
        }
        typer.echo(json.dumps(body, default=str, indent=1))
        return
    print_metrics(report.metrics, limit=5)
    out = Console()
    out.print(f"[bold]{report.published.summary_line()}[/bold]")
    for line in report.dirt.lines():
        out.print(f"caught: {line}")
    for name, seconds in report.steps.items():
        out.print(f"  {name:<32} {seconds:6.1f} s")
    out.print(f"demo finished in {report.seconds:.1f} s (ETL engine: {settings.etl_engine})")
    out.print(
        "dashboard: run `shopflow dashboard`, then open http://127.0.0.1:8501 "
        f"(warehouse: {settings.home / 'warehouse.duckdb'})"
    )


def register(app: typer.Typer) -> None:
    """Add `demo` to the top-level app."""
    app.command("demo")(demo)
