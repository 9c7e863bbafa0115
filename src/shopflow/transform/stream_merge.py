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

from datetime import date, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.lake import LakeLayout, list_partitions
from shopflow.schemas import EVENTS_CLEAN
from shopflow.transform.engine import (
    Transforms,
    broadcast,
    create_dataframe,
    materialize,
    read_parquet,
    release,
    scratch,
    to_arrow,
    transforms,
)
from shopflow.transform.events import DEFAULT_SESSION_GAP_MINUTES, EVENTS_CLEAN_COLUMNS
from shopflow.transform.stream_keys import (
    KEY_COLUMNS,
    PartitionKeys,
    out_of_order_users,
    read_keys,
    update_keys,
)
from shopflow.transform.stream_live import (
    live_rows,
    read_history,
    read_merged_partitions,
    replace_hour_partitions,
)
from shopflow.transform.stream_plan import HourKey
from shopflow.warehouse.live import LIVE_TABLE

#: The curated table the stream maintains (same columns and partitioning as `events_clean`).
STREAM_TABLE: Final = "events_clean_stream"
#: Columns of the stream table (`EVENTS_CLEAN_COLUMNS`, typed).
STREAM_SCHEMA: Final = EVENTS_CLEAN.lake_schema()
#: Columns of a stream table data file (`date` and `hour` are in its path).
STREAM_FILE_SCHEMA: Final = pa.schema([f for f in STREAM_SCHEMA if f.name not in ("date", "hour")])
#: The columns of a micro-batch's new events: unsessionised, with the copy's `message_id`.
NEW_EVENT_COLUMNS: Final = (
    *(c for c in EVENTS_CLEAN_COLUMNS if c not in ("session_source", "session_start_ts")),
    "message_id",
)


def stand_in_rows(keys: pa.Table) -> pa.Table:
    """Index keys (`KEY_COLUMNS` and `date`) as stream table rows: the other columns null."""
    return pa.table(
        {
            f.name: keys[f.name] if f.name in keys.column_names else pa.nulls(keys.num_rows, f.type)
            for f in STREAM_SCHEMA
        },
        schema=STREAM_SCHEMA,
    )


def _read_stored_rows(session: Any, layout: LakeLayout, dates: set[date]) -> Any:
    root = layout.curated_root(STREAM_TABLE)
    urls = [p.url for p in list_partitions(root) if p.date in dates]
    return read_parquet(session, urls, STREAM_SCHEMA, base_path=root)


def _stored_context(
    session: Any,
    firsts: pa.Table,
    layout: LakeLayout,
    dates: set[date],
    index: dict[HourKey, PartitionKeys],
) -> Any:
    """What `changed_rows` needs of the stored rows of `dates`: the key index's stand-ins for
    the micro-batch's in-order users (`firsts`: their earliest new keys), and the stored rows of
    the others (`stream_keys`)."""
    keys = pa.concat_tables(
        [p.keys.select(["date", *KEY_COLUMNS]) for p in index.values()],
        promote_options="permissive",
    ) if index else None  # fmt: skip
    late = out_of_order_users(firsts, keys) if keys is not None else set()
    parts: list[Any] = []
    if keys is not None:
        in_order = pc.and_(
            pc.is_in(keys["user_id"], value_set=firsts["user_id"]),
            pc.invert(pc.is_in(keys["user_id"], value_set=pa.array(sorted(late), pa.string()))),
        )
        chosen = keys.filter(in_order)
        if chosen.num_rows:
            parts.append(create_dataframe(session, stand_in_rows(chosen)))
    if late:
        users = create_dataframe(
            session, pa.table({"user_id": pa.array(sorted(late), pa.string())})
        )
        parts.append(_read_stored_rows(session, layout, dates).join(broadcast(users), "user_id"))
    if not parts:
        return create_dataframe(session, STREAM_SCHEMA.empty_table())
    stored = parts[0]
    for part in parts[1:]:
        stored = stored.unionByName(part)
    return stored


def apply_micro_batch(
    new_events: Any,
    layout: LakeLayout,
    gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES,
    session: Any | None = None,
) -> list[str]:
    """Merge one micro-batch of new, deduplicated events into the stream table and the live part
    of the warehouse (`user_behavior_live`, `shopflow.transform.stream_live`); return the files.

    `new_events` is a Spark DataFrame (the micro-batch); `session` the engine session that does
    the merge (a SQLFrame DuckDB session: the micro-batch is collected into it; none: Spark).
    Re-sessionises the rows the micro-batch can change (`stream_plan.changed_rows`: its users'
    rows at or after their earliest new event in the affected dates, with the previous date as
    context) and replaces only the hourly partitions holding one, in both tables, keeping their
    other rows as stored. The stored rows before each user's first new key come from the key
    index (`stream_keys`), which this also keeps; only users with a new event at or before one
    already stored have their stored rows read. Idempotent: a replayed micro-batch (after a
    crash between the writes and the checkpoint commit) meets its own rows in the table and
    `dedup_events` keeps one copy.
    """
    selected = new_events.select(*NEW_EVENT_COLUMNS)
    if session is None:
        session = new_events.sparkSession
    t = transforms(session)
    with scratch(session):
        if t.engine == "spark":
            new = materialize(selected)
        else:
            new = create_dataframe(session, to_arrow(selected))
        try:
            return _merge(t, session, new, layout, gap_minutes)
        finally:
            release(new)


def _merge(
    t: Transforms, session: Any, new: Any, layout: LakeLayout, gap_minutes: int
) -> list[str]:
    new_dates: set[date] = {row["date"] for row in new.select("date").distinct().collect()}
    if not new_dates:
        return []
    affected = new_dates | {d + timedelta(days=1) for d in new_dates}
    context = affected | {d - timedelta(days=1) for d in affected}
    index = read_keys(layout, STREAM_TABLE, context, gap_minutes, STREAM_FILE_SCHEMA)
    firsts = to_arrow(t.stream_plan.earliest_new_keys(new))
    stored = _stored_context(session, firsts, layout, context, index)
    firsts_df = broadcast(create_dataframe(session, firsts))
    changed = materialize(t.stream_plan.changed_rows(stored, new, firsts_df, affected, gap_minutes))
    try:
        table_rows = to_arrow(changed)
        live = to_arrow(
            live_rows(
                t,
                changed,
                read_history(session, layout, "products_history"),
                read_history(session, layout, "users_history"),
            )
        )
    finally:
        release(changed)
    # Every partition is read before any is written: a read never sees this batch's writes.
    table = read_merged_partitions(table_rows, layout, STREAM_TABLE)
    live_table = read_merged_partitions(live, layout, LIVE_TABLE)
    # The stream table first: a crash between the two is replayed, and the replay rewrites both.
    # The index after the table: a crash between them leaves index files named for the table's
    # old files, which the next micro-batch rebuilds from the table.
    written = replace_hour_partitions(table, layout, STREAM_TABLE)
    update_keys(index, table_rows, layout, STREAM_TABLE, gap_minutes)
    return written + replace_hour_partitions(live_table, layout, LIVE_TABLE)
