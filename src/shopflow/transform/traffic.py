"""Site traffic from clean events: volumes by type, visitors, sessions, conversion, engagement."""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopflow.transform._common import safe_ratio

#: Measures of `traffic_hourly` / `traffic_daily`, after the grain columns (date[, hour]).
TRAFFIC_MEASURES: Final = (
    "events",
    "views",
    "wishlists",
    "orders",
    "returns",
    "unique_visitors",
    "sessions",
    "view_to_wishlist_rate",
    "wishlist_to_order_rate",
    "view_to_order_rate",
    "return_rate",
    "events_per_session",
)


def _count_of(event_name: str) -> Column:
    return F.sum(F.when(F.col("event_name") == event_name, 1).otherwise(0)).cast("long")


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
    # Conversion is a ratio of event counts in the period (null when the denominator is zero).
    return counts.select(
        *grain,
        "events",
        "views",
        "wishlists",
        "orders",
        "returns",
        "unique_visitors",
        "sessions",
        safe_ratio(F.col("wishlists"), F.col("views")).alias("view_to_wishlist_rate"),
        safe_ratio(F.col("orders"), F.col("wishlists")).alias("wishlist_to_order_rate"),
        safe_ratio(F.col("orders"), F.col("views")).alias("view_to_order_rate"),
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
