"""Compositions of the transforms that the batch run (`transform.jobs`) and the stream share:
staging, dead-letter rows, the activity tables. Pure: DataFrames in, DataFrames out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from shopflow.contracts import EventBounds
from shopflow.transform.curated_tables import RAW_DATE_COLUMN, DataFrame
from shopflow.transform.engine import Transforms
from shopflow.transform.events import STAGED_EVENT_COLUMNS


def staged_events(t: Transforms, raw: DataFrame, bounds: EventBounds) -> DataFrame:
    """Raw events staged once (checked against `bounds` too), with the raw partition date
    (`raw_date`) the rejects are filed by."""
    return t.events.stage_events(
        raw.withColumn(RAW_DATE_COLUMN, t.functions.col("date")),
        keep=(RAW_DATE_COLUMN,),
        bounds=bounds,
    )


def reject_rows(t: Transforms, staged: DataFrame, dates: Sequence[date] | None) -> DataFrame:
    """The dead-letter rows of staged events (of raw partition `dates`; None: all), with `reason`.

    Shared with the stream (`shopflow.transform.stream_live`), so both file the same rows.
    """
    # Keyed by the raw partition date (the folder it was read from): an event without a usable
    # event_ts has no event date of its own.
    F = t.functions
    staged_columns = [c for c in STAGED_EVENT_COLUMNS if c not in ("date", "hour", "reject_reason")]
    rejects = t.events.event_rejects(staged)
    if dates is not None:
        rejects = rejects.where(F.col(RAW_DATE_COLUMN).isin(list(dates)))
    return rejects.select(
        *staged_columns,
        F.col("date").alias("event_date"),
        F.col("hour").alias("event_hour"),
        F.col("reject_reason").alias("reason"),
        F.col(RAW_DATE_COLUMN).alias("date"),
    )


def dated(t: Transforms, df: DataFrame, dates: Sequence[date]) -> DataFrame:
    """The rows of `df` of the given dates."""
    return df.where(t.functions.col("date").isin(list(dates)))


def activity_tables(t: Transforms, clean: DataFrame) -> dict[str, DataFrame]:
    """The activity tables of the dates of `clean` (its clean events)."""
    return {
        "product_activity_daily": t.activity.product_activity_daily(clean),
        "user_activity_daily": t.activity.user_activity_daily(clean),
        "order_activity_daily": t.activity.order_activity_daily(clean),
    }
