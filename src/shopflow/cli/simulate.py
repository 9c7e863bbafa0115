"""`shopflow simulate` and `shopflow seed`."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from shopflow.errors import ShopflowError
from shopflow.settings import load_settings
from shopflow.simulator.config import DEFAULT_START, DirtConfig, SimulationConfig
from shopflow.simulator.publish import publish_simulation, seed_shop
from shopflow.simulator.records import GroundTruth
from shopflow.simulator.shop import ShopSimulator

_SEED_HELP = "Random seed; the same seed gives the same shop and events. Default: SHOPFLOW_SEED."
_USERS_HELP = "Users signed up before the simulation starts."


def _parse_start(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ShopflowError(
            f"--start {text!r} is not an ISO-8601 date or time, e.g. 2026-11-01 or 2026-11-01T06:00Z"
        ) from None
    try:
        start = (start if start.tzinfo is not None else start.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ShopflowError(f"--start {text!r} is outside the calendar in UTC") from None
    settings = load_settings()
    if start > datetime.now(UTC):
        raise ShopflowError(
            f"--start {text!r} is in the future: landing dead-letters events later than their "
            "ingest time (SHOPFLOW_EVENT_MAX_FUTURE_SECONDS)"
        )
    if start < settings.event_min_ts:
        raise ShopflowError(
            f"--start {text!r} is before SHOPFLOW_EVENT_MIN_TS "
            f"({settings.event_min_ts.isoformat()}): landing would dead-letter every event"
        )
    return start


def seed(
    seed_value: int | None = typer.Option(None, "--seed", min=0, help=_SEED_HELP),
    users: int = typer.Option(5_000, "--users", min=1, help=_USERS_HELP),
) -> None:
    """Create the shop database schema and load the Flipkart catalogue and the initial users."""
    settings = load_settings()
    config = SimulationConfig(
        seed=settings.seed if seed_value is None else seed_value, initial_users=users
    )
    report = seed_shop(settings, ShopSimulator(config))
    typer.echo(
        f"seeded the shop DB: {report.catalogue_products:,} catalogue products "
        f"({report.products:,} inserted or changed), {report.initial_users:,} users "
        f"({report.users:,} inserted or changed)"
    )


def simulate(
    events: int = typer.Option(10_000, "--events", min=0, help="Distinct valid events to make."),
    seed_value: int | None = typer.Option(None, "--seed", min=0, help=_SEED_HELP),
    rate: float | None = typer.Option(
        None, "--rate", min=0.001, help="Publish at most this many payloads per second."
    ),
    dirt: bool = typer.Option(
        True,
        "--dirt/--no-dirt",
        help="Add duplicate, late and malformed deliveries and catalogue changes.",
    ),
    start: str = typer.Option(
        DEFAULT_START.strftime("%Y-%m-%dT%H:%MZ"),
        "--start",
        help="Simulated time of the first window (ISO-8601; UTC unless a zone is given); not in the future, and events simulated past now are dead-lettered by landing.",
    ),
    events_per_day: int = typer.Option(
        50_000, "--events-per-day", min=1, help="Average events per simulated day."
    ),
    users: int = typer.Option(5_000, "--users", min=1, help=_USERS_HELP),
) -> None:
    """Publish simulated events to the bus, post order lines to the orders API and upsert
    catalogue changes into the shop DB (seeding it first); ends with a summary line."""
    settings = load_settings()
    config = SimulationConfig(
        seed=settings.seed if seed_value is None else seed_value,
        events=events,
        start=_parse_start(start),
        events_per_day=events_per_day,
        initial_users=users,
        dirt=DirtConfig() if dirt else DirtConfig.clean(),
    )
    console = Console(stderr=True)
    if not console.is_terminal:
        report = publish_simulation(settings, config, rate_per_second=rate)
    else:
        with Progress(
            TextColumn("[bold]simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("events", total=events)

            def advance(truth: GroundTruth) -> None:
                progress.update(task, completed=truth.valid_events)

            report = publish_simulation(settings, config, rate_per_second=rate, on_progress=advance)
    typer.echo(report.summary_line())


def register(app: typer.Typer) -> None:
    """Add the simulator's commands to the top-level app."""
    app.command("seed")(seed)
    app.command("simulate")(simulate)
