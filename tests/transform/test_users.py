"""Users: latest record per user, behaviour counts, spend, first and last seen."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import SparkSession

from shopflow.transform.events import events_clean
from shopflow.transform.orders import dedup_order_lines, orders_enriched
from shopflow.transform.products import products_clean
from shopflow.transform.users import USERS_ENRICHED_COLUMNS, users_clean, users_enriched
from tests.transform.builders import (
    T0,
    by_key,
    raw_events,
    raw_orders,
    raw_products,
    raw_users,
    utc,
)

HOUR = timedelta(hours=1)


def test_users_clean_keeps_the_latest_record(spark: SparkSession) -> None:
    raw = raw_users(
        spark,
        [
            {"user_name": "Asha  Rao", "updated_at": T0},
            {"user_name": "Asha\u00a0R. ", "email": " ASHA@Example.com ", "updated_at": T0 + HOUR},
        ],
    )
    [row] = users_clean(raw).collect()
    assert (row.user_id, row.user_name, row.email) == ("u1", "Asha R.", "asha@example.com")


def test_users_enriched(spark: SparkSession) -> None:
    users = raw_users(spark, [{"user_id": "u1"}, {"user_id": "u2", "user_name": "Ravi"}])
    events = events_clean(
        raw_events(
            spark,
            [
                {"event_id": "e1", "event_ts": T0},
                {"event_id": "e2", "event_ts": T0 + timedelta(minutes=5)},
                {"event_id": "e3", "event_name": "wishlist", "event_ts": T0 + timedelta(minutes=6)},
                {
                    "event_id": "e4",
                    "event_name": "order",
                    "order_id": "o1",
                    "event_ts": T0 + timedelta(minutes=7),
                },
                {
                    "event_id": "e5",
                    "event_name": "return",
                    "order_id": "o1",
                    "event_ts": T0 + 2 * HOUR,
                },
                {"event_id": "e9", "user_id": "u9"},  # an unknown user: not a row of its own
            ],
        )
    )
    products = products_clean(raw_products(spark, [{"product_id": "p1"}]))
    orders = orders_enriched(
        dedup_order_lines(
            raw_orders(
                spark,
                [
                    {"order_id": "o1", "product_id": "p1", "quantity": 2, "unit_price_inr": 100.0},
                    {"order_id": "o1", "product_id": "p2", "quantity": 1, "unit_price_inr": 50.0},
                    {
                        "order_id": "o2",
                        "quantity": 1,
                        "unit_price_inr": 999.0,
                        "status": "cancelled",
                    },
                ],
            )
        ),
        products,
    )
    enriched = users_enriched(users, events, orders)
    assert tuple(enriched.columns) == USERS_ENRICHED_COLUMNS
    rows = by_key(enriched.collect(), "user_id")
    assert set(rows) == {"u1", "u2"}
    u1 = rows["u1"]
    assert (u1.events, u1.views, u1.wishlists, u1.order_events, u1.returns) == (5, 2, 1, 1, 1)
    assert (u1.sessions, u1.orders, u1.ordered_amount_inr) == (2, 1, 250.0)
    assert (utc(u1.first_seen_ts), utc(u1.last_seen_ts)) == (T0, T0 + 2 * HOUR)
    u2 = rows["u2"]
    assert (u2.user_name, u2.events, u2.sessions, u2.orders, u2.ordered_amount_inr) == (
        "Ravi",
        0,
        0,
        0,
        0.0,
    )
    assert (u2.first_seen_ts, u2.last_seen_ts) == (None, None)
