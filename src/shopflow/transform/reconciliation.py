"""Order events against API orders: every kind of mismatch counted per date, none hidden."""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopflow.schemas import ORDER_RECONCILIATION

#: Columns of `order_reconciliation`, in order.
ORDER_RECONCILIATION_COLUMNS: Final = ORDER_RECONCILIATION.column_names

#: Largest difference between the order events' amount and the API order total that still matches.
AMOUNT_TOLERANCE_INR: Final = 0.01

_COUNTS: Final = ORDER_RECONCILIATION_COLUMNS[1:]


def _flag(condition: Column) -> Column:
    return F.when(condition, 1).otherwise(0)


def order_reconciliation(events_clean: DataFrame, orders_enriched: DataFrame) -> DataFrame:
    """Per date: orders seen by the API and by events, and counts of each mismatch.

    An order is dated by the API (else by its events); a return by its event. The events' amount
    for an order is the sum of its order events' `price`; it must equal `order_total_inr` within
    `AMOUNT_TOLERANCE_INR`. A return matches if its order_id has an order event or an API order.
    """
    event_orders = (
        events_clean.where(F.col("event_name") == "order")
        .groupBy(F.col("order_id").alias("_event_order_id"))
        .agg(
            F.min("date").alias("_event_date"),
            F.sum("price").alias("_event_amount_inr"),
        )
    )
    returns = events_clean.where(F.col("event_name") == "return").select(
        "date", "order_id", F.lit(1).alias("_returns")
    )
    return _reconciliation(event_orders, returns, orders_enriched)


def order_reconciliation_from_daily(
    order_activity_daily: DataFrame, orders_enriched: DataFrame
) -> DataFrame:
    """`order_reconciliation` with the events side taken from every date of `order_activity_daily`.

    An order's events date is the first date with its order events, its amount the sum over dates.
    """
    event_orders = (
        order_activity_daily.where(F.col("order_events") > 0)
        .groupBy(F.col("order_id").alias("_event_order_id"))
        .agg(
            F.min("date").alias("_event_date"),
            F.sum("order_amount_inr").alias("_event_amount_inr"),
        )
    )
    returns = order_activity_daily.where(F.col("returns") > 0).select(
        "date", "order_id", F.col("returns").alias("_returns")
    )
    return _reconciliation(event_orders, returns, orders_enriched)


def _reconciliation(
    event_orders: DataFrame, returns: DataFrame, orders_enriched: DataFrame
) -> DataFrame:
    """Per-date counts from per-order events (`_event_order_id`, `_event_date`,
    `_event_amount_inr`), returns (`date`, `order_id`, `_returns` count) and the API's orders."""
    api_orders = orders_enriched.groupBy(F.col("order_id").alias("_api_order_id")).agg(
        F.min("date").alias("_api_date"),
        F.max("order_total_inr").alias("_order_total_inr"),
    )
    both = event_orders.join(
        api_orders, event_orders["_event_order_id"] == api_orders["_api_order_id"], "full"
    )
    in_api = F.col("_api_order_id").isNotNull()
    in_events = F.col("_event_order_id").isNotNull()
    amount_differs = F.abs(F.col("_event_amount_inr") - F.col("_order_total_inr")) > F.lit(
        AMOUNT_TOLERANCE_INR
    )
    per_order = both.select(
        F.coalesce(F.col("_api_date"), F.col("_event_date")).alias("date"),
        _flag(in_api).alias("api_orders"),
        _flag(in_events).alias("event_orders"),
        _flag(in_api & in_events).alias("matched_orders"),
        _flag(in_api & ~in_events).alias("orders_without_event"),
        _flag(in_events & ~in_api).alias("events_without_order"),
        _flag(in_api & in_events & amount_differs).alias("amount_mismatches"),
        F.lit(0).alias("returns_without_order"),
    )

    known_orders = (
        event_orders.select(F.col("_event_order_id").alias("_known_order_id"))
        .union(api_orders.select(F.col("_api_order_id").alias("_known_order_id")))
        .distinct()
    )
    per_return = returns.join(
        known_orders, returns["order_id"] == known_orders["_known_order_id"], "left"
    ).select(
        "date",
        *(F.lit(0).alias(name) for name in _COUNTS[:-1]),
        (_flag(F.col("_known_order_id").isNull()) * F.col("_returns")).alias(
            "returns_without_order"
        ),
    )

    return (
        per_order.unionByName(per_return)
        .groupBy("date")
        .agg(*(F.sum(name).cast("long").alias(name) for name in _COUNTS))
        .select(*ORDER_RECONCILIATION_COLUMNS)
    )
