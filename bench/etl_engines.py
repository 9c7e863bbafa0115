"""The ETL on each engine (Spark, DuckDB through SQLFrame) and against hand-written DuckDB SQL.

Set-up (not timed, cached): the simulator runs until N valid events are made, at N / `days`
events a simulated day (default dirt: duplicate, late and malformed deliveries, catalogue churn).
Each 60-minute delivery window is landed by the landing consumer's own `stage_batch`/`write_batch`
(no bus): one raw event file per window and event hour with the landing columns (`message_id`,
`publish_ts`, `ingest_ts`), malformed payloads to `deadletter/events/`. Order lines, products and
users are written as one pull each. The raw zone is written once per (events, days, seed) under
`<SHOPFLOW_HOME>/bench/etl-engines/` (or `--param cache=DIR`) and reused by later runs; each case
gets a fresh lake whose `raw` is a symbolic link to it.

Cases, each in a fresh spawned process, timed from the spawn to the process's result (interpreter
start, imports, engine start, the work, shutdown):

* `spark`: `run_etl` (the first, full run: every date) on Spark `local[2]`, driver memory 4g up
  to 1M events and 16g above (sizes from when the job collected each output to the driver, kept
  so rows stay comparable; in local[2] that JVM is also the executor that caches the staged
  events). `--param spark_memory=2g` sets one size for every run.
* `duckdb`: the same `run_etl` on an in-process DuckDB through SQLFrame.
* `sql-baseline`: the same work hand-written in DuckDB SQL, in one connection: staging checks and
  rejects, dedup by `event_id` (first landed wins), 30-minute sessionisation with window
  functions (client `session_id` kept), latest product and user per key, order lines deduplicated
  and priced, then written as Parquet: `events_clean` (by date and hour), `traffic_hourly`,
  `traffic_daily`, `user_behavior` (joined to products and users, by date), `orders_enriched`,
  spend per session (per user and overall) and top products. It computes fewer outputs than
  `run_etl` (no reconciliation, category summary or users_enriched) and commits nothing
  atomically, so it is a lower bound for the job, not an equal.

A case that fails (its process raises or dies) becomes a row whose notes say `FAILED:` and the
error's last line; the other cases still run and are reported.

Peak RSS is the process tree's (the Python process plus the Spark JVM it launches): the largest
sum of VmRSS over the tree, sampled every 0.2 s.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from bench._etl_run import time_etl_run
from bench._harness import BenchContext, BenchResult, IsolatedError, Row, benchmark, run_isolated
from bench._memory import TreeRssSampler
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

DEFAULT_SIZES: Final = ("1000000", "10000000")
QUICK_SIZES: Final = ("20000",)
DEFAULT_CASES: Final = ("spark", "duckdb", "sql-baseline")
#: (up to N events, Spark driver memory) of the Spark case, first match.
SPARK_MEMORY_BY_SIZE: Final = ((1_000_000, "4g"), (10**12, "16g"))
DEFAULT_DAYS: Final = 7
WINDOW_MINUTES: Final = 60
START: Final = datetime(2026, 11, 1, tzinfo=UTC)
MIB: Final = 1024**2
_COMPLETE: Final = "_complete.json"


# ---------------------------------------------------------------------------------------------
# The raw zone


@dataclass(frozen=True, slots=True)
class RawZone:
    """A written raw zone: its lake root and what the simulator put in it."""

    lake: str
    valid_events: int
    deliveries: int
    landed_rows: int
    malformed_skipped: int
    order_lines: int
    event_files: int
    days: int
    seed: int
    setup_seconds: float


def write_raw_zone(
    lake: Path, events: int, *, seed: int = 42, days: int = DEFAULT_DAYS, initial_users: int = 0
) -> RawZone:
    """Simulate `events` valid events over about `days` days and write them as a raw zone."""
    started = time.perf_counter()
    config = SimulationConfig(
        seed=seed,
        events=events,
        start=START,
        events_per_day=max(1, events // days),
        batch_minutes=WINDOW_MINUTES,
        initial_users=initial_users or max(1000, min(200_000, events // 50)),
    )
    simulator = ShopSimulator(config)
    layout = LakeLayout(str(lake))
    products = [
        {**asdict(p), "updated_at": START, "ingest_ts": START} for p in simulator.initial_products()
    ]
    users = [
        {**asdict(u), "updated_at": START, "ingest_ts": START} for u in simulator.initial_users()
    ]
    orders: list[dict[str, Any]] = []
    deliveries = landed = malformed = files = 0
    last = START
    for batch in simulator.batches():
        ingest_ts = batch.window_end
        last = max(last, ingest_ts)
        _, report = land_window(layout, batch)
        deliveries += report.read
        landed += report.written
        malformed += report.deadlettered
        files += sum("/raw/events/" in url for url in report.files)
        orders += [
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
        products += [
            {**asdict(p), "updated_at": batch.window_start, "ingest_ts": ingest_ts}
            for p in batch.products
        ]
        users += [
            {**asdict(u), "updated_at": batch.window_start, "ingest_ts": ingest_ts}
            for u in batch.users
        ]
    for source, pulled, schema in (
        ("orders", orders, RAW_ORDER_SCHEMA),
        ("products", products, RAW_PRODUCT_SCHEMA),
        ("users", users, RAW_USER_SCHEMA),
    ):
        url = layout.pull_file(source, None, last)
        write_parquet_atomic(pa.Table.from_pylist(pulled, schema), url)
        register_files(layout, source, [url])
    return RawZone(
        lake=str(lake),
        valid_events=simulator.truth.valid_events,
        deliveries=deliveries,
        landed_rows=landed,
        malformed_skipped=malformed,
        order_lines=len(orders),
        event_files=files,
        days=days,
        seed=seed,
        setup_seconds=time.perf_counter() - started,
    )


def cached_raw_zone(cache: Path, events: int, *, seed: int, days: int) -> RawZone:
    """The raw zone of (events, days, seed) under `cache`, written on first use."""
    lake = cache.resolve() / f"raw-{events}-d{days}-s{seed}" / "lake"
    marker = lake.parent / _COMPLETE
    if marker.is_file():
        return RawZone(**{**json.loads(marker.read_text()), "lake": str(lake)})
    if lake.parent.exists():
        shutil.rmtree(lake.parent)  # an interrupted earlier write
    zone = write_raw_zone(lake, events, seed=seed, days=days)
    marker.write_text(json.dumps(asdict(zone)))
    return zone


def fresh_lake(zone: RawZone, home: Path) -> Path:
    """A new lake under `home` whose `raw` is the cached raw zone (read-only use)."""
    if home.exists():
        shutil.rmtree(home)
    lake = home / "lake"
    lake.mkdir(parents=True)
    (lake / "raw").symlink_to(Path(zone.lake).resolve() / "raw", target_is_directory=True)
    return lake


# ---------------------------------------------------------------------------------------------
# The cases (each runs in a spawned child)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One case's process: seconds to a session, seconds of the work, rows out, peak tree RSS."""

    session_seconds: float
    work_seconds: float
    events_clean_rows: int
    user_behavior_rows: int
    outputs: int
    tree_peak_rss_bytes: int


def run_engine_case(settings: Settings) -> Outcome:
    """Open the settings' engine and run the first, full `run_etl` (the `shopflow etl` path)."""
    timed = time_etl_run(settings)
    return Outcome(
        session_seconds=timed.session_seconds,
        work_seconds=timed.etl_seconds,
        events_clean_rows=timed.run.rows.get("events_clean", 0),
        user_behavior_rows=timed.run.rows.get("user_behavior", 0),
        outputs=len(timed.run.rows),
        tree_peak_rss_bytes=timed.tree_peak_rss_bytes,
    )


def _raw(lake: str, source: str) -> str:
    glob = f"{lake}/raw/{source}/**/*.parquet"
    return f"read_parquet('{glob}', hive_partitioning = false, union_by_name = true)"


def baseline_sql(lake: str, out: str) -> list[tuple[str, str]]:
    """The hand-written DuckDB SQL of the ETL's core: (name, statement) in execution order."""
    trim_id = "NULLIF(TRIM({0}), '')"
    norm = "NULLIF(TRIM(REGEXP_REPLACE({0}, '\\s+', ' ', 'g')), '')"
    staged = f"""
        CREATE TEMP TABLE staged AS
        SELECT *,
          CASE
            WHEN event_id IS NULL THEN 'missing event_id'
            WHEN event_name IS NULL THEN 'missing event_name'
            WHEN event_name NOT IN ('view', 'wishlist', 'order', 'return')
              THEN 'unknown event_name'
            WHEN product_id IS NULL THEN 'missing product_id'
            WHEN user_id IS NULL THEN 'missing user_id'
            WHEN event_ts IS NULL THEN 'missing event_ts'
            WHEN price IS NULL OR isnan(price) THEN 'missing price'
            WHEN price < 0 THEN 'negative price'
            WHEN event_name IN ('order', 'return') AND order_id IS NULL
              THEN 'order/return event without order_id'
            WHEN event_name NOT IN ('order', 'return') AND order_id IS NOT NULL
              THEN 'view/wishlist event with an order_id'
          END AS reject_reason
        FROM (
          SELECT {trim_id.format("event_id")} AS event_id,
                 LOWER(TRIM(event_name)) AS event_name,
                 {trim_id.format("product_id")} AS product_id,
                 {trim_id.format("user_id")} AS user_id,
                 {trim_id.format("order_id")} AS order_id,
                 price, event_ts,
                 CAST(event_ts AS DATE) AS date, CAST(HOUR(event_ts) AS INTEGER) AS hour,
                 {trim_id.format("session_id")} AS session_id,
                 message_id, publish_ts, ingest_ts
          FROM {_raw(lake, "events")}
        )
    """
    events_clean = """
        CREATE TEMP TABLE events_clean AS
        WITH first_landed AS (
          SELECT * EXCLUDE (reject_reason) FROM staged WHERE reject_reason IS NULL
          QUALIFY ROW_NUMBER() OVER (
            PARTITION BY event_id ORDER BY ingest_ts NULLS LAST, message_id NULLS LAST) = 1
        ),
        gaps AS (
          SELECT *, session_id IS NOT NULL AS _client,
                 epoch_us(event_ts) - LAG(epoch_us(event_ts)) OVER w AS _gap_us
          FROM first_landed
          WINDOW w AS (PARTITION BY user_id, session_id IS NOT NULL ORDER BY event_ts, event_id)
        ),
        numbered AS (
          SELECT *, SUM(CASE WHEN _gap_us IS NULL OR _gap_us >= 1800000000 THEN 1 ELSE 0 END)
                 OVER (PARTITION BY user_id, _client ORDER BY event_ts, event_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS _session_no
          FROM gaps
        )
        SELECT event_id, event_name, product_id, user_id, order_id, price, event_ts, date, hour,
               CASE WHEN _client THEN session_id
                    ELSE 'd-' || user_id || '-' || CAST(MIN(epoch_us(event_ts)) OVER (
                      PARTITION BY user_id, _client, _session_no) AS VARCHAR) END AS session_id,
               CASE WHEN _client THEN 'client' ELSE 'derived' END AS session_source,
               ingest_ts
        FROM numbered
    """
    products = f"""
        CREATE TEMP TABLE products AS
        SELECT {trim_id.format("product_id")} AS product_id,
               {norm.format("product_name")} AS product_name,
               {norm.format("brand")} AS brand,
               {norm.format("category")} AS category, price, date, updated_at
        FROM {_raw(lake, "products")}
        QUALIFY ROW_NUMBER() OVER (PARTITION BY {trim_id.format("product_id")}
                                   ORDER BY updated_at DESC NULLS LAST,
                                            ingest_ts DESC NULLS LAST) = 1
    """
    users = f"""
        CREATE TEMP TABLE users AS
        SELECT {trim_id.format("user_id")} AS user_id, {norm.format("user_name")} AS user_name,
               date, updated_at
        FROM {_raw(lake, "users")}
        QUALIFY ROW_NUMBER() OVER (PARTITION BY {trim_id.format("user_id")}
                                   ORDER BY updated_at DESC NULLS LAST,
                                            ingest_ts DESC NULLS LAST) = 1
    """
    orders = f"""
        CREATE TEMP TABLE orders AS
        WITH lines AS (
          SELECT {trim_id.format("order_id")} AS order_id,
                 {trim_id.format("product_id")} AS product_id,
                 {trim_id.format("user_id")} AS user_id, date, order_ts, quantity,
                 unit_price_inr, LOWER(TRIM(status)) AS status, updated_at
          FROM {_raw(lake, "orders")}
          QUALIFY ROW_NUMBER() OVER (
            PARTITION BY {trim_id.format("order_id")}, {trim_id.format("product_id")}
            ORDER BY updated_at DESC NULLS LAST, ingest_ts DESC NULLS LAST) = 1
        )
        SELECT l.* REPLACE (COALESCE(l.unit_price_inr, p.price) AS unit_price_inr),
               p.product_name, p.category,
               l.quantity * COALESCE(l.unit_price_inr, p.price) AS line_amount_inr,
               SUM(l.quantity * COALESCE(l.unit_price_inr, p.price))
                 OVER (PARTITION BY l.order_id) AS order_total_inr
        FROM lines l LEFT JOIN products p USING (product_id)
    """
    user_behavior = """
        CREATE TEMP TABLE user_behavior AS
        SELECT e.date, e.event_id, e.event_name, e.price, e.product_id, p.product_name,
               e.user_id, u.user_name, e.order_id, e.event_ts, e.session_id, p.category
        FROM events_clean e
        LEFT JOIN products p USING (product_id)
        LEFT JOIN users u USING (user_id)
    """

    def traffic(grain: str) -> str:
        return f"""
            SELECT {grain}, COUNT(*) AS events,
                   COUNT(*) FILTER (event_name = 'view') AS views,
                   COUNT(*) FILTER (event_name = 'wishlist') AS wishlists,
                   COUNT(*) FILTER (event_name = 'order') AS orders,
                   COUNT(*) FILTER (event_name = 'return') AS returns,
                   COUNT(DISTINCT user_id) AS unique_visitors,
                   COUNT(DISTINCT session_id) AS sessions
            FROM events_clean GROUP BY {grain}
        """

    spend = """
        WITH per_user AS (
          SELECT user_id, COUNT(DISTINCT session_id) AS sessions,
                 SUM(CASE WHEN event_name = 'order' THEN price
                          WHEN event_name = 'return' THEN -price ELSE 0 END) AS spend_inr
          FROM user_behavior GROUP BY user_id
        )
        SELECT 'user' AS scope, user_id, sessions, spend_inr,
               spend_inr / NULLIF(sessions, 0) AS avg_spend_per_session_inr FROM per_user
        UNION ALL
        SELECT 'overall', NULL, COUNT(DISTINCT session_id),
               SUM(CASE WHEN event_name = 'order' THEN price
                        WHEN event_name = 'return' THEN -price ELSE 0 END),
               SUM(CASE WHEN event_name = 'order' THEN price
                        WHEN event_name = 'return' THEN -price ELSE 0 END)
                 / NULLIF(COUNT(DISTINCT session_id), 0)
        FROM user_behavior
    """
    top_products = """
        SELECT product_id, MAX(product_name) AS product_name,
               COUNT(*) FILTER (event_name = 'order') AS sold,
               COUNT(*) FILTER (event_name = 'wishlist') AS wishlisted,
               COUNT(*) FILTER (event_name = 'return') AS returned,
               ROW_NUMBER() OVER (ORDER BY COUNT(*) FILTER (event_name = 'order') DESC,
                                  product_id) AS sold_rank
        FROM user_behavior GROUP BY product_id
    """

    def copy(query: str, name: str, partition: str | None = None) -> str:
        options = "FORMAT parquet"
        if partition:
            options += f", PARTITION_BY ({partition}), OVERWRITE_OR_IGNORE true"
        target = f"{out}/{name}" if partition else f"{out}/{name}.parquet"
        return f"COPY ({query}) TO '{target}' ({options})"

    return [
        ("staged", staged),
        ("rejects", copy("SELECT * FROM staged WHERE reject_reason IS NOT NULL", "rejects")),
        ("events_clean", events_clean),
        ("products", products),
        ("users", users),
        ("orders", orders),
        ("user_behavior", user_behavior),
        ("write events_clean", copy("SELECT * FROM events_clean", "events_clean", "date, hour")),
        ("write traffic_hourly", copy(traffic("date, hour"), "traffic_hourly")),
        ("write traffic_daily", copy(traffic("date"), "traffic_daily")),
        ("write user_behavior", copy("SELECT * FROM user_behavior", "user_behavior", "date")),
        ("write orders_enriched", copy("SELECT * FROM orders", "orders_enriched")),
        ("write spend_per_session", copy(spend, "spend_per_session")),
        ("write top_products", copy(top_products, "top_products")),
    ]


def run_baseline_case(lake: str, out: str) -> Outcome:
    """Run the hand-written SQL on an in-memory DuckDB (UTC), writing Parquet under `out`."""
    import duckdb

    with TreeRssSampler() as sampler:
        started = time.perf_counter()
        conn = duckdb.connect(":memory:")
        conn.execute("SET TimeZone = 'UTC'")
        ready = time.perf_counter()
        for _, statement in baseline_sql(lake, out):
            conn.execute(statement)
        counts = conn.execute(
            "SELECT (SELECT COUNT(*) FROM events_clean), (SELECT COUNT(*) FROM user_behavior)"
        ).fetchone()
        done = time.perf_counter()
        conn.close()
    assert counts is not None
    return Outcome(
        session_seconds=ready - started,
        work_seconds=done - ready,
        events_clean_rows=int(counts[0]),
        user_behavior_rows=int(counts[1]),
        outputs=9,
        tree_peak_rss_bytes=sampler.peak,
    )


# ---------------------------------------------------------------------------------------------
# The benchmark


def spark_memory(events: int, param: str | None) -> str:
    """The Spark driver memory of a run: `param` if given, else by size (`SPARK_MEMORY_BY_SIZE`)."""
    if param:
        return param
    return next(memory for limit, memory in SPARK_MEMORY_BY_SIZE if events <= limit)


def _case(
    case: str, zone: RawZone, base: Settings, work: Path, memory: str | None
) -> tuple[float, Outcome]:
    lake = fresh_lake(zone, work / case)
    started = time.perf_counter()
    if case == "sql-baseline":
        out = lake / "baseline"
        out.mkdir()
        isolated = run_isolated(run_baseline_case, str(lake), str(out))
    else:
        engine = "spark" if case == "spark" else "duckdb"
        settings = base.model_copy(
            update={"home": lake.parent, "lake_root": str(lake), "etl_engine": engine}
        )
        if engine == "spark":
            update = {"spark_driver_memory": spark_memory(zone.valid_events, memory)}
            settings = settings.model_copy(update=update)
        isolated = run_isolated(run_engine_case, settings)
    wall = time.perf_counter() - started
    shutil.rmtree(lake.parent, ignore_errors=True)
    return wall, isolated.value


def _row(case: str, zone: RawZone, wall: float, outcome: Outcome) -> Row:
    start = {"spark": "Spark session", "duckdb": "SQLFrame session"}.get(case, "connection")
    work = "run_etl" if case != "sql-baseline" else "SQL"
    return Row(
        case=f"{case}-{zone.valid_events // 1000}k",
        params={"events": zone.valid_events, "engine": case},
        wall_seconds=wall,
        items=zone.valid_events,
        unit="events",
        peak_rss_bytes=outcome.tree_peak_rss_bytes,
        notes=(
            f"{start} {outcome.session_seconds:.1f}s + {work} {outcome.work_seconds:.1f}s; "
            f"{outcome.events_clean_rows:,} events_clean / {outcome.user_behavior_rows:,} "
            f"user_behavior rows; {outcome.outputs} outputs"
        ),
    )


def _failed_row(case: str, zone: RawZone, failure: IsolatedError) -> Row:
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    return Row(
        case=f"{case}-{zone.valid_events // 1000}k",
        params={"events": zone.valid_events, "engine": case},
        wall_seconds=0.0,
        items=zone.valid_events,
        unit="events",
        notes=f"FAILED: {lines[-1][:300] if lines else 'no message'}",
    )


@benchmark(
    "etl_engines",
    title="The ETL on Spark, on DuckDB (SQLFrame), and hand-written DuckDB SQL",
    description=__doc__ or "",
)
def run(ctx: BenchContext) -> BenchResult:
    """Generate (or reuse) the raw zones, then run each case on each size."""
    sizes = [int(s.replace("_", "")) for s in ctx.list_param("events", DEFAULT_SIZES)]
    if ctx.quick and "events" not in ctx.params:
        sizes = [int(s) for s in QUICK_SIZES]
    cases = ctx.list_param("cases", DEFAULT_CASES)
    # `--param spark_max=N` skips Spark above N events.
    spark_max = ctx.int_param("spark_max", 10**12, 10**12)
    days = ctx.int_param("days", DEFAULT_DAYS, 2)
    seed = ctx.int_param("seed", 42, 42)
    memory = ctx.params.get("spark_memory")
    base = load_settings(spark_master="local[2]")
    cache = Path(ctx.params.get("cache", str(base.home / "bench" / "etl-engines")))
    rows: list[Row] = []
    zones: list[RawZone] = []
    skipped: list[str] = []
    for events in sizes:
        zone = cached_raw_zone(cache, events, seed=seed, days=days)
        zones.append(zone)
        for case in cases:
            if case == "spark" and events > spark_max:
                skipped.append(f"spark-{events // 1000}k")
                continue
            try:
                wall, outcome = _case(case, zone, base, ctx.scratch, memory)
            except IsolatedError as failure:
                # Keep the other cases' figures; the row says what went wrong.
                rows.append(_failed_row(case, zone, failure))
                continue
            rows.append(_row(case, zone, wall, outcome))
    return BenchResult(
        rows=rows,
        settings={
            "raw zones": "; ".join(
                f"{z.valid_events:,} valid events over {z.days} simulated days: "
                f"{z.deliveries:,} deliveries, {z.landed_rows:,} raw rows in "
                f"{z.event_files:,} files ({z.malformed_skipped:,} malformed, dead-lettered), "
                f"{z.order_lines:,} order lines; written in {z.setup_seconds:.0f}s (cached)"
                for z in zones
            ),
            "Spark": f"{base.spark_master}, driver memory "
            + ", ".join(
                f"{spark_memory(z.valid_events, memory)} at {z.valid_events:,} events"
                for z in zones
            ),
            "DuckDB": "in-memory, default threads (all cores), via SQLFrame for `duckdb`",
            "skipped": ", ".join(skipped) or "none",
        },
        notes=(
            "wall s: from spawning a fresh Python process to its result: interpreter start, "
            "imports, engine start (JVM for Spark), the work and shutdown. The row's notes split "
            "session start from the work.",
            "peak RSS: the largest sum of VmRSS over the process tree (Python + Spark JVM), "
            "sampled every 0.2 s.",
            "The raw zone is the cached one of the same size for every case; each case writes a "
            "fresh curated zone (or baseline output).",
        ),
    )


__all__ = [
    "RawZone",
    "baseline_sql",
    "cached_raw_zone",
    "fresh_lake",
    "run",
    "write_raw_zone",
]
