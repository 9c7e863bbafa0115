"""Order events against API orders: each kind of mismatch counted on the right date."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import SparkSession

from shopflow.transform.events import events_clean
from shopflow.transform.orders import dedup_order_lines, orders_enriched
from shopflow.transform.products import products_clean
from shopflow.transform.reconciliation import ORDER_RECONCILIATION_COLUMNS, order_reconciliation
from tests.transform.builders import DAY, T0, raw_events, raw_orders, raw_products

NEXT_DAY = DAY + timedelta(days=1)


def _order(event_id: str, order_id: str, price: float, product_id: str = "p1") -> dict[str, object]:
    return {
        "event_id": event_id,
        "event_name": "order",
        "order_id": order_id,
        "price": price,
        "product_id": product_id,
    }


def test_order_reconciliation_counts_each_mismatch_per_date(spark: SparkSession) -> None:
    events = events_clean(
        raw_events(
            spark,
            [
                _order("e1", "o1", 100.0, "p1"),  # o1: two lines, amounts match the API
                _order("e2", "o1", 100.0, "p2"),
                _order("e3", "o2", 250.0),  # o2: the API says 300
                _order("e4", "o4", 80.0),  # o4: no API order
                {"event_id": "r1", "event_name": "return", "order_id": "o1"},  # matched
                {"event_id": "r4", "event_name": "return", "order_id": "o4"},  # order event only
                {"event_id": "r9", "event_name": "return", "order_id": "o9"},  # nothing matches
            ],
        )
    )
    products = products_clean(raw_products(spark, [{"product_id": "p1"}]))
    orders = orders_enriched(
        dedup_order_lines(
            raw_orders(
                spark,
                [
                    {"order_id": "o1", "product_id": "p1", "unit_price_inr": 100.0},
                    {"order_id": "o1", "product_id": "p2", "quantity": 2, "unit_price_inr": 50.0},
                    {"order_id": "o2", "quantity": 3, "unit_price_inr": 100.0},
                    # o3: placed the next day, no order event.
                    {"order_id": "o3", "date": NEXT_DAY, "order_ts": T0 + timedelta(days=1)},
                ],
            )
        ),
        products,
    )
    result = order_reconciliation(events, orders)
    assert tuple(result.columns) == ORDER_RECONCILIATION_COLUMNS
    rows = {row.date: row.asDict() for row in result.collect()}
    assert rows == {
        DAY: {
            "date": DAY,
            "api_orders": 2,
            "event_orders": 3,
            "matched_orders": 2,
            "orders_without_event": 0,
            "events_without_order": 1,
            "amount_mismatches": 1,
            "returns_without_order": 1,
        },
        NEXT_DAY: {
            "date": NEXT_DAY,
            "api_orders": 1,
            "event_orders": 0,
            "matched_orders": 0,
            "orders_without_event": 1,
            "events_without_order": 0,
            "amount_mismatches": 0,
            "returns_without_order": 0,
        },
    }
