"""ETL jobs: read the raw zone, run the pure transforms, replace curated partitions whole.

The same `run_etl` runs in-process (tests, `shopflow etl|backfill`) and as the spark-submit main
file (`python -m shopflow.transform.entrypoint`, hence Dataproc).

What a run recomputes (`EtlRequest`):

* `etl` (incremental): every event date of the raw event files committed since the last run (the
  lake's commit logs, `shopflow.transform.changes`: no file times, no listing of the raw zone),
  each such date's next date when it has events (a late event before midnight can move the start
  of a session that crosses into it), plus the dates of `--hour` or `--since/--until` when given.
  The state record `_state/etl_hourly.json` keeps the last commit record read per raw source; it
  advances only after every output is written. The first run processes everything. A date's raw
  events are the files its manifest names; other files found in its folders are reported.
* `backfill`: exactly the given dates, whatever the state (which it leaves alone).

The unit of recomputation is a whole event date, read with the previous date as session context
(sessions crossing midnight keep their id): deduplication is per event id, and every copy of an
event lands in the partition of its `event_ts`, so one date's output depends only on the raw
events of that date and the one before. Orders, products and users are small pulls, read whole.

Curated layout (`curated/<table>/...`, one `part-00000.parquet` per partition, replaced atomically
through `replace_partition`; partition columns live in the path only, as Spark writes them):

* `events_clean/date=D/hour=HH/`, `traffic_hourly/date=D/hour=HH/`: the hours of each recomputed
  date that have events; an hour or date a recompute leaves without events is deleted (in the
  warehouse too, when the load is given the recomputed dates).
* `traffic_daily/date=D/`, `user_behavior/date=D/`: each recomputed date.
* `product_activity_daily/date=D/`, `user_activity_daily/date=D/`, `order_activity_daily/date=D/`:
  per event date, what each product, user and order did (`shopflow.transform.activity`), written
  for each recomputed date (a user's `sessions_started` looks at the previous date's curated
  events). Dates with curated events but no such partition yet (a lake older than these tables)
  are filled once from their curated events.
* `orders_enriched/date=D/` (order date) and `order_reconciliation/date=D/`: computed over all
  orders, the reconciliation with every date of `order_activity_daily` (one row per order and
  date, not every event); only the partitions whose rows changed are rewritten, so a status update
  of an old order reaches its date without rewriting every date.
* `products_history/`, `users_history/`: every version of each product and user the catalogue
  pulls saw (valid from/to, `shopflow.transform.history`), what `user_behavior` takes names from.
* `products_clean/`, `users_enriched/`, `category_summary/`: whole-table snapshots, one file
  `curated/<table>/part-00000.parquet` at the table root, rewritten every run; the last two sum
  every date of `user_activity_daily` / `product_activity_daily` (not every event), so their cost
  grows with users and products times active days. They have no partition folder because their
  own `date` column (listing / sign-up date) would clash with a `date=` partition; read the folder
  (or the file) as a plain Parquet dataset.
* `deadletter/events_etl/date=D/part-00000.parquet`: raw events of raw partition date D that
  failed a contract check in staging, with their `reason`; replaced whole with the date.

Engine: `run_etl` takes a Spark session or a SQLFrame DuckDB session
(`shopflow.transform.engine.open_etl_session`) and runs the same code on either. The transforms are
taken from `engine.transforms(session)` (the copy bound to that engine), column expressions of the
job's own use that copy's `functions`, and inputs are read only through the engine module's
`read_parquet`, `create_dataframe`, `materialize` and `release`. Outputs go through
`shopflow.transform.outputs`: DuckDB collects them as Arrow, Spark writes them from its executors
into the run's staging prefix (`_staging/<run>/`, removed when the run ends, and at the start of
the next run if it was killed); either way the driver commits each partition atomically, on a
background thread while the engine computes the next output. See docs/engines.md.

Where things are: the request and the run's result in `transform.requests`, which dates a run
recomputes in `transform.planning`, the table names and read schemas in `transform.curated_tables`,
reading and committing partitions in `transform.lake_io`; this module is the run itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shopflow.contracts import (
    RAW_ORDER_SCHEMA,
    RAW_PRODUCT_SCHEMA,
    RAW_USER_SCHEMA,
    event_bounds,
)
from shopflow.lake import (
    LakeLayout,
    StateStore,
    list_partitions,
    remove_stale_temp_files,
    writer_lock,
)
from shopflow.lake.staging import remove_staging
from shopflow.settings import Settings
from shopflow.transform import engine
from shopflow.transform.changes import raw_event_files
from shopflow.transform.compositions import activity_tables, dated, reject_rows, staged_events
from shopflow.transform.curated_tables import (
    ACTIVITY_TABLES,
    CURATED_TABLES,
    HOURLY_TABLES,
    REJECTS_SOURCE,
    STATE_NAME,
    DataFrame,
    Keys,
)
from shopflow.transform.engine import transforms
from shopflow.transform.lake_io import (
    BackgroundCommits,
    existing_partition_keys,
    extract_activity,
    extract_curated_events,
    extract_pulls,
    extract_raw_events,
)
from shopflow.transform.outputs import (
    DAILY,
    HOURLY,
    Output,
    compute_output,
    write_changed_output,
    write_output_partitions,
    write_output_rejects,
    write_output_snapshot,
)
from shopflow.transform.planning import (
    accepted_event_dates,
    plan_run,
    screen_pulls,
    screen_raw_events,
)
from shopflow.transform.requests import (
    EtlRequest,
    EtlRun,
    backfill_request,
    etl_request,
)


def _dates_without_activity(layout: LakeLayout) -> list[date]:
    """Dates of curated events that lack a partition of some activity table."""
    events = {p.date for p in list_partitions(layout.curated_root("events_clean")) if p.date}
    missing: set[date] = set()
    for name in ACTIVITY_TABLES:
        missing |= events - {p.date for p in list_partitions(layout.curated_root(name))}
    return sorted(missing)


def run_etl(session: Any, settings: Settings, request: EtlRequest) -> EtlRun:
    """Recompute the curated zone for a request; see the module docstring for what and where.

    Holds the lake's writer lock throughout: a concurrent ETL or load refuses to start.
    """
    with writer_lock(settings.lake_url, f"shopflow etl ({request.label})"):
        layout = LakeLayout.from_settings(settings)
        # Under the lock no other ETL writes: any temp file here is a killed run's leftover.
        roots = [layout.curated_root(name) for name in CURATED_TABLES]
        for root in [*roots, layout.deadletter_root(REJECTS_SOURCE)]:
            remove_stale_temp_files(root, older_than=datetime.now(UTC))
        # Likewise any staged output: a killed run's, never committed.
        remove_staging(layout.staging_root())
        run_name = f"etl-{uuid.uuid4().hex[:12]}"
        try:
            return _run_etl(session, settings, request, layout, run_name)
        finally:
            remove_staging(layout.staging_url(run_name))


def _run_etl(
    session: Any, settings: Settings, request: EtlRequest, layout: LakeLayout, run_name: str
) -> EtlRun:
    started = time.monotonic()
    state = StateStore(settings)
    plan = plan_run(layout, state, request, accepted_event_dates(settings))
    run = EtlRun(label=request.label, dates=plan.dates, skipped=[*plan.skipped])
    context = sorted({d - timedelta(days=1) for d in plan.dates} | set(plan.dates))
    raw_files = raw_event_files(layout, context)
    run.uncommitted = list(raw_files.uncommitted)
    run.missing = [*plan.missing_records, *raw_files.missing]
    run.adopted = plan.adopted
    run.quarantined += screen_raw_events(layout, raw_files.committed)
    run.quarantined += screen_pulls(layout)
    moved = {q.url for q in run.quarantined}
    event_files = [url for url in raw_files.committed if url not in moved]
    if not plan.dates and not plan.new_pulls:
        run.seconds = time.monotonic() - started
        return run

    t = transforms(session)
    staged_outputs = 0

    def compute(name: str, df: DataFrame, partition_by: Sequence[str]) -> Output:
        # Spark writes each output into its own staging folder of this run (DuckDB: collects).
        nonlocal staged_outputs
        staged_outputs += 1
        staging = layout.staging_url(run_name, f"{name.replace('/', '_')}_{staged_outputs}")
        return compute_output(df, staging, partition_by)

    def record(name: str, urls: list[str], rows: int) -> None:
        run.partitions[name] = [*run.partitions.get(name, []), *urls]
        run.rows[name] = run.rows.get(name, 0) + rows

    def write_later(
        commits: BackgroundCommits,
        name: str,
        output: Output,
        keys: Keys,
        *,
        delete: bool = False,
        rows: int | None = None,
    ) -> None:
        # `delete`: a partition left without rows is deleted rather than written empty.
        commits.submit(
            name,
            output.rows if rows is None else rows,
            lambda: write_output_partitions(output, name, layout, keys, delete_empty=delete),
        )

    def write_activity(
        commits: BackgroundCommits,
        activity: dict[str, DataFrame],
        dates: Sequence[date],
        with_events: set[date],
    ) -> None:
        # Every date's partition is replaced, an empty one too (a date with events but no order
        # has an empty order activity); a date left without events loses its partitions.
        keys = [(day, None) for day in dates]
        for name, df in activity.items():
            output = compute(name, df, DAILY)
            write_later(commits, name, output, [k for k in keys if k[0] in with_events])
            gone = [k for k in keys if k[0] not in with_events]
            if gone:
                # No rows of these dates in `output` (it comes from their events): deleted.
                write_later(commits, name, output, gone, delete=True, rows=0)

    # Released however the run ends: a failed run must not leave tables in a long-lived session.
    cached: list[DataFrame] = []
    try:
        raw_products = extract_pulls(session, layout, "products", RAW_PRODUCT_SCHEMA)
        products = engine.materialize(t.products.products_clean(raw_products))
        cached.append(products)
        raw_users = extract_pulls(session, layout, "users", RAW_USER_SCHEMA)
        users = engine.materialize(t.users.users_clean(raw_users))
        cached.append(users)
        # Names as of each event's time (type-2 history from every pull).
        products_history = engine.materialize(t.products.products_history(raw_products))
        cached.append(products_history)
        users_history = engine.materialize(t.users.users_history(raw_users))
        cached.append(users_history)

        # Each output is written while the engine computes the next; the block waits for the writes
        # before anything below reads the curated zone.
        with BackgroundCommits(record) as commits:
            if plan.dates:
                dates = plan.dates

                # Staged once: both the dead letters and the clean events come from it.
                def stage() -> DataFrame:
                    raw = extract_raw_events(session, layout, event_files)
                    return engine.materialize(staged_events(t, raw, event_bounds(settings)))

                try:
                    staged = stage()
                except Exception:
                    # A file whose footer is fine but whose pages are not: find it, move it
                    # aside and read again; with none to blame, the failure is not the data's.
                    damaged = screen_raw_events(layout, event_files, deep=True)
                    if not damaged:
                        raise
                    run.quarantined += damaged
                    gone = {q.url for q in damaged}
                    event_files = [url for url in event_files if url not in gone]
                    staged = stage()
                cached.append(staged)
                rejects = compute(REJECTS_SOURCE, reject_rows(t, staged, dates), DAILY)
                run.rejected_events = rejects.rows
                commits.submit(
                    f"deadletter/{REJECTS_SOURCE}",
                    rejects.rows,
                    lambda: write_output_rejects(rejects, layout, dates),
                )

                clean = engine.materialize(
                    dated(t, t.events.events_clean_from_staged(staged), dates)
                )
                cached.append(clean)
                activity = activity_tables(t, clean)
                outputs = {
                    "events_clean": clean,
                    "traffic_hourly": t.traffic.traffic_hourly(clean),
                    "traffic_daily": t.traffic.traffic_daily(clean),
                    "user_behavior": t.user_behavior.user_behavior(
                        clean, products_history, users_history
                    ),
                }
                with_rows: set[date] = set()
                for name, df in outputs.items():
                    hourly = name in HOURLY_TABLES
                    output = compute(name, df, HOURLY if hourly else DAILY)
                    # Every partition of a recomputed date: the new ones, and the old ones a
                    # recompute left without rows (deleted, not kept with stale rows).
                    keys = sorted(
                        set(output.keys(hourly))
                        | set(existing_partition_keys(layout, name, dates))
                        | ({(d, None) for d in dates} if not hourly else set())
                    )
                    if name == "events_clean":
                        with_rows = {d for d, _ in output.keys(hourly)}
                    write_later(commits, name, output, keys, delete=True)
                write_activity(commits, activity, dates, with_rows)

        missing = _dates_without_activity(layout)
        if missing:
            stored = engine.materialize(extract_curated_events(session, layout, missing))
            cached.append(stored)
            with BackgroundCommits(record) as commits:
                activity = activity_tables(t, stored)
                write_activity(commits, activity, missing, set(missing))

        orders = engine.materialize(
            t.orders.orders_enriched(
                t.orders.dedup_order_lines(
                    extract_pulls(session, layout, "orders", RAW_ORDER_SCHEMA)
                ),
                products,
            )
        )
        cached.append(orders)
        record(
            "orders_enriched",
            *write_changed_output(
                session, orders, "orders_enriched", layout,
                layout.staging_url(run_name, "orders_enriched"),
            ),
        )  # fmt: skip

        # Reconciliation and the snapshots cover all dates: from the activity tables, not the events.
        activity = {name: extract_activity(session, layout, name) for name in ACTIVITY_TABLES}
        recon = t.reconciliation.order_reconciliation_from_daily(
            activity["order_activity_daily"], orders
        )
        record(
            "order_reconciliation",
            *write_changed_output(
                session, recon, "order_reconciliation", layout,
                layout.staging_url(run_name, "order_reconciliation"),
            ),
        )  # fmt: skip
        snapshots = {
            "products_clean": products,
            "products_history": products_history,
            "users_history": users_history,
            "users_enriched": t.users.users_enriched_from_daily(
                users, activity["user_activity_daily"], orders
            ),
            "category_summary": t.products.category_summary_from_daily(
                products, activity["product_activity_daily"], orders
            ),
        }
        for name, df in snapshots.items():
            output = compute(name, df, ())
            record(name, [write_output_snapshot(output, name, layout)], output.rows)
    finally:
        for df in cached:
            engine.release(df)
    if request.incremental:
        # Only now: a run that failed above is redone in full by the next one. The store remembers
        # the version plan_run read, so a concurrent run makes this raise instead of going back.
        state.put(
            STATE_NAME,
            {
                "commits": plan.cursors,
                "dates": [d.isoformat() for d in plan.dates],
                "finished_at": datetime.now(UTC).isoformat(),
            },
        )
    run.seconds = time.monotonic() - started
    return run


def run_hourly_etl(session: Any, settings: Settings, hours: Sequence[datetime]) -> EtlRun:
    """Recompute the event dates of `hours` (UTC hour starts) and whatever is new since last run."""
    dates = tuple(sorted({h.astimezone(UTC).date() for h in hours}))
    return run_etl(session, settings, EtlRequest(dates, label="hours"))


__all__ = [
    "ACTIVITY_TABLES",
    "CURATED_TABLES",
    "REJECTS_SOURCE",
    "EtlRequest",
    "EtlRun",
    "backfill_request",
    "etl_request",
    "extract_curated_events",
    "extract_pulls",
    "run_etl",
    "run_hourly_etl",
]
