"""Behaviour events: staged (typed, trimmed, checked), deduplicated and sessionised."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shopflow.contracts import EVENT_NAMES, EventBounds
from shopflow.schemas import EVENTS_CLEAN
from shopflow.transform._common import clean_id

#: Columns of `events_clean`, in order.
EVENTS_CLEAN_COLUMNS: Final = EVENTS_CLEAN.column_names

#: Columns of `stage_events`, in order (`reject_reason` is null for a good row).
STAGED_EVENT_COLUMNS: Final = (
    "event_id",
    "event_name",
    "product_id",
    "user_id",
    "order_id",
    "price",
    "event_ts",
    "date",
    "hour",
    "session_id",
    "message_id",
    "publish_ts",
    "ingest_ts",
    "reject_reason",
)

DEFAULT_SESSION_GAP_MINUTES: Final = 30
_DEFAULT_BOUNDS: Final = EventBounds()
_MICROS_PER_MINUTE: Final = 60 * 1_000_000
_MICROSECOND: Final = timedelta(microseconds=1)


def _reject_reason(bounds: EventBounds) -> Column:
    """The first contract check a staged row fails, or null."""
    name = F.col("event_name")
    price = F.col("price")
    order_id = F.col("order_id")
    needs_order = name.isin("order", "return")
    event_us = F.unix_micros(F.col("event_ts"))
    floor_us = (bounds.min_event_ts - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND
    # When the row landed: its ingest_ts, but never later than now (a missing or absurd one).
    now_us = F.unix_micros(F.current_timestamp())
    landed_us = F.least(F.coalesce(F.unix_micros(F.col("ingest_ts")), now_us), now_us)
    checks: list[tuple[Column, str]] = [
        (F.col("event_id").isNull(), "missing event_id"),
        (name.isNull(), "missing event_name"),
        (~name.isin(*EVENT_NAMES), "unknown event_name"),
        (F.col("product_id").isNull(), "missing product_id"),
        (F.col("user_id").isNull(), "missing user_id"),
        (F.col("event_ts").isNull(), "missing event_ts"),
        (price.isNull() | F.isnan(price), "missing price"),
        (price < 0, "negative price"),
        (needs_order & order_id.isNull(), "order/return event without order_id"),
        (~needs_order & order_id.isNotNull(), "view/wishlist event with an order_id"),
        # The landing's bounds again: a raw file written by anything else (or under wider
        # settings) must not bring a date the ETL cannot compute around, nor carry the stream's
        # watermark into the future, where every real event would count as too late.
        (event_us < F.lit(floor_us), "event_ts before the accepted floor"),
        (event_us > landed_us + F.lit(bounds.max_future // _MICROSECOND), "event_ts too far ahead"),
        (price > F.lit(bounds.max_price_inr), "price above the accepted ceiling"),
    ]
    return F.coalesce(*(F.when(failed, F.lit(reason)) for failed, reason in checks))


def stage_events(
    raw: DataFrame, keep: Sequence[str] = (), bounds: EventBounds = _DEFAULT_BOUNDS
) -> DataFrame:
    """Raw landed events typed and trimmed, each with a `reject_reason` (null when it is good).

    `date` and `hour` are derived from `event_ts` (UTC), the contract's source of truth, rather
    than taken from the partition path. `bounds` are the landing's (`event_bounds(settings)`): a
    row outside them is rejected too. Nothing is dropped here: see `valid_events` and
    `event_rejects`. The raw columns named in `keep` follow `reject_reason` unchanged (the job
    keeps the raw partition date to file rejects under).
    """
    event_ts = F.col("event_ts").cast("timestamp")
    typed = raw.select(
        clean_id(F.col("event_id").cast("string")).alias("event_id"),
        F.lower(F.trim(F.col("event_name").cast("string"))).alias("event_name"),
        clean_id(F.col("product_id").cast("string")).alias("product_id"),
        clean_id(F.col("user_id").cast("string")).alias("user_id"),
        clean_id(F.col("order_id").cast("string")).alias("order_id"),
        F.col("price").cast("double").alias("price"),
        event_ts.alias("event_ts"),
        F.to_date(event_ts).alias("date"),
        F.hour(event_ts).cast("int").alias("hour"),
        clean_id(F.col("session_id").cast("string")).alias("session_id"),
        F.col("message_id").cast("string").alias("message_id"),
        F.col("publish_ts").cast("timestamp").alias("publish_ts"),
        F.col("ingest_ts").cast("timestamp").alias("ingest_ts"),
        *keep,
    )
    return typed.select(
        *STAGED_EVENT_COLUMNS[:-1], _reject_reason(bounds).alias("reject_reason"), *keep
    )


def valid_events(staged: DataFrame) -> DataFrame:
    """The staged events that passed every check, without `reject_reason`."""
    return staged.where(F.col("reject_reason").isNull()).drop("reject_reason")


def event_rejects(staged: DataFrame) -> DataFrame:
    """The staged events that failed a check, with their `reject_reason`."""
    return staged.where(F.col("reject_reason").isNotNull())


def dedup_events(df: DataFrame) -> DataFrame:
    """One row per `event_id`: the copy landed first (earliest `ingest_ts`, then `message_id`)."""
    first_landed = Window.partitionBy("event_id").orderBy(
        F.col("ingest_ts").asc_nulls_last(), F.col("message_id").asc_nulls_last()
    )
    return (
        df.withColumn("_landing_rank", F.row_number().over(first_landed))
        .where(F.col("_landing_rank") == 1)
        .drop("_landing_rank")
    )


def sessionise(df: DataFrame, gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES) -> DataFrame:
    """Events with a `session_id`, its `session_source` ('client' or 'derived') and
    `session_start_ts`.

    A client `session_id` is kept. Otherwise a user's session ends when `gap_minutes` or more pass
    without an event from them (among their events without a client session); a derived id is
    `d-<user_id>-<first event's microseconds since the epoch>`, so re-runs give the same ids.

    Each date's events are sessionised with exactly the previous date as context (every event is
    looked at in the window of its own date and of the next date), so a date's sessions do not
    depend on which other dates are computed with it. Hence the rules: a derived session is traced
    back at most to the start of the previous date (one active for longer, without a 30-minute
    gap, gets a new id where its start falls out of the window), and a client session id used again
    after a whole date without it is a new session. `session_start_ts` is the session's first
    event in the window: a session counts as started on that event's date.
    """
    if gap_minutes <= 0:
        raise ValueError(f"gap_minutes must be positive, got {gap_minutes}")
    client = F.col("session_id").isNotNull()
    by_user = Window.partitionBy("_window", "user_id", "_client").orderBy("event_ts", "event_id")
    by_session = Window.partitionBy("_window", "user_id", "_client", "session_id")
    # Each window is computed in a column of its own: a window over a window's result is not
    # portable (Spark splits it into steps; DuckDB rejects nested window calls).
    event_us = F.col("_event_us")
    previous_us = F.col("_previous_us")
    starts_session = previous_us.isNull() | (
        event_us - previous_us >= gap_minutes * _MICROS_PER_MINUTE
    )
    # A user's events are ordered by time, so the start of the session an event belongs to is the
    # running maximum of the session starts so far: one sort serves every window here.
    running = by_user.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    derived_id = F.concat(
        F.lit("d-"), F.col("user_id"), F.lit("-"), F.col("_session_start_us").cast("string")
    )
    windowed = df.withColumn(
        "_window", F.explode(F.array(F.col("date"), F.date_add(F.col("date"), 1)))
    )
    return (
        windowed.withColumn("_client", client)
        .withColumn("_event_us", F.unix_micros(F.col("event_ts")))
        .withColumn("_previous_us", F.lag("_event_us").over(by_user))
        .withColumn("_session_start_us", F.max(F.when(starts_session, event_us)).over(running))
        .withColumn(
            "session_source", F.when(F.col("_client"), F.lit("client")).otherwise(F.lit("derived"))
        )
        .withColumn(
            "session_id", F.when(F.col("_client"), F.col("session_id")).otherwise(derived_id)
        )
        .withColumn("session_start_ts", F.min("event_ts").over(by_session))
        .where(F.col("_window") == F.col("date"))
        .drop("_window", "_client", "_event_us", "_previous_us", "_session_start_us")
    )


def events_clean_from_staged(
    staged: DataFrame, gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES
) -> DataFrame:
    """Staged events (`stage_events`) → valid, deduplicated, sessionised (`EVENTS_CLEAN_COLUMNS`)."""
    deduplicated = dedup_events(valid_events(staged))
    return sessionise(deduplicated, gap_minutes).select(*EVENTS_CLEAN_COLUMNS)


def events_clean(raw: DataFrame, gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES) -> DataFrame:
    """Raw landed events → valid, deduplicated, sessionised events (`EVENTS_CLEAN_COLUMNS`)."""
    return events_clean_from_staged(stage_events(raw), gap_minutes)
