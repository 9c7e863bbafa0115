"""The hourly ETL (`shopflow.transform.jobs.run_etl`) on ~1M simulated events, and its growth with history.

Set-up (not timed): the simulator runs for `days` + 1 days of simulated time at `events / days`
events a day; each 10-minute delivery window is landed by the landing consumer's own
`stage_batch`/`write_batch` (no bus): one raw file per window and event hour, malformed payloads
to `deadletter/events/`. Order lines, products and users are written as pull files. Files delivered before the *new hour* are history;
the files delivered during the new hour (on time, late and duplicate deliveries alike) are held
back. Two lakes are built from the same files: one with 1 day of history, one with `days` days.

Cases, each in a fresh spawned process (like a cron/Airflow task: interpreter, JVM start, ETL,
shutdown), timed from the spawn to the process's result:

* `full-<N>d`: the first `shopflow etl` run on a lake with N days of history (every date).
* `hourly-<N>d`: after the first run, the new hour's files land, then one incremental
  `shopflow etl` run (what the hourly DAG does).

Peak RSS is the process *tree* (the Python driver plus the Spark JVM it launches): the largest sum
of the tree's VmRSS, sampled every 0.2 s.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from bench._etl_run import TimedEtl, time_etl_run
from bench._harness import BenchContext, BenchResult, Row, benchmark, run_isolated
from bench._simulated import land_window
from shopflow.contracts import (
    RAW_ORDER_SCHEMA,
    RAW_PRODUCT_SCHEMA,
    RAW_USER_SCHEMA,
)
from shopflow.lake import LakeLayout, write_parquet_atomic
from shopflow.lake.commit_log import register_files
from shopflow.settings import Settings, load_settings
from shopflow.simulator import ShopSimulator, SimulationConfig

DEFAULT_EVENTS: Final = 1_000_000
QUICK_EVENTS: Final = 14_000
DEFAULT_DAYS: Final = 7
WINDOW_MINUTES: Final = 10
MIB: Final = 1024**2
_OLD: Final = timedelta(hours=2)


# ---------------------------------------------------------------------------------------------
# The ETL runs (in a child process)


# ---------------------------------------------------------------------------------------------
# Data set-up (not timed)


@dataclass(frozen=True, slots=True)
class Generated:
    """The files made: history per day count, the new hour's files, and event counts."""

    new_hour: datetime
    history_events: dict[int, int]
    new_events: int
    payloads: int


def _pull(
    layout: LakeLayout,
    source: str,
    rows: list[dict[str, Any]],
    schema: pa.Schema,
    cursor_from: datetime | None,
    cursor_to: datetime,
) -> str:
    url = layout.pull_file(source, cursor_from, cursor_to)
    write_parquet_atomic(pa.Table.from_pylist(rows, schema), url)
    register_files(layout, source, [url])
    return url


def generate(scratch: Path, events: int, days: int, seed: int) -> Generated:
    """Simulate and write: `scratch/full` (all history), `scratch/new` (the new hour's files)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    new_hour = start + timedelta(days=days)
    end = new_hour + timedelta(hours=1)
    config = SimulationConfig(
        seed=seed,
        # A budget the clock never reaches: the loop stops at the end of the new hour.
        events=events * 2,
        start=start,
        events_per_day=events // days,
        batch_minutes=WINDOW_MINUTES,
    )
    simulator = ShopSimulator(config)
    full = LakeLayout(str(scratch / "full" / "lake"))
    new = LakeLayout(str(scratch / "new" / "lake"))
    per_day: dict[date, int] = defaultdict(int)
    new_events = payloads = 0
    orders: list[dict[str, Any]] = []
    new_orders: list[dict[str, Any]] = []
    products = [
        {**asdict(p), "updated_at": start, "ingest_ts": start} for p in simulator.initial_products()
    ]
    users = [
        {**asdict(u), "updated_at": start, "ingest_ts": start} for u in simulator.initial_users()
    ]
    for batch in simulator.batches():
        if batch.window_start >= end:
            break
        is_new = batch.window_start >= new_hour
        payloads += len(batch.deliveries)
        staged, _ = land_window(new if is_new else full, batch)
        for day, count in Counter(event.date for event, _ in staged.events).items():
            if is_new:
                new_events += count
            else:
                per_day[day] += count
        lines = [
            {
                "order_id": line.order_id,
                "product_id": line.product_id,
                "user_id": line.user_id,
                "date": line.order_ts.date(),
                "order_ts": line.order_ts,
                "quantity": line.quantity,
                "unit_price_inr": line.unit_price_inr,
                "status": line.status,
                "updated_at": batch.window_end,
                "ingest_ts": batch.window_end,
            }
            for line in batch.order_lines
        ]
        (new_orders if is_new else orders).extend(lines)
        if not is_new:
            stamp = {"updated_at": batch.window_start, "ingest_ts": batch.window_end}
            products += [{**asdict(p), **stamp} for p in batch.products]
            users += [{**asdict(u), **stamp} for u in batch.users]
    _pull(full, "orders", orders, RAW_ORDER_SCHEMA, None, new_hour)
    _pull(full, "products", products, RAW_PRODUCT_SCHEMA, None, new_hour)
    _pull(full, "users", users, RAW_USER_SCHEMA, None, new_hour)
    _pull(new, "orders", new_orders, RAW_ORDER_SCHEMA, new_hour, end)
    last = sorted(per_day)
    history = {n: sum(per_day[d] for d in last[-n:]) for n in (1, days)}
    return Generated(new_hour, history, new_events, payloads)


def _copy_tree(
    source: Path, target: Path, *, keep_days: set[date] | None, mtime: float | None
) -> None:
    """Copy raw files (events of `keep_days` only, when given; pulls always) into `target`."""
    for path in sorted(source.rglob("*.parquet")):
        relative = path.relative_to(source)
        parts = dict(p.split("=", 1) for p in relative.parts if "=" in p)
        is_event_file = "events" in relative.parts and "date" in parts
        if (
            keep_days is not None
            and is_event_file
            and date.fromisoformat(parts["date"]) not in keep_days
        ):
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        if mtime is not None:
            os.utime(destination, (mtime, mtime))


def lake_settings(base: Settings, home: Path) -> Settings:
    """Settings whose lake and state live under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    return base.model_copy(update={"home": home, "lake_root": str(home / "lake")})


# ---------------------------------------------------------------------------------------------
# The benchmark


def _timed(settings: Settings) -> tuple[float, TimedEtl, int]:
    started = time.perf_counter()
    isolated = run_isolated(time_etl_run, settings)
    return time.perf_counter() - started, isolated.value, isolated.peak_rss_bytes


def _row(
    case: str,
    params: dict[str, object],
    items: int,
    timed: tuple[float, TimedEtl, int],
) -> Row:
    wall, outcome, python_peak = timed
    days = ", ".join(d.isoformat() for d in outcome.run.dates)
    return Row(
        case=case,
        params=params,
        wall_seconds=wall,
        items=items,
        unit="events",
        peak_rss_bytes=outcome.tree_peak_rss_bytes,
        notes=(
            f"session {outcome.session_seconds:.1f}s + run_etl {outcome.etl_seconds:.1f}s; "
            f"recomputed dates {days}; {outcome.run.rows.get('events_clean', 0):,} events_clean rows written, "
            f"{outcome.run.partitions_written} partition files; Python driver alone "
            f"{python_peak / MIB:.0f} MiB"
        ),
    )


@benchmark(
    "etl",
    title="Hourly ETL on ~1M events, and its growth with history",
    description=__doc__ or "",
)
def run(ctx: BenchContext) -> BenchResult:
    """Generate the lakes, then time the first run and one incremental hour for 1 and N days."""
    events = ctx.int_param("events", DEFAULT_EVENTS, QUICK_EVENTS)
    days = ctx.int_param("days", DEFAULT_DAYS, DEFAULT_DAYS)
    seed = ctx.int_param("seed", 42, 42)
    engines = ctx.list_param("engines", ("duckdb", "spark"))
    base = load_settings(spark_master="local[2]", spark_driver_memory="2g")
    started = time.perf_counter()
    generated = generate(ctx.scratch, events, days, seed)
    setup_seconds = time.perf_counter() - started
    day_list = sorted(
        date.fromisoformat(p.name.split("=", 1)[1])
        for p in (ctx.scratch / "full" / "lake" / "raw" / "events").glob("date=*")
    )
    old = time.time() - _OLD.total_seconds()
    rows: list[Row] = []
    for engine in engines:
        for history in (1, days):
            settings = lake_settings(
                base.model_copy(update={"etl_engine": engine}),
                ctx.scratch / f"lake-{engine}-{history}d",
            )
            keep = set(day_list[-history:])
            _copy_tree(
                ctx.scratch / "full" / "lake", Path(settings.lake_url), keep_days=keep, mtime=old
            )
            first = _timed(settings)
            params: dict[str, object] = {"engine": engine, "history_days": history}
            rows.append(
                _row(f"{engine}: full-{history}d", params, generated.history_events[history], first)
            )
            # The new hour lands (fresh modification times), then the hourly run.
            _copy_tree(
                ctx.scratch / "new" / "lake", Path(settings.lake_url), keep_days=None, mtime=None
            )
            hourly = _timed(settings)
            rows.append(_row(f"{engine}: hourly-{history}d", params, generated.new_events, hourly))
    return BenchResult(
        rows=rows,
        settings={
            "simulated events (history)": f"{generated.history_events[days]:,} over {days} days "
            f"({events // days:,}/day); 1-day lake: {generated.history_events[1]:,}",
            "new hour": f"{generated.new_hour:%Y-%m-%d %H:00} UTC, {generated.new_events:,} "
            "events delivered in it (incl. late/duplicate deliveries)",
            "payloads simulated": f"{generated.payloads:,} (default dirt)",
            "raw file layout": f"one file per {WINDOW_MINUTES}-minute delivery window and event hour",
            "engines": ", ".join(engines),
            "Spark": f"{base.spark_master}, driver memory {base.spark_driver_memory}",
            "set-up (simulate + write, not timed)": f"{setup_seconds:.0f}s",
        },
        notes=(
            "wall s: from spawning a fresh Python process to its result, so interpreter start, "
            "imports, JVM start, the ETL and Spark shutdown are all included. Throughput is events "
            "in the lake (full-*) or events delivered in the new hour (hourly-*) per wall second.",
            "peak RSS: the largest sum of VmRSS over the process tree (Python driver + Spark JVM), "
            "sampled every 0.2 s.",
        ),
    )
