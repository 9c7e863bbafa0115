"""What one streaming micro-batch can change in the stream table, and how a partition takes it.

Which rows can change (checked against `sessionise` and `dedup_events`):

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

So a micro-batch re-sessionises the touched users' rows only (`changed_rows`) and replaces just
the (date, hour) partitions that hold a changed row (`merge_partition`): each keeps its other
rows as stored. A replayed micro-batch meets its own rows in the table; `dedup_events` keeps one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopflow.transform.events import EVENTS_CLEAN_COLUMNS, dedup_events, sessionise

#: The key of each touched user's earliest new event (`earliest_new_keys`).
FIRST_TS: Final = "_first_ts"
FIRST_ID: Final = "_first_id"

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


def changed_rows(
    existing: DataFrame,
    new: DataFrame,
    affected: Iterable[date],
    gap_minutes: int,
) -> DataFrame:
    """The rows a micro-batch can change, re-sessionised (`EVENTS_CLEAN_COLUMNS`).

    `existing` is the table's rows of the affected dates and the day before each (the sessions'
    context), unsessionised and with a null `message_id`; `new` the micro-batch's events. Only the
    touched users' existing rows are sessionised with the new ones.
    """
    firsts = F.broadcast(earliest_new_keys(new))
    touched = existing.join(firsts.select("user_id"), "user_id", "left_semi")
    merged = dedup_events(touched.unionByName(new))
    return (
        sessionise(merged, gap_minutes)
        .where(F.col("date").isin(sorted(affected)))
        .join(firsts, "user_id")
        .where(at_or_after_first())
        .select(*EVENTS_CLEAN_COLUMNS)
    )


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
