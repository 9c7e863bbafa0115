"""What one streaming micro-batch can change in the stream table, and how a partition takes it.

Which rows can change (checked against `sessionise` and `dedup_events`), given that the table holds
what `sessionise` gives over its own rows (only the stream writes it, always this way):

* Only the micro-batch's own users' rows. `sessionise` partitions every window by `user_id`, and
  `dedup_events` matches copies by `event_id`, which carry the same payload (so the same user,
  time and partition). Another user's rows get the same inputs, hence the same outputs.
* Of a touched user, only the rows at or after the key (`event_ts`, `event_id`) of their earliest
  new event. In each two-date window (`_window`) a user's rows are ordered by that key, and the
  new rows all sort at or after it, so an earlier row keeps its lag predecessor and its running
  maximum of session starts: the same derived id. Its `session_start_ts` is a minimum over its
  whole session, but the session's later rows (new ones included) are no earlier than the row
  itself: a derived session's minimum is its starting row, a client session's minimum is at or
  before the row. Copies of a stored row sort at its own key, so `dedup_events` only picks
  between copies at or after the earliest new key.
* Of those, only rows in the affected dates (each date with a new event and the day after it): a
  row is sessionised in the window of its own date, and other dates' windows hold no new row.

So a micro-batch re-sessionises the touched users' rows only (`changed_rows`), their rows before
the first new key reduced to the few that decide the changed rows' sessions (`context_rows`),
and replaces just the (date, hour) partitions that hold a changed row (`merge_partition`): each
keeps its other rows as stored. A replayed micro-batch meets its own rows in the table;
`dedup_events` keeps one.
"""

from __future__ import annotations

from datetime import date
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from shopflow.transform.events import EVENTS_CLEAN_COLUMNS, dedup_events, sessionise

#: The key of each touched user's earliest new event (`earliest_new_keys`).
FIRST_TS: Final = "_first_ts"
FIRST_ID: Final = "_first_id"
_MICROS_PER_MINUTE: Final = 60 * 1_000_000

#: A (date, hour) partition of an hourly table.
HourKey = tuple[date, int]


def earliest_new_keys(new: DataFrame) -> DataFrame:
    """Each user of `new` with the key (`_first_ts`, `_first_id`) of their earliest new event."""
    first = F.min(F.struct("event_ts", "event_id")).alias("_first")
    return (
        new.groupBy("user_id")
        .agg(first)
        .select(
            "user_id",
            F.col("_first.event_ts").alias(FIRST_TS),
            F.col("_first.event_id").alias(FIRST_ID),
        )
    )


def at_or_after_first() -> Column:
    """True for a row whose (`event_ts`, `event_id`) is at or after its user's first new key."""
    ts, first_ts = F.col("event_ts"), F.col(FIRST_TS)
    return (ts > first_ts) | ((ts == first_ts) & (F.col("event_id") >= F.col(FIRST_ID)))


def unsessionised(events_clean: DataFrame) -> DataFrame:
    """Stream table rows as they were before `sessionise`: a derived session id back to null (a
    client one is kept), without `session_source` and `session_start_ts`."""
    client = F.col("session_source") == "client"
    return events_clean.withColumn(
        "session_id", F.when(client, F.col("session_id")).otherwise(F.lit(None).cast("string"))
    ).drop("session_source", "session_start_ts")


def context_rows(touched: DataFrame, gap_minutes: int) -> DataFrame:
    """Of the touched users' stored rows (`touched`, with `_first_ts`/`_first_id`), those their
    changed rows depend on, or stand-ins giving the same result: every row at or after the first
    new key and, of the rows before it, the first and last derived row of each user, date and
    `gap_minutes` bucket of event time, and the first row of each user's client session per date.

    Among the derived rows kept, two in a row are either true neighbours (the last of a bucket and
    the first of the next one holding a row) or less than the gap apart (one bucket), so each kept
    row starts a session exactly when it does among all rows. Every session start is the first of
    its bucket, so the running maximum of starts, the derived ids and the sessions' first events
    are the same for the rows at or after the key; the last row before it, their lag predecessor,
    is kept. A client session's start is the minimum over its window's dates, each date's first
    row kept. Dates are in the keys, so a window (two dates) holds its rows' reductions whole.

    The rows before the key are kept as stand-ins (`stand_ins`): only the columns sessionising
    reads, the others null. They sort before the key, so `changed_rows` never returns them, and
    no new row shares their event id (a copy has the same key). Why: an aggregate over whole rows
    made Spark sort every stored row with all its columns, 3-8 s for a 1.14M-row day against
    about 1 s for the key alone (ad hoc, on a `bench latency` lake).
    """
    before = ~at_or_after_first()
    derived = F.col("session_source") == "derived"
    key = F.struct("event_ts", "event_id")
    bucket = F.floor(F.unix_micros("event_ts") / (gap_minutes * _MICROS_PER_MINUTE))
    derived_ends = (
        touched.where(derived & before)
        .groupBy("user_id", "date", bucket.alias("_bucket"))
        .agg(F.array_distinct(F.array(F.min(key), F.max(key))).alias("_keys"))
        .select("user_id", "date", F.explode("_keys").alias("_key"))
        .select("user_id", "date", *_key_fields(), F.lit("derived").alias("session_source"))
    )
    client_firsts = (
        touched.where(~derived & before)
        .groupBy("user_id", "session_id", "date")
        .agg(F.min(key).alias("_key"))
        .select(
            "user_id", "session_id", "date", *_key_fields(), F.lit("client").alias("session_source")
        )
    )
    after = touched.where(at_or_after_first()).select(*EVENTS_CLEAN_COLUMNS)
    return after.unionByName(stand_ins(derived_ends, touched.schema)).unionByName(
        stand_ins(client_firsts, touched.schema)
    )


def _key_fields() -> list[Column]:
    """The fields of a `_key` struct (`event_ts`, `event_id`) as columns (`"_key.*"` is not
    portable: SQLFrame cannot expand a struct)."""
    return [F.col(f"_key.{name}").alias(name) for name in ("event_ts", "event_id")]


def stand_ins(keys: DataFrame, schema: StructType) -> DataFrame:
    """`keys`' rows with every other `EVENTS_CLEAN_COLUMNS` column null, typed as in `schema`."""
    types = {field.name: field.dataType for field in schema.fields}
    return keys.select(
        *(
            F.col(name) if name in keys.columns else F.lit(None).cast(types[name]).alias(name)
            for name in EVENTS_CLEAN_COLUMNS
        )
    )


def changed_rows(
    stored: DataFrame,
    new: DataFrame,
    firsts: DataFrame,
    affected: DataFrame,
    gap_minutes: int,
) -> DataFrame:
    """The rows a micro-batch can change, re-sessionised (`EVENTS_CLEAN_COLUMNS`).

    `stored` is the table's rows of the affected dates and the day before each (the sessions'
    context), or stand-ins for them; `new` the micro-batch's events (unsessionised, with
    `message_id`); `firsts` its `earliest_new_keys`; `affected` the affected dates (one column,
    `date`: a table rather than literals, so the plan is the same for every micro-batch and
    `shopflow.transform.prepared` can build it once). Only the touched users' `context_rows` are
    sessionised with the new ones.
    """
    context = context_rows(_flat(stored.join(firsts, "user_id")), gap_minutes)
    # Rows already in the table were landed first (or are this batch's own, replayed).
    existing = unsessionised(context).select(*new.drop("message_id").columns)
    merged = dedup_events(
        existing.withColumn("message_id", F.lit(None).cast("string")).unionByName(new)
    )
    sessionised = sessionise(merged, gap_minutes)
    in_affected = _flat(sessionised.join(affected, "date", "left_semi"))
    return (
        _flat(in_affected.join(firsts, "user_id"))
        .where(at_or_after_first())
        .select(*EVENTS_CLEAN_COLUMNS)
    )


def _flat(joined: DataFrame) -> DataFrame:
    """A join's result as a plain selection of its columns. Why: SQLFrame, given a join of a
    union, later resolves its columns against both sides (ambiguous in DuckDB); Spark is the same
    either way."""
    return joined.select(*joined.columns)


def hour_keys(table: pa.Table) -> list[HourKey]:
    """The (date, hour) partitions holding rows of `table` (with `date` and `hour` columns)."""
    return sorted(set(zip(table["date"].to_pylist(), table["hour"].to_pylist(), strict=True)))


def hour_rows(table: pa.Table, key: HourKey) -> pa.Table:
    """The rows of `table` in the (date, hour) partition `key`."""
    day, hour = key
    return table.filter(
        pc.and_(
            pc.equal(table["date"], pa.scalar(day, pa.date32())),
            pc.equal(table["hour"], pa.scalar(hour, pa.int32())),
        )
    )


def merge_partition(stored: pa.Table, changed: pa.Table) -> pa.Table:
    """A partition's `stored` rows with those of `changed`'s event ids replaced by `changed`.

    Columns and types are `changed`'s. A changed row's stored copy is in its own partition (an
    event's partition follows from its time), so matching by `event_id` within it is enough.
    """
    kept = stored.filter(pc.invert(pc.is_in(stored["event_id"], value_set=changed["event_id"])))
    return pa.concat_tables([kept.select(changed.column_names).cast(changed.schema), changed])
