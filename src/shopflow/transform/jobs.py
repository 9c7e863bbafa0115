"""ETL jobs: read the raw zone, run the pure transforms, replace curated partitions whole.

The same `run_etl` runs in-process (tests, `shopflow etl|backfill`) and as the spark-submit main
file (`python -m shopflow.transform.entrypoint`, hence Dataproc).

What a run recomputes (`EtlRequest`):

* `etl` (incremental): every event date whose raw partitions received a file since the last run
  (file modification times from the lake listing, minus `LISTING_MARGIN` for clock skew and writes
  in flight), each such date's next date when it has events (a late event before midnight can
  move the start of a session that crosses into it), plus the dates of `--hour` or
  `--since/--until` when given. The state record `_state/etl_hourly.json` keeps the time of the
  listing; it advances only after every output is written. The first run processes everything.
* `backfill`: exactly the given dates, whatever the state (which it leaves alone).

The unit of recomputation is a whole event date, read with the previous date as session context
(sessions crossing midnight keep their id): deduplication is per event id, and every copy of an
event lands in the partition of its `event_ts`, so one date's output depends only on the raw
events of that date and the one before. Orders, products and users are small pulls, read whole.

Curated layout (`curated/<table>/...`, one `part-00000.parquet` per partition, replaced atomically
through `replace_partition`; partition columns live in the path only, as Spark writes them):

* `events_clean/date=D/hour=HH/`, `traffic_hourly/date=D/hour=HH/`: the hours of each recomputed
  date that have events.
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
job's own use that copy's `functions`, inputs are read and outputs collected only through the
engine module's `read_parquet`, `create_dataframe`, `to_arrow`, `materialize` and `release`, and
outputs are committed by the lake layer from Arrow, on a background thread while the engine
computes the next output. See docs/engines.md.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.contracts import (
    RAW_EVENT_SCHEMA,
    RAW_ORDER_SCHEMA,
    RAW_PRODUCT_SCHEMA,
    RAW_USER_SCHEMA,
)
from shopflow.errors import ShopflowError
from shopflow.lake import (
    LakeLayout,
    Partition,
    StateStore,
    list_data_files,
    list_partitions,
    read_dataset,
    remove_stale_temp_files,
    replace_partition,
    writer_lock,
)
from shopflow.lake.quarantine import Quarantined, screen_files
from shopflow.settings import Settings
from shopflow.transform import engine
from shopflow.transform.engine import Transforms, transforms
from shopflow.transform.events import STAGED_EVENT_COLUMNS

#: Partition keys of a curated table: (date, hour) for hourly tables, (date, None) for daily ones.
Keys = Sequence[tuple[date, int | None]]

#: A DataFrame of either engine (pyspark's or SQLFrame's; they share the API the job uses).
DataFrame = Any

#: Curated tables with one partition per event date and hour.
HOURLY_TABLES: Final = ("events_clean", "traffic_hourly")
#: Curated tables with one partition per recomputed event date.
DAILY_TABLES: Final = ("traffic_daily", "user_behavior")
#: Curated per-date activity (`shopflow.transform.activity`), one partition per recomputed date.
ACTIVITY_TABLES: Final = ("product_activity_daily", "user_activity_daily", "order_activity_daily")
#: Curated tables partitioned by date, computed whole, rewritten where their rows changed.
SYNCED_TABLES: Final = ("orders_enriched", "order_reconciliation")
#: Curated whole-table snapshots (`curated/<table>/part-00000.parquet`).
SNAPSHOT_TABLES: Final = ("products_clean", "users_enriched", "category_summary")
#: Every curated table the ETL writes.
CURATED_TABLES: Final = (
    *HOURLY_TABLES,
    *DAILY_TABLES,
    *ACTIVITY_TABLES,
    *SYNCED_TABLES,
    *SNAPSHOT_TABLES,
)
#: The raw pulls and the schema each is read with.
PULL_SCHEMAS: Final = {
    "orders": RAW_ORDER_SCHEMA,
    "products": RAW_PRODUCT_SCHEMA,
    "users": RAW_USER_SCHEMA,
}
#: Where staging rejects go (`deadletter/<source>/date=D/`).
REJECTS_SOURCE: Final = "events_etl"
#: Partitions written at once (`_replace_partitions`).
WRITE_THREADS: Final = 4
#: The staging column that keeps a raw event's partition date (its rejects are filed under it).
_RAW_DATE: Final = "raw_date"
#: The ETL's state record under `_state/`.
STATE_NAME: Final = "etl_hourly"
#: Files modified this long before the previous listing are looked at again (clock skew, writes in
#: flight); reprocessing is idempotent, so the overlap only costs time.
LISTING_MARGIN: Final = timedelta(minutes=5)

_CURATED_EVENTS_SCHEMA: Final = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_name", pa.string()),
        ("product_id", pa.string()),
        ("user_id", pa.string()),
        ("order_id", pa.string()),
        ("price", pa.float64()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("session_id", pa.string()),
        ("session_source", pa.string()),
        ("ingest_ts", pa.timestamp("us", tz="UTC")),
        ("date", pa.date32()),
        ("hour", pa.int32()),
    ]
)

_COUNT = pa.int64()
_BEHAVIOUR_COUNTS = ("events", "views", "wishlists", "order_events", "returns")
#: How the activity tables read back (`date` from the path).
_ACTIVITY_SCHEMAS: Final = {
    "product_activity_daily": pa.schema(
        [
            ("product_id", pa.string()),
            *((name, _COUNT) for name in _BEHAVIOUR_COUNTS),
            ("date", pa.date32()),
        ]
    ),
    "user_activity_daily": pa.schema(
        [
            ("user_id", pa.string()),
            *((name, _COUNT) for name in _BEHAVIOUR_COUNTS),
            ("sessions_started", _COUNT),
            ("first_seen_ts", pa.timestamp("us", tz="UTC")),
            ("last_seen_ts", pa.timestamp("us", tz="UTC")),
            ("date", pa.date32()),
        ]
    ),
    "order_activity_daily": pa.schema(
        [
            ("order_id", pa.string()),
            ("order_events", _COUNT),
            ("order_amount_inr", pa.float64()),
            ("returns", _COUNT),
            ("date", pa.date32()),
        ]
    ),
}


# ---------------------------------------------------------------------------------------------
# Requests and results


@dataclass(frozen=True, slots=True)
class EtlRequest:
    """What to recompute: explicit event dates, and whether to add what is new since the last run.

    `incremental` runs read and advance the state record; a backfill (`incremental=False`) does
    neither.
    """

    dates: tuple[date, ...] = ()
    incremental: bool = True
    label: str = "new data"


@dataclass(slots=True)
class EtlRun:
    """What one ETL run did."""

    label: str
    dates: tuple[date, ...] = ()
    partitions: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    rejected_events: int = 0
    seconds: float = 0.0
    since: datetime | None = None
    quarantined: list[Quarantined] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def partitions_written(self) -> int:
        """How many curated (and dead-letter) files this run replaced."""
        return sum(len(urls) for urls in self.partitions.values())

    def summary(self) -> str:
        """A few lines for the command line."""
        moved = [f"  quarantined {q.url} -> {q.moved_to}: {q.reason}" for q in self.quarantined]
        if self.skipped:
            example = "/".join(self.skipped[0].rsplit("/", 2)[-2:])
            moved.append(
                f"  skipped {len(self.skipped)} raw partitions outside the accepted event dates "
                f"(SHOPFLOW_EVENT_MIN_TS, SHOPFLOW_EVENT_MAX_FUTURE_SECONDS), e.g. {example}"
            )
        if not self.dates and not self.partitions:
            since = f" since {self.since.isoformat()}" if self.since else ""
            return "\n".join(
                [
                    f"etl ({self.label}): nothing new in the raw zone{since}; "
                    f"{len(self.quarantined)} files quarantined; {self.seconds:.1f}s",
                    *moved,
                ]
            )
        days = ", ".join(d.isoformat() for d in self.dates) or "none"
        lines = [
            f"etl ({self.label}): event dates {days}; {self.partitions_written} partitions "
            f"written; {self.rejected_events:,} rejected events; "
            f"{len(self.quarantined)} files quarantined; {self.seconds:.1f}s",
            *moved,
        ]
        for name in (*CURATED_TABLES, f"deadletter/{REJECTS_SOURCE}"):
            if name in self.partitions:
                lines.append(
                    f"  {name:<22} {self.rows.get(name, 0):>10,} rows "
                    f"in {len(self.partitions[name])} partitions"
                )
        return "\n".join(lines)


def _parse_ts(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError:
        raise ShopflowError(
            f"{option} {text!r} is not an ISO-8601 time, e.g. 2026-11-25T10 or 2026-11-25T10:00Z"
        ) from None
    except OverflowError:
        raise ShopflowError(f"{option} {text!r} is outside the calendar in UTC") from None


def parse_hour(text: str) -> datetime:
    """`YYYY-MM-DDTHH` (UTC) as the start of that hour."""
    try:
        value = datetime.strptime(text.strip(), "%Y-%m-%dT%H")
    except ValueError:
        raise ShopflowError(
            f"--hour {text!r} is not YYYY-MM-DDTHH (UTC), e.g. 2026-11-25T10"
        ) from None
    return value.replace(tzinfo=UTC)


def parse_date(text: str, option: str) -> date:
    """`YYYY-MM-DD` as a date."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ShopflowError(f"{option} {text!r} is not YYYY-MM-DD, e.g. 2026-11-25") from None


def date_range(start: date, end: date) -> tuple[date, ...]:
    """Every date from `start` to `end`, both included."""
    return tuple(start + timedelta(days=n) for n in range((end - start).days + 1))


def etl_request(
    hour: str | None = None, since: str | None = None, until: str | None = None
) -> EtlRequest:
    """The request of `shopflow etl`: `--hour`, or `--since` [`--until`], or nothing.

    `--since/--until` are event times (UTC unless a zone is given): the event dates of every hour
    in [since, until) are recomputed. Any form also picks up what is new since the last run.
    """
    if hour is not None and (since is not None or until is not None):
        raise ShopflowError("give either --hour or --since/--until, not both")
    if until is not None and since is None:
        raise ShopflowError("--until needs --since")
    if hour is not None:
        start = parse_hour(hour)
        return EtlRequest((start.date(),), label=f"hour {start:%Y-%m-%dT%H}")
    if since is not None:
        start = _parse_ts(since, "--since")
        end = _parse_ts(until, "--until") if until is not None else datetime.now(UTC)
        if until is None and end <= start:
            raise ShopflowError(f"--since {since!r} is in the future; nothing to recompute")
        if end <= start:
            raise ShopflowError(f"--until {until!r} must be after --since {since!r}")
        last = (end - timedelta(microseconds=1)).date()
        return EtlRequest(
            date_range(start.date(), last),
            label=f"{start.isoformat()} to {end.isoformat()}",
        )
    return EtlRequest()


def backfill_request(start: str, end: str) -> EtlRequest:
    """The request of `shopflow backfill --start --end`: whole dates, state ignored."""
    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    if last < first:
        raise ShopflowError(f"--end {last} is before --start {first}")
    return EtlRequest(
        date_range(first, last), incremental=False, label=f"backfill {first} to {last}"
    )


# ---------------------------------------------------------------------------------------------
# Engine edges (see the module docstring)


def _read_parquet(
    session: Any, paths: Sequence[str], schema: pa.Schema, *, base_path: str | None = None
) -> DataFrame:
    """Parquet files or Hive partition folders as one DataFrame typed by `schema`."""
    return engine.read_parquet(session, paths, schema, base_path=base_path)


def _create_dataframe(session: Any, table: pa.Table) -> DataFrame:
    return engine.create_dataframe(session, table)


def _to_arrow(df: DataFrame) -> pa.Table:
    """Collected as Arrow with UTC microsecond timestamps."""
    return engine.to_arrow(df)


def _materialize(df: DataFrame) -> DataFrame:
    return engine.materialize(df)


def _release(df: DataFrame) -> None:
    engine.release(df)


# ---------------------------------------------------------------------------------------------
# Extract


@dataclass(frozen=True, slots=True)
class _Plan:
    dates: tuple[date, ...]
    listed_at: datetime
    since: datetime | None
    new_pulls: bool
    #: Raw partitions left alone: their date is not a date, or is outside the accepted range.
    skipped: tuple[str, ...] = ()


def accepted_event_dates(settings: Settings) -> tuple[date, date]:
    """The first and last event date landing can accept (`Settings.event_min_ts`, ...)."""
    latest = datetime.now(UTC) + timedelta(seconds=settings.event_max_future_seconds)
    return settings.event_min_ts.astimezone(UTC).date(), latest.date()


def _partition_date(partition: Partition) -> date | None:
    try:
        return partition.date
    except ValueError:
        return None


def plan_run(
    layout: LakeLayout,
    state: StateStore,
    request: EtlRequest,
    accepted: tuple[date, date],
) -> _Plan:
    """The event dates to recompute, from the request and (incremental) the lake listing.

    Raw partitions whose date is not a date, or is outside `accepted` (landed before landing
    bounded event times, or a range narrowed by settings since), are skipped and reported, never
    read: no date can push the run past the calendar, and no data is moved for a setting.
    """
    listed_at = datetime.now(UTC)
    first, last = accepted
    events = []
    skipped: list[str] = []
    for partition in list_partitions(layout.events_root()):
        day = _partition_date(partition)
        if day is not None and first <= day <= last:
            events.append(partition)
        else:
            skipped.append(partition.url)
    if not events:
        outside = (
            f" ({len(skipped)} partitions outside the accepted event dates {first} to {last})"
            if skipped
            else ""
        )
        raise ShopflowError(
            f"the lake at {layout.root} has no raw events yet{outside}: land some with "
            "`shopflow ingest events` (or run `shopflow demo`)"
        )
    with_events = {p.date for p in events if p.date is not None}
    wanted = {d for d in request.dates if first <= d <= last}
    since: datetime | None = None
    new_pulls = False
    if request.incremental:
        record = state.get(STATE_NAME)
        if record is not None and record.get("listed_at"):
            since = datetime.fromisoformat(str(record["listed_at"])) - LISTING_MARGIN
        changed = {p.date for p in events if p.date and (since is None or p.latest_mtime > since)}
        wanted |= changed | {d + timedelta(days=1) for d in changed}
        new_pulls = any(
            list_partitions(layout.pull_root(source), since=since)
            for source in ("orders", "products", "users")
        )
    elif not wanted & with_events:
        days = _date_span(request.dates)
        raise ShopflowError(f"no raw events on {days}: nothing to backfill in {layout.root}")
    return _Plan(tuple(sorted(wanted & with_events)), listed_at, since, new_pulls, tuple(skipped))


def _date_span(dates: Sequence[date]) -> str:
    ordered = sorted(dates)
    if len(ordered) > 3:
        return f"{ordered[0]} to {ordered[-1]}"
    return ", ".join(d.isoformat() for d in ordered)


def screen_raw_events(
    layout: LakeLayout, dates: Iterable[date], *, deep: bool = False
) -> list[Quarantined]:
    """Quarantine the raw event files of `dates` that cannot be read, or that lie outside a
    `date=/hour=` folder (`shopflow.lake.quarantine`); `deep` decodes every page too."""
    wanted = set(dates)
    urls = [
        f.url
        for p in list_partitions(layout.events_root())
        if _partition_date(p) in wanted
        for f in p.files
    ]
    return screen_files(layout, urls, RAW_EVENT_SCHEMA, partition_keys=("date", "hour"), deep=deep)


def screen_pulls(layout: LakeLayout) -> list[Quarantined]:
    """Quarantine the raw pull files (orders, products, users) that cannot be read; they are
    small, so every page is decoded."""
    moved: list[Quarantined] = []
    for source, schema in PULL_SCHEMAS.items():
        files = list_data_files(layout.pull_root(source))
        moved += screen_files(
            layout, [f.url for f in files], schema, partition_keys=("cursor_date",), deep=True
        )
    return moved


def extract_raw_events(session: Any, layout: LakeLayout, dates: Iterable[date]) -> DataFrame:
    """Raw events of the given event dates (with `date` and `hour` from the path)."""
    wanted = set(dates)
    root = layout.events_root()
    urls = [p.url for p in list_partitions(root) if p.date in wanted]
    schema = pa.schema([*RAW_EVENT_SCHEMA, ("date", pa.date32()), ("hour", pa.int32())])
    return _read_parquet(session, urls, schema, base_path=root)


def extract_pulls(session: Any, layout: LakeLayout, source: str, schema: pa.Schema) -> DataFrame:
    """Every raw pull of `orders`, `products` or `users` (duplicates across pulls included)."""
    root = layout.pull_root(source)
    urls = [p.url for p in list_partitions(root)]
    full = pa.schema([*schema, ("cursor_date", pa.date32())])
    return _read_parquet(session, urls, full, base_path=root).drop("cursor_date")


def extract_curated_events(
    session: Any, layout: LakeLayout, dates: Iterable[date] | None = None
) -> DataFrame:
    """Curated `events_clean` of the given event dates (default: all of it)."""
    root = layout.curated_root("events_clean")
    wanted = None if dates is None else set(dates)
    urls = [p.url for p in list_partitions(root) if wanted is None or p.date in wanted]
    return _read_parquet(session, urls, _CURATED_EVENTS_SCHEMA, base_path=root)


def extract_activity(session: Any, layout: LakeLayout, name: str) -> DataFrame:
    """Every date of a curated activity table (`ACTIVITY_TABLES`)."""
    root = layout.curated_root(name)
    urls = [p.url for p in list_partitions(root)]
    return _read_parquet(session, urls, _ACTIVITY_SCHEMAS[name], base_path=root)


# ---------------------------------------------------------------------------------------------
# Load


def _partition_keys(table: pa.Table, hourly: bool) -> list[tuple[date, int | None]]:
    columns = ["date", "hour"] if hourly else ["date"]
    keys = table.select(columns).group_by(columns).aggregate([])
    if hourly:
        pairs = zip(keys["date"].to_pylist(), keys["hour"].to_pylist(), strict=True)
        return sorted(set(pairs))
    return [(day, None) for day in sorted(set(keys["date"].to_pylist()))]


def _part(table: pa.Table, day: date, hour: int | None = None) -> pa.Table:
    mask = pc.equal(table["date"], pa.scalar(day, pa.date32()))
    if hour is not None:
        mask = pc.and_(mask, pc.equal(table["hour"], pa.scalar(hour, pa.int32())))
    return table.filter(mask)


def write_partitions(
    table: pa.Table, name: str, layout: LakeLayout, keys: Iterable[tuple[date, int | None]]
) -> list[str]:
    """Replace the given partitions of a curated table with their rows of `table`."""
    keys = list(keys)
    parts = _split(table, hourly=any(hour is not None for _, hour in keys))
    empty = table.slice(0, 0)
    return _replace_partitions(
        [
            (parts.get((day, hour), empty), layout.curated_partition(name, day, hour))
            for day, hour in keys
        ]
    )


def _replace_partitions(writes: Sequence[tuple[pa.Table, str]]) -> list[str]:
    """`replace_partition` of each (table, partition URL), a few at a time; URLs in input order.

    Parquet encoding and the uploads release the GIL, so a small pool overlaps them; each
    partition is still committed atomically on its own, as in a serial loop.
    """
    if len(writes) <= 1:
        return [replace_partition(table, url) for table, url in writes]
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(writes))) as pool:
        return list(pool.map(lambda write: replace_partition(*write), writes))


def _split(table: pa.Table, hourly: bool) -> dict[tuple[date, int | None], pa.Table]:
    """Each partition's rows, in their order in `table` (a stable sort, then zero-copy slices)."""
    columns = ["date", "hour"] if hourly else ["date"]
    if table.num_rows == 0:
        return {}
    ordered = table.take(
        pc.sort_indices(table.select(columns), [(c, "ascending") for c in columns])
    )
    keys = [ordered[c].combine_chunks() for c in columns]
    n = ordered.num_rows
    changed = pc.not_equal(keys[0].slice(1), keys[0].slice(0, n - 1))
    for key in keys[1:]:
        changed = pc.or_(changed, pc.not_equal(key.slice(1), key.slice(0, n - 1)))
    starts = [0, *(pc.indices_nonzero(changed).to_numpy() + 1).tolist(), n]
    parts: dict[tuple[date, int | None], pa.Table] = {}
    for begin, stop in itertools.pairwise(starts):
        day = keys[0][begin].as_py()
        hour = keys[1][begin].as_py() if hourly else None
        parts[(day, hour)] = ordered.slice(begin, stop - begin)
    return parts


def _canonical(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    relaxed = pa.schema([pa.field(c, table.schema.field(c).type) for c in columns])
    projected = pa.Table.from_arrays([table[c] for c in columns], schema=relaxed)
    return projected.sort_by([(c, "ascending") for c in columns]).combine_chunks()


def write_changed_partitions(table: pa.Table, name: str, layout: LakeLayout) -> list[str]:
    """Replace the date partitions of a curated table whose rows differ from `table`'s."""
    root = layout.curated_root(name)
    stored = read_dataset(root) if list_data_files(root) else None
    columns = [c for c in table.column_names if c != "date"]
    changed = []
    for day, _ in _partition_keys(table, hourly=False):
        new = _part(table, day)
        if stored is not None and stored.num_rows and set(columns) <= set(stored.column_names):
            old = _part(stored, day)
            if old.num_rows == new.num_rows and _canonical(old, columns).equals(
                _canonical(new, columns)
            ):
                continue
        changed.append((new, layout.curated_partition(name, day)))
    return _replace_partitions(changed)


def write_snapshot(table: pa.Table, name: str, layout: LakeLayout) -> str:
    """Replace a whole-table snapshot: `curated/<table>/part-00000.parquet`."""
    return replace_partition(table, layout.curated_root(name))


def write_rejects(table: pa.Table, layout: LakeLayout, dates: Iterable[date]) -> list[str]:
    """Replace the ETL dead letters of each date (an empty date clears an older file)."""
    writes = []
    for day in dates:
        part = _part(table, day)
        url = layout.deadletter_partition(REJECTS_SOURCE, day)
        if part.num_rows or list_data_files(url):
            writes.append((part, url))
    return _replace_partitions(writes)


# ---------------------------------------------------------------------------------------------
# The job


class _BackgroundCommits:
    """Collected outputs written on one background thread while the engine computes the next.

    The writes are pure Arrow/Parquet and lake I/O (no engine call), so they overlap the engine's
    work. Leaving the `with` block waits for every write, re-raises the first failure, and only
    then records what was written; nothing that reads the lake may run inside the block.
    """

    def __init__(self, record: Callable[[str, list[str], int], None]) -> None:
        self._record = record
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopflow-commit")
        self._pending: list[tuple[str, Future[list[str]], int]] = []

    def submit(self, name: str, rows: int, write: Callable[[], list[str]]) -> None:
        """Write in the background; `rows` is recorded with the written URLs."""
        self._pending.append((name, self._pool.submit(write), rows))

    def __enter__(self) -> _BackgroundCommits:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)
        if exc_info[0] is None:
            for name, future, rows in self._pending:
                self._record(name, future.result(), rows)


def _staged_events(t: Transforms, raw: DataFrame) -> DataFrame:
    """Raw events staged once, with the raw partition date (`raw_date`) the rejects are filed by."""
    return t.events.stage_events(
        raw.withColumn(_RAW_DATE, t.functions.col("date")), keep=(_RAW_DATE,)
    )


def _rejects(t: Transforms, staged: DataFrame, dates: Sequence[date]) -> DataFrame:
    # Keyed by the raw partition date (the folder it was read from): an event without a usable
    # event_ts has no event date of its own.
    F = t.functions
    staged_columns = [c for c in STAGED_EVENT_COLUMNS if c not in ("date", "hour", "reject_reason")]
    return (
        t.events.event_rejects(staged)
        .where(F.col(_RAW_DATE).isin(list(dates)))
        .select(
            *staged_columns,
            F.col("date").alias("event_date"),
            F.col("hour").alias("event_hour"),
            F.col("reject_reason").alias("reason"),
            F.col(_RAW_DATE).alias("date"),
        )
    )


def _dated(t: Transforms, df: DataFrame, dates: Sequence[date]) -> DataFrame:
    return df.where(t.functions.col("date").isin(list(dates)))


def _activity(
    t: Transforms, session: Any, layout: LakeLayout, clean: DataFrame, dates: Sequence[date]
) -> dict[str, DataFrame]:
    """The activity tables of `dates` from their clean events.

    Sessions look back one date: the previous dates not among `dates` come from curated events.
    """
    previous = sorted({d - timedelta(days=1) for d in dates} - set(dates))
    earlier = extract_curated_events(session, layout, previous) if previous else None
    return {
        "product_activity_daily": t.activity.product_activity_daily(clean),
        "user_activity_daily": t.activity.user_activity_daily(clean, earlier),
        "order_activity_daily": t.activity.order_activity_daily(clean),
    }


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
        return _run_etl(session, settings, request, layout)


def _run_etl(session: Any, settings: Settings, request: EtlRequest, layout: LakeLayout) -> EtlRun:
    started = time.monotonic()
    state = StateStore(settings)
    plan = plan_run(layout, state, request, accepted_event_dates(settings))
    run = EtlRun(label=request.label, dates=plan.dates, since=plan.since, skipped=[*plan.skipped])
    context = sorted({d - timedelta(days=1) for d in plan.dates} | set(plan.dates))
    run.quarantined += screen_raw_events(layout, context)
    run.quarantined += screen_pulls(layout)
    if not plan.dates and not plan.new_pulls:
        run.seconds = time.monotonic() - started
        return run

    t = transforms(session)

    def record(name: str, urls: list[str], rows: int) -> None:
        run.partitions[name] = [*run.partitions.get(name, []), *urls]
        run.rows[name] = run.rows.get(name, 0) + rows

    def write_later(commits: _BackgroundCommits, name: str, table: pa.Table, keys: Keys) -> None:
        commits.submit(name, table.num_rows, lambda: write_partitions(table, name, layout, keys))

    def write_activity(
        commits: _BackgroundCommits, activity: dict[str, DataFrame], dates: Sequence[date]
    ) -> None:
        # Every date's partition is replaced, an empty one too (its events may all be gone).
        keys = [(day, None) for day in dates]
        for name, df in activity.items():
            write_later(commits, name, _to_arrow(df), keys)

    # Released however the run ends: a failed run must not leave tables in a long-lived session.
    cached: list[DataFrame] = []
    try:
        products = _materialize(
            t.products.products_clean(
                extract_pulls(session, layout, "products", RAW_PRODUCT_SCHEMA)
            )
        )
        cached.append(products)
        users = _materialize(
            t.users.users_clean(extract_pulls(session, layout, "users", RAW_USER_SCHEMA))
        )
        cached.append(users)

        # Each output is written while the engine computes the next; the block waits for the writes
        # before anything below reads the curated zone.
        with _BackgroundCommits(record) as commits:
            if plan.dates:
                dates = plan.dates

                # Staged once: both the dead letters and the clean events come from it.
                def stage() -> DataFrame:
                    raw = extract_raw_events(session, layout, context)
                    return _materialize(_staged_events(t, raw))

                try:
                    staged = stage()
                except Exception:
                    # A file whose footer is fine but whose pages are not: find it, move it
                    # aside and read again; with none to blame, the failure is not the data's.
                    damaged = screen_raw_events(layout, context, deep=True)
                    if not damaged:
                        raise
                    run.quarantined += damaged
                    staged = stage()
                cached.append(staged)
                rejects = _to_arrow(_rejects(t, staged, dates))
                run.rejected_events = rejects.num_rows
                commits.submit(
                    f"deadletter/{REJECTS_SOURCE}",
                    rejects.num_rows,
                    lambda: write_rejects(rejects, layout, dates),
                )

                clean = _materialize(_dated(t, t.events.events_clean_from_staged(staged), dates))
                cached.append(clean)
                # Built (so the earlier curated events it needs are listed) before any curated write.
                activity = _activity(t, session, layout, clean, dates)
                outputs = {
                    "events_clean": clean,
                    "traffic_hourly": t.traffic.traffic_hourly(clean),
                    "traffic_daily": t.traffic.traffic_daily(clean),
                    "user_behavior": t.user_behavior.user_behavior(clean, products, users),
                }
                for name, df in outputs.items():
                    table = _to_arrow(df)
                    write_later(commits, name, table, _partition_keys(table, name in HOURLY_TABLES))
                write_activity(commits, activity, dates)

        missing = _dates_without_activity(layout)
        if missing:
            stored = _materialize(extract_curated_events(session, layout, missing))
            cached.append(stored)
            with _BackgroundCommits(record) as commits:
                write_activity(commits, _activity(t, session, layout, stored, missing), missing)

        orders = _materialize(
            t.orders.orders_enriched(
                t.orders.dedup_order_lines(
                    extract_pulls(session, layout, "orders", RAW_ORDER_SCHEMA)
                ),
                products,
            )
        )
        cached.append(orders)
        orders_table = _to_arrow(orders)
        record(
            "orders_enriched",
            write_changed_partitions(orders_table, "orders_enriched", layout),
            orders_table.num_rows,
        )

        # Reconciliation and the snapshots cover all dates: from the activity tables, not the events.
        activity = {name: extract_activity(session, layout, name) for name in ACTIVITY_TABLES}
        recon = _to_arrow(
            t.reconciliation.order_reconciliation_from_daily(
                activity["order_activity_daily"], orders
            )
        )
        record(
            "order_reconciliation",
            write_changed_partitions(recon, "order_reconciliation", layout),
            recon.num_rows,
        )
        snapshots = {
            "products_clean": products,
            "users_enriched": t.users.users_enriched_from_daily(
                users, activity["user_activity_daily"], orders
            ),
            "category_summary": t.products.category_summary_from_daily(
                products, activity["product_activity_daily"], orders
            ),
        }
        for name, df in snapshots.items():
            table = _to_arrow(df)
            record(name, [write_snapshot(table, name, layout)], table.num_rows)
    finally:
        for df in cached:
            _release(df)
    if request.incremental:
        # Only now: a run that failed above is redone in full by the next one. The store remembers
        # the version plan_run read, so a concurrent run makes this raise instead of going back.
        state.put(
            STATE_NAME,
            {
                "listed_at": plan.listed_at.isoformat(),
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
    "CURATED_TABLES",
    "EtlRequest",
    "EtlRun",
    "backfill_request",
    "etl_request",
    "run_etl",
    "run_hourly_etl",
]
