"""One streaming micro-batch merged into the stream table and the warehouse's live part, on the
ETL engine.

Spark Structured Streaming stages and deduplicates the new files (`shopflow.transform.streaming`);
what each micro-batch then does with its rows (`apply_micro_batch`) runs on the engine
`SHOPFLOW_ETL_ENGINE` selects, like the hourly batch: on DuckDB (through SQLFrame) the
micro-batch is collected once and re-sessionised in-process, on Spark it stays a Spark
DataFrame. Why DuckDB by default on one machine: a micro-batch is small (tens of thousands of
rows), and Spark's fixed cost per job and per shuffle made re-sessionising it the slowest step of
a micro-batch (9-21 s at 5,000 events/s, BENCHMARKS.md); the transforms are the same code on
both engines, and the parity tests hold them to the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shopflow.lake import DataFile, LakeError, LakeLayout, list_data_files, list_partitions, resolve
from shopflow.schemas import EVENTS_CLEAN
from shopflow.transform.duckdb_io import read_parquet_view
from shopflow.transform.engine import (
    broadcast,
    create_dataframe,
    read_parquet,
    scratch,
    to_arrow,
    transforms,
)
from shopflow.transform.events import DEFAULT_SESSION_GAP_MINUTES
from shopflow.transform.prepared import PreparedInputs, PreparedQuery
from shopflow.transform.stream_keys import (
    KEY_COLUMNS,
    PartitionKeys,
    out_of_order_users,
    read_keys,
    update_keys,
)
from shopflow.transform.stream_live import (
    HISTORY_SCHEMAS,
    live_rows,
    read_history,
)
from shopflow.transform.stream_plan import FIRST_ID, FIRST_TS, HourKey
from shopflow.transform.stream_slices import read_merged_slices, replace_slices
from shopflow.warehouse.live import LIVE_TABLE

#: The curated table the stream maintains (same columns and partitioning as `events_clean`).
STREAM_TABLE: Final = "events_clean_stream"
#: Columns of the stream table (`EVENTS_CLEAN_COLUMNS`, typed).
STREAM_SCHEMA: Final = EVENTS_CLEAN.lake_schema()
#: Columns of a stream table data file (`date` and `hour` are in its path).
STREAM_FILE_SCHEMA: Final = pa.schema([f for f in STREAM_SCHEMA if f.name not in ("date", "hour")])
#: A micro-batch's new events: unsessionised, with the copy's `message_id`.
NEW_EVENT_SCHEMA: Final = pa.schema(
    [
        *(f for f in STREAM_SCHEMA if f.name not in ("session_source", "session_start_ts")),
        pa.field("message_id", pa.string()),
    ]
)
#: Each touched user's earliest new key (`stream_plan.earliest_new_keys`).
FIRSTS_SCHEMA: Final = pa.schema(
    [
        ("user_id", pa.string()),
        (FIRST_TS, STREAM_SCHEMA.field("event_ts").type),
        (FIRST_ID, pa.string()),
    ]
)
#: The affected dates of a micro-batch (`stream_plan.changed_rows`).
DATES_SCHEMA: Final = pa.schema([("date", pa.date32())])


def stand_in_rows(keys: pa.Table) -> pa.Table:
    """Index keys (`KEY_COLUMNS` and `date`) as stream table rows: the other columns null."""
    return pa.table(
        {
            f.name: keys[f.name] if f.name in keys.column_names else pa.nulls(keys.num_rows, f.type)
            for f in STREAM_SCHEMA
        },
        schema=STREAM_SCHEMA,
    )


def affected_dates(new_dates: set[date]) -> tuple[set[date], set[date]]:
    """The dates a micro-batch can change (each new date and the next) and the dates whose
    stored rows are their sessions' context (those and the day before each). The calendar's
    first and last days have no day before or after (an absurd event time must not stop the
    stream)."""
    affected = new_dates | {d + timedelta(days=1) for d in new_dates if d < date.max}
    return affected, affected | {d - timedelta(days=1) for d in affected if d > date.min}


def _index_keys(index: dict[HourKey, PartitionKeys]) -> pa.Table | None:
    if not index:
        return None
    return pa.concat_tables(
        [p.keys.select(["date", *KEY_COLUMNS]) for p in index.values()],
        promote_options="permissive",
    )


def _split_users(firsts: pa.Table, keys: pa.Table | None) -> tuple[pa.Table, list[str]]:
    """The index's stand-in rows for the micro-batch's in-order users, and its out-of-order
    users (a new event at or before a stored one: their stored rows are read whole)."""
    if keys is None:
        return STREAM_SCHEMA.empty_table(), []
    late = sorted(out_of_order_users(firsts, keys))
    in_order = pc.and_(
        pc.is_in(keys["user_id"], value_set=firsts["user_id"]),
        pc.invert(pc.is_in(keys["user_id"], value_set=pa.array(late, pa.string()))),
    )
    return stand_in_rows(keys.filter(in_order)), late


def _context_urls(layout: LakeLayout, dates: set[date]) -> tuple[str, list[str]]:
    root = layout.curated_root(STREAM_TABLE)
    return root, [p.url for p in list_partitions(root) if p.date in dates]


def apply_micro_batch(
    new_events: Any,
    layout: LakeLayout,
    gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES,
    merge: DuckDBMerge | None = None,
    on_live_rows: Callable[[pa.Table], object] | None = None,
) -> list[str]:
    """Merge one micro-batch of new, deduplicated events into the stream table and the live part
    of the warehouse (`user_behavior_live`, `shopflow.transform.stream_live`); return the files.

    `new_events` is the micro-batch (a Spark DataFrame). `merge` runs the merge on DuckDB (the
    micro-batch is collected into it); without one it runs on Spark. Re-sessionises the rows the
    micro-batch can change (`stream_plan.changed_rows`: its users' rows at or after their
    earliest new event in the affected dates, with the previous date as context) and replaces
    only the slices (`stream_slices`: `SLICE_MINUTES` of an hour) holding one, in both tables,
    keeping their other rows as stored.
    The stored rows before each user's first new key come from the key index (`stream_keys`),
    which this also keeps; only users with a new event at or before one already stored have
    their stored rows read. Idempotent: a replayed micro-batch (after a crash between the writes
    and the checkpoint commit) meets its own rows in the table and `dedup_events` keeps one copy.
    `on_live_rows` gets the micro-batch's changed live rows after the lake writes (the BigQuery
    warehouse's live table, `shopflow.warehouse.live.live_sink`).
    """
    if merge is not None and merge.gap_minutes != gap_minutes:
        raise ValueError(
            f"the merge was built for a {merge.gap_minutes}-minute gap, not {gap_minutes}"
        )
    selected = new_events.select(*NEW_EVENT_SCHEMA.names)
    if merge is not None:
        new = to_arrow(selected)
        new_dates = set(pc.unique(new["date"]).to_pylist())
        if not new_dates:
            return []
        affected, context = affected_dates(new_dates)
        index = read_keys(layout, STREAM_TABLE, context, gap_minutes, STREAM_FILE_SCHEMA)
        table_rows, live = merge.changed_and_live(new, layout, affected, context, index)
    else:
        cached = selected.cache()
        try:
            new_dates = {row["date"] for row in cached.select("date").distinct().collect()}
            if not new_dates:
                return []
            affected, context = affected_dates(new_dates)
            index = read_keys(layout, STREAM_TABLE, context, gap_minutes, STREAM_FILE_SCHEMA)
            table_rows, live = _spark_changed_and_live(
                cached, layout, affected, context, index, gap_minutes
            )
        finally:
            cached.unpersist()
    # Every partition is read before any is written: a read never sees this batch's writes.
    table = read_merged_slices(table_rows, layout, STREAM_TABLE)
    live_table = read_merged_slices(live, layout, LIVE_TABLE)
    # The stream table first: a crash between the two is replayed, and the replay rewrites both.
    # The index after the table: a crash between them leaves index files named for the table's
    # old files, which the next micro-batch rebuilds from the table.
    written = replace_slices(table, layout, STREAM_TABLE)
    update_keys(index, table_rows, layout, STREAM_TABLE, gap_minutes)
    written += replace_slices(live_table, layout, LIVE_TABLE)
    if on_live_rows is not None:
        on_live_rows(live)
    return written


def _spark_changed_and_live(
    new: Any,
    layout: LakeLayout,
    affected: set[date],
    context: set[date],
    index: dict[HourKey, PartitionKeys],
    gap_minutes: int,
) -> tuple[pa.Table, pa.Table]:
    """The micro-batch's changed stream rows and their live rows, computed on Spark."""
    spark = new.sparkSession
    t = transforms(spark)
    firsts = to_arrow(t.stream_plan.earliest_new_keys(new))
    stand_ins, late = _split_users(firsts, _index_keys(index))
    stored = create_dataframe(spark, stand_ins)
    if late:
        root, urls = _context_urls(layout, context)
        users = broadcast(
            create_dataframe(spark, pa.table({"user_id": pa.array(late, pa.string())}))
        )
        late_rows = read_parquet(spark, urls, STREAM_SCHEMA, base_path=root).join(users, "user_id")
        stored = stored.unionByName(late_rows)
    dates = pa.table({"date": pa.array(sorted(affected), pa.date32())})
    changed = t.stream_plan.changed_rows(
        stored,
        new,
        broadcast(create_dataframe(spark, firsts)),
        broadcast(create_dataframe(spark, dates)),
        gap_minutes,
    ).cache()
    try:
        histories = (read_history(spark, layout, name) for name in HISTORY_SCHEMAS)
        return to_arrow(changed), to_arrow(live_rows(t, changed, *histories))
    finally:
        changed.unpersist()


def check_file_types(url: str, schema: pa.Schema) -> None:
    """Raise a one-line `LakeError` if a column of Parquet file `url` named in `schema` has
    another kind of type (text, timestamp, boolean, ...). Why: DuckDB converts such a column
    silently where Spark refuses it (a text `is_first_version` of "yes" read as true made two
    history versions match one event)."""
    fs, path = resolve(url)
    with fs.open(path, "rb") as handle:
        found = pq.read_schema(handle)
    for field in schema:
        index = found.get_field_index(field.name)
        if index >= 0 and _kind(found.field(index).type) != _kind(field.type):
            raise LakeError(
                f"{url}: column {field.name} is {found.field(index).type}, expected {field.type}"
            )


def _kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"  # Spark's INT96 reads as timestamp[ns], the engines' own as [us, UTC]
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    return str(arrow_type)


class DuckDBMerge:
    """The micro-batch merge on a DuckDB (SQLFrame) session: its queries (`stream_plan`,
    `stream_live.live_rows`) built once (`shopflow.transform.prepared`) over input tables that
    each micro-batch reloads; the curated histories reloaded only when the ETL rewrote them."""

    def __init__(self, session: Any, gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES) -> None:
        t = transforms(session)
        self.session = session
        self.gap_minutes = gap_minutes
        self.inputs = PreparedInputs(
            session,
            {
                "new": NEW_EVENT_SCHEMA,
                "stored": STREAM_SCHEMA,
                "firsts": FIRSTS_SCHEMA,
                "affected": DATES_SCHEMA,
                "changed": STREAM_SCHEMA,
                **HISTORY_SCHEMAS,
            },
        )
        self.firsts = PreparedQuery(
            self.inputs, lambda new, **_: t.stream_plan.earliest_new_keys(new)
        )
        self.changed = PreparedQuery(
            self.inputs,
            lambda stored, new, firsts, affected, **_: t.stream_plan.changed_rows(
                stored, new, firsts, affected, gap_minutes
            ),
        )
        self.live = PreparedQuery(
            self.inputs,
            lambda changed, products_history, users_history, **_: live_rows(
                t, changed, products_history, users_history
            ),
        )
        self._history_files: dict[str, tuple[DataFile, ...]] = {}

    def changed_and_live(
        self,
        new: pa.Table,
        layout: LakeLayout,
        affected: set[date],
        context: set[date],
        index: dict[HourKey, PartitionKeys],
    ) -> tuple[pa.Table, pa.Table]:
        """The micro-batch's changed stream rows and their live rows."""
        self.inputs.load("new", new)
        firsts = self.firsts.run()
        stand_ins, late = _split_users(firsts, _index_keys(index))
        self.inputs.load("stored", stand_ins)
        if late:
            _, urls = _context_urls(layout, context)
            if urls:
                with scratch(self.session):
                    view = read_parquet_view(
                        self.session._conn, urls, STREAM_SCHEMA, f"_shopflow_stored_{id(self)}"
                    )
                    self.inputs.load_sql(
                        "stored",
                        f'SELECT * FROM "{view}" WHERE list_contains(?, user_id)',
                        [late],
                    )
        self.inputs.load("firsts", firsts)
        self.inputs.load("affected", pa.table({"date": pa.array(sorted(affected), pa.date32())}))
        changed = self.changed.run()
        self.inputs.load("changed", changed)
        self._load_histories(layout)
        return changed, self.live.run()

    def _load_histories(self, layout: LakeLayout) -> None:
        for name, schema in HISTORY_SCHEMAS.items():
            files = tuple(list_data_files(layout.curated_root(name)))
            if self._history_files.get(name) == files:
                continue
            # Forgotten first: a load that fails half-way must not pass for the old snapshot.
            self._history_files.pop(name, None)
            self.inputs.clear(name)
            for file in files:
                check_file_types(file.url, schema)
            if files:
                with scratch(self.session):
                    view = read_parquet_view(
                        self.session._conn, [f.url for f in files], schema, f"_shopflow_{name}"
                    )
                    self.inputs.load_sql(name, f'SELECT * FROM "{view}"')
            self._history_files[name] = files

    def close(self) -> None:
        """Drop the merge's input tables."""
        self.inputs.close()
