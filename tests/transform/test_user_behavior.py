"""The unified table: exactly one row per distinct event, unknown products and users kept."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import SparkSession

from shopflow.transform.events import events_clean
from shopflow.transform.products import products_history
from shopflow.transform.user_behavior import USER_BEHAVIOR_COLUMNS, user_behavior
from shopflow.transform.users import users_history
from tests.transform.builders import DAY, T0, by_key, raw_events, raw_products, raw_users

HOUR = timedelta(hours=1)


def test_one_row_per_distinct_event_including_unknown_products_and_users(
    spark: SparkSession,
) -> None:
    events = events_clean(
        raw_events(
            spark,
            [
                {"event_id": "e1", "price": 100.0},
                {
                    "event_id": "e1",
                    "price": 100.0,
                    "message_id": "m-redelivered",
                    "ingest_ts": T0 + HOUR,
                },
                {"event_id": "e2", "product_id": "p9"},
                {"event_id": "e3", "user_id": "u9", "session_id": "s-9"},
                {"event_id": "e4", "event_name": "order", "order_id": "o1", "price": 300.0},
                {"event_id": "e5", "event_ts": T0 + 2 * HOUR},
            ],
        )
    )
    # The catalogue and user table hold duplicates too; they must not multiply events.
    products = products_history(
        raw_products(
            spark,
            [
                {"product_id": "p1", "product_name": "Old", "updated_at": T0},
                {"product_id": "p1", "product_name": "Shirt", "updated_at": T0 + HOUR},
            ],
        )
    )
    users = users_history(
        raw_users(
            spark,
            [{"user_id": "u1", "updated_at": T0}, {"user_id": "u1", "updated_at": T0 + HOUR}],
        )
    )
    behavior = user_behavior(events, products, users)
    assert tuple(behavior.columns) == USER_BEHAVIOR_COLUMNS
    collected = behavior.collect()
    assert len(collected) == 5
    rows = by_key(collected, "event_id")
    assert set(rows) == {"e1", "e2", "e3", "e4", "e5"}
    e1 = rows["e1"]
    # e1 happened at T0, when p1 was still called "Old" (renamed at T0 + 1 h): names as of then.
    assert (e1.date, e1.product_name, e1.user_name, e1.category) == (
        DAY,
        "Old",
        "Asha Rao",
        "Clothing",
    )
    assert (rows["e2"].product_name, rows["e2"].category, rows["e2"].user_name) == (
        None,
        None,
        "Asha Rao",
    )
    assert (rows["e3"].user_name, rows["e3"].product_name, rows["e3"].session_id) == (
        None,
        "Old",
        "s-9",
    )
    assert rows["e5"].product_name == "Shirt"  # after the rename
    assert (rows["e4"].order_id, rows["e4"].price, rows["e4"].event_name) == ("o1", 300.0, "order")
