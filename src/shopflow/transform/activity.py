"""Per-date activity of products, users and orders: the additive parts of the history snapshots.

`users_enriched`, `category_summary` and `order_reconciliation` summarise every event ever seen.
Their event side is a sum (or min/max) over these per-date tables, so a run recomputes the tables
only for the event dates it recomputes, and the snapshots read them instead of all events.
"""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopflow.schemas import ORDER_ACTIVITY_DAILY, PRODUCT_ACTIVITY_DAILY, USER_ACTIVITY_DAILY
from shopflow.transform._common import fill_nulls

#: Columns of `product_activity_daily`, in order: one row per event date and product.
PRODUCT_ACTIVITY_DAILY_COLUMNS: Final = PRODUCT_ACTIVITY_DAILY.column_names

#: Columns of `user_activity_daily`, in order: one row per event date and user.
USER_ACTIVITY_DAILY_COLUMNS: Final = USER_ACTIVITY_DAILY.column_names

#: Columns of `order_activity_daily`, in order: one row per event date and order with order or
#: return events that date.
ORDER_ACTIVITY_DAILY_COLUMNS: Final = ORDER_ACTIVITY_DAILY.column_names


def _event_count(event_name: str) -> Column:
    return F.sum(F.when(F.col("event_name") == event_name, 1).otherwise(0)).cast("long")


def _behaviour_counts() -> list[Column]:
    return [
        F.count(F.lit(1)).cast("long").alias("events"),
        _event_count("view").alias("views"),
        _event_count("wishlist").alias("wishlists"),
        _event_count("order").alias("order_events"),
        _event_count("return").alias("returns"),
    ]


def product_activity_daily(events_clean: DataFrame) -> DataFrame:
    """Per event date and product: events, and views, wishlists, order events and returns."""
    return (
        events_clean.groupBy("date", "product_id")
        .agg(*_behaviour_counts())
        .select(*PRODUCT_ACTIVITY_DAILY_COLUMNS)
    )


def user_activity_daily(events_clean: DataFrame) -> DataFrame:
    """Per event date and user: event counts, sessions started that date, first and last event.

    A session counts on the date of its `session_start_ts` (`shopflow.transform.events.sessionise`:
    its first event in the window of its date and the one before), so summing `sessions_started`
    over dates counts each session once, also when it crosses midnight, whichever dates are
    recomputed together.
    """
    keys = ["user_id", "session_id"]
    started = (
        events_clean.where(F.to_date(F.col("session_start_ts")) == F.col("date"))
        .select("date", *keys)
        .distinct()
        .groupBy("user_id", "date")
        .agg(F.count(F.lit(1)).cast("long").alias("sessions_started"))
    )
    activity = events_clean.groupBy("date", "user_id").agg(
        *_behaviour_counts(),
        F.min("event_ts").alias("first_seen_ts"),
        F.max("event_ts").alias("last_seen_ts"),
    )
    joined = activity.join(started, ["user_id", "date"], "left")
    return fill_nulls(joined.select(*USER_ACTIVITY_DAILY_COLUMNS), {"sessions_started": 0})


def order_activity_daily(events_clean: DataFrame) -> DataFrame:
    """Per event date and order: its order events and their amount (sum of `price`), returns."""
    is_order = F.col("event_name") == "order"
    return (
        events_clean.where(F.col("event_name").isin("order", "return"))
        .groupBy("date", "order_id")
        .agg(
            _event_count("order").alias("order_events"),
            F.sum(F.when(is_order, F.col("price"))).alias("order_amount_inr"),
            _event_count("return").alias("returns"),
        )
        .select(*ORDER_ACTIVITY_DAILY_COLUMNS)
    )
