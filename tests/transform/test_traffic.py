"""Traffic: hourly and daily numbers checked against hand-computed values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import DataFrame, SparkSession

from shopflow.transform.events import events_clean
from shopflow.transform.traffic import TRAFFIC_MEASURES, traffic_daily, traffic_hourly
from tests.transform.builders import DAY, T0, raw_events


def _minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture(scope="module")
def events(spark: SparkSession) -> DataFrame:
    """Two hours of traffic: 3 users, 5 sessions, 10 distinct events (one landed twice)."""
    rows = [
        # 10:00 hour. u1: one derived session view → wishlist → order.
        {"event_id": "e1", "user_id": "u1", "event_ts": T0},
        {"event_id": "e2", "user_id": "u1", "event_name": "wishlist", "event_ts": T0 + _minutes(5)},
        {
            "event_id": "e3",
            "user_id": "u1",
            "event_name": "order",
            "order_id": "o1",
            "event_ts": T0 + _minutes(10),
        },
        # A second line of the same order: two order events after one wishlist.
        {
            "event_id": "e3b",
            "user_id": "u1",
            "event_name": "order",
            "order_id": "o1",
            "product_id": "p2",
            "event_ts": T0 + _minutes(11),
        },
        # u2: two views in one derived session; u3: one view in a client session.
        {"event_id": "e4", "user_id": "u2", "event_ts": T0 + _minutes(20)},
        {"event_id": "e5", "user_id": "u2", "product_id": "p2", "event_ts": T0 + _minutes(25)},
        {"event_id": "e6", "user_id": "u3", "session_id": "s-3", "event_ts": T0 + _minutes(30)},
        # 11:00 hour: u1 and u2 come back after more than 30 minutes (new sessions).
        {"event_id": "e7", "user_id": "u1", "event_ts": T0 + _minutes(60)},
        {
            "event_id": "e8",
            "user_id": "u1",
            "event_name": "return",
            "order_id": "o1",
            "event_ts": T0 + _minutes(65),
        },
        {"event_id": "e9", "user_id": "u2", "event_ts": T0 + _minutes(70)},
        # A redelivered copy must not count twice.
        {"event_id": "e9", "user_id": "u2", "event_ts": T0 + _minutes(70), "message_id": "m-again"},
    ]
    return events_clean(raw_events(spark, rows))


def test_traffic_hourly_matches_hand_computed_numbers(events: DataFrame) -> None:
    hourly = traffic_hourly(events)
    assert tuple(hourly.columns) == ("date", "hour", *TRAFFIC_MEASURES)
    rows = {row.hour: row.asDict() for row in hourly.collect()}
    assert set(rows) == {10, 11}
    assert rows[10] == {
        "date": DAY,
        "hour": 10,
        "events": 7,
        "views": 4,
        "wishlists": 1,
        "orders": 2,
        "returns": 0,
        "unique_visitors": 3,
        "sessions": 3,
        # Of 3 sessions with a view, 1 wishlisted and ordered; the wishlisting one ordered.
        "view_to_wishlist_rate": pytest.approx(1 / 3),
        "wishlist_to_order_rate": 1.0,  # not 2.0: two order lines are one converted session
        "view_to_order_rate": pytest.approx(1 / 3),
        "return_rate": 0.0,
        "events_per_session": pytest.approx(7 / 3),
    }
    assert rows[11] == {
        "date": DAY,
        "hour": 11,
        "events": 3,
        "views": 2,
        "wishlists": 0,
        "orders": 0,
        "returns": 1,
        "unique_visitors": 2,
        "sessions": 2,
        "view_to_wishlist_rate": 0.0,
        "wishlist_to_order_rate": None,  # no wishlists: no ratio rather than a division by zero
        "view_to_order_rate": 0.0,
        "return_rate": None,
        "events_per_session": 1.5,
    }


def test_traffic_daily_matches_hand_computed_numbers(events: DataFrame) -> None:
    daily = traffic_daily(events)
    assert tuple(daily.columns) == ("date", *TRAFFIC_MEASURES)
    [row] = daily.collect()
    assert row.asDict() == {
        "date": DAY,
        "events": 10,
        "views": 6,
        "wishlists": 1,
        "orders": 2,
        "returns": 1,
        "unique_visitors": 3,
        "sessions": 5,
        "view_to_wishlist_rate": pytest.approx(1 / 5),
        "wishlist_to_order_rate": 1.0,
        "view_to_order_rate": pytest.approx(1 / 5),
        "return_rate": 0.5,
        "events_per_session": 2.0,
    }
