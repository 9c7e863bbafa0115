"""Site traffic from clean events: volumes by type, visitors, sessions, conversion, engagement."""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopflow.schemas import TRAFFIC_DAILY
from shopflow.transform._common import safe_ratio

#: Measures of `traffic_hourly` / `traffic_daily`, after the grain columns (date[, hour]).
TRAFFIC_MEASURES: Final = TRAFFIC_DAILY.column_names[1:]


def _count_of(event_name: str) -> Column:
    return F.sum(F.when(F.col("event_name") == event_name, 1).otherwise(0)).cast("long")


def _has(event_name: str) -> Column:
    return F.max(F.when(F.col("event_name") == event_name, 1).otherwise(0))


def _sessions_with(*flags: str) -> Column:
    both = F.lit(1)
    for flag in flags:
        both = both * F.col(flag)
    return F.sum(both).cast("long")


def _traffic(events_clean: DataFrame, grain: list[str]) -> DataFrame:
    counts = events_clean.groupBy(*grain).agg(
        F.count(F.lit(1)).cast("long").alias("events"),
        _count_of("view").alias("views"),
        _count_of("wishlist").alias("wishlists"),
        _count_of("order").alias("orders"),
        _count_of("return").alias("returns"),
        F.countDistinct("user_id").cast("long").alias("unique_visitors"),
        F.countDistinct("session_id").cast("long").alias("sessions"),
    )
    # Conversion is a funnel of sessions in the period: of the sessions with a view, the share
    # that also wishlisted or ordered; of those with a wishlist, the share that also ordered. Event
    # counts would not do: an order of three lines after one wishlist is one conversion, not 3.
    per_session = events_clean.groupBy(*grain, "session_id").agg(
        _has("view").alias("_viewed"),
        _has("wishlist").alias("_wishlisted"),
        _has("order").alias("_ordered"),
    )
    funnel = per_session.groupBy(*(F.col(g).alias(f"_f_{g}") for g in grain)).agg(
        _sessions_with("_viewed").alias("_viewing"),
        _sessions_with("_viewed", "_wishlisted").alias("_viewing_wishlisting"),
        _sessions_with("_viewed", "_ordered").alias("_viewing_ordering"),
        _sessions_with("_wishlisted").alias("_wishlisting"),
        _sessions_with("_wishlisted", "_ordered").alias("_wishlisting_ordering"),
    )
    same_period = None
    for g in grain:
        match = counts[g] == funnel[f"_f_{g}"]
        same_period = match if same_period is None else same_period & match
    joined = counts.join(funnel, same_period, "inner")
    return joined.select(
        *(counts[g] for g in grain),
        "events",
        "views",
        "wishlists",
        "orders",
        "returns",
        "unique_visitors",
        "sessions",
        safe_ratio(F.col("_viewing_wishlisting"), F.col("_viewing")).alias("view_to_wishlist_rate"),
        safe_ratio(F.col("_wishlisting_ordering"), F.col("_wishlisting")).alias(
            "wishlist_to_order_rate"
        ),
        safe_ratio(F.col("_viewing_ordering"), F.col("_viewing")).alias("view_to_order_rate"),
        # Returns follow orders of earlier periods, so this one can exceed 1.
        safe_ratio(F.col("returns"), F.col("orders")).alias("return_rate"),
        safe_ratio(F.col("events"), F.col("sessions")).alias("events_per_session"),
    )


def traffic_hourly(events_clean: DataFrame) -> DataFrame:
    """Traffic per (date, hour) of `event_ts`; columns: date, hour, then `TRAFFIC_MEASURES`.

    A session that spans hours counts in each hour it touches.
    """
    return _traffic(events_clean, ["date", "hour"])


def traffic_daily(events_clean: DataFrame) -> DataFrame:
    """Traffic per date of `event_ts`; columns: date, then `TRAFFIC_MEASURES`."""
    return _traffic(events_clean, ["date"])
