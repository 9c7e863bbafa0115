"""Per-date activity, and the snapshots built from it equal the ones built from every event."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from functools import reduce
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, SparkSession

from shopflow.transform import activity
from shopflow.transform.engine import Transforms, to_arrow, transforms
from shopflow.transform.events import events_clean
from tests.transform import test_parity
from tests.transform.builders import DAY, T0, raw_events, utc
from tests.transform.test_parity import Inputs, Rows, assert_same_table

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
NEXT_DAY = DAY + timedelta(days=1)
MIDNIGHT = T0.replace(hour=0) + timedelta(days=1)

# Three days: derived and client sessions across midnight (s-b over all three days), an order
# whose events straddle midnight, an order placed (API) the day after its event, returns of known,
# event-only and unknown orders on later days, unknown products and users.
MULTI_DAY_EVENTS: Rows = [
    {"event_id": "a1", "event_ts": MIDNIGHT - 20 * MINUTE},
    {"event_id": "a2", "event_ts": MIDNIGHT - 5 * MINUTE, "event_name": "wishlist"},
    {"event_id": "a3", "event_ts": MIDNIGHT + 10 * MINUTE, "product_id": "p2"},
    {"event_id": "a4", "event_ts": MIDNIGHT + 3 * HOUR},
    {"event_id": "b1", "user_id": "u2", "session_id": "s-b", "event_ts": MIDNIGHT - HOUR},
    {"event_id": "b2", "user_id": "u2", "session_id": "s-b", "event_ts": MIDNIGHT + 2 * HOUR},
    {
        "event_id": "b3",
        "user_id": "u2",
        "session_id": "s-b",
        "event_ts": MIDNIGHT + 26 * HOUR,
        "product_id": "p9",
    },
    {
        "event_id": "o1a",
        "event_name": "order",
        "order_id": "o1",
        "price": 300.0,
        "event_ts": MIDNIGHT - MINUTE,
    },
    {
        "event_id": "o1b",
        "event_name": "order",
        "order_id": "o1",
        "product_id": "p2",
        "price": 200.0,
        "event_ts": MIDNIGHT + MINUTE,
    },
    {
        "event_id": "o3a",
        "event_name": "order",
        "order_id": "o3",
        "product_id": "p6",
        "price": 2500.0,
        "user_id": "u3",
        "event_ts": T0 - 5 * HOUR,
    },
    {
        "event_id": "o6a",
        "event_name": "order",
        "order_id": "o6",
        "price": 100.0,
        "event_ts": T0 - 9 * HOUR,
    },
    {"event_id": "o8a", "event_name": "order", "order_id": "o8", "price": 1.0, "user_id": "u9"},
    {"event_id": "r1", "event_name": "return", "order_id": "o1", "event_ts": MIDNIGHT + 5 * HOUR},
    {"event_id": "r1b", "event_name": "return", "order_id": "o1", "event_ts": MIDNIGHT + 6 * HOUR},
    {"event_id": "r8", "event_name": "return", "order_id": "o8", "event_ts": MIDNIGHT + 30 * HOUR},
    {"event_id": "r9", "event_name": "return", "order_id": "o9", "event_ts": MIDNIGHT + 31 * HOUR},
    {"event_id": "c1", "user_id": "u3", "session_id": "s-c", "event_ts": T0},
    {"event_id": "c2", "user_id": "u3", "session_id": "s-c", "event_ts": MIDNIGHT + HOUR},
]


def _random_events(seed: int, count: int, days: int) -> Rows:
    """Events of 6 users on 7 products over `days` days, with visits crossing midnight.

    A client session id covers a user's events among 15 consecutive ones (hours, never a day).
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    start = T0.replace(hour=0)
    end = start + timedelta(days=days)
    clock = {f"u{n}": start + rng.random() * timedelta(hours=6) for n in range(6)}
    for n in range(count):
        user = rng.choice(sorted(clock))
        clock[user] += timedelta(minutes=rng.choice([1, 4, 12, 29, 31, 45, 120, 400]))
        ts = clock[user]
        if ts >= end:
            continue
        name = rng.choices(["view", "wishlist", "order", "return"], [10, 3, 2, 1])[0]
        row: dict[str, Any] = {
            "event_id": f"r{n}",
            "event_name": name,
            "user_id": user,
            "product_id": f"p{rng.randrange(1, 8)}",
            "price": float(rng.randrange(1, 500)),
            "event_ts": ts,
            "session_id": rng.choice([None, None, f"s-{user}-{n // 15}"]),
        }
        if name in ("order", "return"):
            row["order_id"] = f"o{rng.randrange(1, 12)}"
        rows.append(row)
    return rows


FIXTURES: dict[str, Rows] = {
    "catalogue": test_parity.CATALOGUE_EVENTS,
    "traffic": test_parity.TRAFFIC_EVENTS,
    "sessions": test_parity.SESSION_EVENTS,
    "multi_day": MULTI_DAY_EVENTS,
    "random_4_days": _random_events(7, 500, 4),
}


# --- per-date tables ----------------------------------------------------------------------------


def test_product_activity_daily_counts_per_date_and_product(spark: SparkSession) -> None:
    clean = events_clean(raw_events(spark, MULTI_DAY_EVENTS))
    table = activity.product_activity_daily(clean)
    assert tuple(table.columns) == activity.PRODUCT_ACTIVITY_DAILY_COLUMNS
    rows = {(r.date, r.product_id): r.asDict() for r in table.collect()}
    day1 = {k: v for k, v in rows[(NEXT_DAY, "p1")].items() if k not in ("date", "product_id")}
    # a4, b2, c2 (views); r1, r1b (returns); no order of p1 that day.
    assert day1 == {"events": 5, "views": 3, "wishlists": 0, "order_events": 0, "returns": 2}
    assert rows[(DAY, "p1")]["order_events"] == 3  # o1a, o6a, o8a
    assert rows[(NEXT_DAY, "p2")]["order_events"] == 1
    assert sum(r["events"] for r in rows.values()) == len(MULTI_DAY_EVENTS)


def test_user_activity_daily_counts_a_session_on_the_date_it_starts(spark: SparkSession) -> None:
    clean = events_clean(raw_events(spark, MULTI_DAY_EVENTS))
    table = activity.user_activity_daily(clean)
    assert tuple(table.columns) == activity.USER_ACTIVITY_DAILY_COLUMNS
    rows = {(r.date, r.user_id): r for r in table.collect()}
    u1_day, u1_next = rows[(DAY, "u1")], rows[(NEXT_DAY, "u1")]
    # u1's derived sessions: o6a (01:00), then a1..a3 with o1a, o1b (23:40 to 00:10) on DAY; a4
    # (03:00), r1 (05:00) and r1b (06:00) on the next day.
    assert (u1_day.sessions_started, u1_next.sessions_started) == (2, 3)
    assert (u1_day.events, u1_day.order_events, u1_day.wishlists) == (4, 2, 1)
    assert utc(u1_day.first_seen_ts) == T0 - 9 * HOUR
    assert utc(u1_next.last_seen_ts) == MIDNIGHT + 6 * HOUR
    u2 = {d: r.sessions_started for (d, u), r in rows.items() if u == "u2"}
    assert u2 == {DAY: 1, NEXT_DAY: 0, NEXT_DAY + timedelta(days=1): 0}
    assert rows[(NEXT_DAY, "u3")].sessions_started == 0


def test_user_activity_daily_counts_a_session_on_the_date_it_started(
    spark: SparkSession,
) -> None:
    # The next date's events alone carry where each session started (session_start_ts): the
    # sessions that began before midnight are not counted again.
    clean = events_clean(raw_events(spark, MULTI_DAY_EVENTS))
    next_day = clean.where(clean["date"] == NEXT_DAY)
    alone = {
        r.user_id: r.sessions_started for r in activity.user_activity_daily(next_day).collect()
    }
    assert alone == {"u1": 3, "u2": 0, "u3": 0}


def test_a_client_session_resumed_after_a_day_without_events_counts_again(
    spark: SparkSession,
) -> None:
    # The documented limit: each date looks back one date, so a client id reused after a whole
    # day without events is a new session (derived sessions cannot skip a day).
    rows: Rows = [
        {"event_id": "c1", "session_id": "s-c", "event_ts": T0},
        {"event_id": "c2", "session_id": "s-c", "event_ts": T0 + 48 * HOUR},
    ]
    clean = events_clean(raw_events(spark, rows))
    later = clean.where(clean["date"] == DAY + timedelta(days=2))
    [row] = activity.user_activity_daily(later).collect()
    assert row.sessions_started == 1


def test_order_activity_daily(spark: SparkSession) -> None:
    clean = events_clean(raw_events(spark, MULTI_DAY_EVENTS))
    table = activity.order_activity_daily(clean)
    assert tuple(table.columns) == activity.ORDER_ACTIVITY_DAILY_COLUMNS
    rows = {(r.date, r.order_id): r.asDict() for r in table.collect()}
    assert set(rows) == {
        (DAY, "o1"),
        (NEXT_DAY, "o1"),
        (DAY, "o3"),
        (DAY, "o6"),
        (DAY, "o8"),
        (NEXT_DAY + timedelta(days=1), "o8"),
        (NEXT_DAY + timedelta(days=1), "o9"),
    }
    assert rows[(NEXT_DAY, "o1")] == {
        "date": NEXT_DAY,
        "order_id": "o1",
        "order_events": 1,
        "order_amount_inr": 200.0,
        "returns": 2,
    }
    assert rows[(NEXT_DAY + timedelta(days=1), "o9")]["order_amount_inr"] is None


# --- the snapshots: from every event, and from per-date tables computed one date at a time -----


def _dates(clean: Any) -> list[date]:
    return sorted({row["date"] for row in clean.select("date").distinct().collect()})


def _daily(t: Transforms, clean: Any, build: Callable[[Any, Any], Any]) -> Any:
    """A per-date table computed date by date, each from that date's events (and the day before),
    as the hourly runs compute them."""
    f = t.functions
    parts = [
        build(
            clean.where(f.col("date") == f.lit(day)),
            clean.where(f.col("date") == f.lit(day - timedelta(days=1))),
        )
        for day in _dates(clean)
    ]
    return reduce(lambda left, right: left.unionByName(right), parts)


def _full_and_incremental(
    t: Transforms, raw: Inputs, rows: Rows
) -> dict[str, tuple[DataFrame, DataFrame]]:
    clean = t.events.events_clean(raw.events(rows, nullable=True))
    products = t.products.products_clean(raw.products(test_parity.PRODUCTS, nullable=True))
    orders = t.orders.orders_enriched(
        t.orders.dedup_order_lines(raw.orders(test_parity.ORDERS, nullable=True)), products
    )
    raw_users = raw.users([*test_parity.USERS, {"user_id": "u4"}, {"user_id": "u5"}])
    a = t.activity
    users_daily = _daily(t, clean, lambda day, _: a.user_activity_daily(day))
    products_daily = _daily(t, clean, lambda day, _: a.product_activity_daily(day))
    orders_daily = _daily(t, clean, lambda day, _: a.order_activity_daily(day))
    return {
        "users_enriched": (
            t.users.users_enriched(raw_users, clean, orders),
            t.users.users_enriched_from_daily(t.users.users_clean(raw_users), users_daily, orders),
        ),
        "category_summary": (
            t.products.category_summary(products, clean, orders),
            t.products.category_summary_from_daily(products, products_daily, orders),
        ),
        "order_reconciliation": (
            t.reconciliation.order_reconciliation(clean, orders),
            t.reconciliation.order_reconciliation_from_daily(orders_daily, orders),
        ),
    }


def _assert_identical(full: pa.Table, incremental: pa.Table) -> None:
    assert full.schema == incremental.schema
    assert_same_table(full, incremental)


#: Fixtures whose snapshots the both-engines test below also computes on Spark and checks there.
BOTH_ENGINES = ("multi_day", "random_4_days")


@pytest.mark.parametrize("fixture", sorted(set(FIXTURES) - set(BOTH_ENGINES)))
def test_snapshots_from_daily_tables_equal_the_full_computation(
    fixture: str, spark: SparkSession
) -> None:
    rows = FIXTURES[fixture]
    pairs = _full_and_incremental(transforms(spark), Inputs(spark, spark), rows)
    for name, (full, incremental) in pairs.items():
        full_table = to_arrow(full)
        assert full_table.num_rows > 0, name
        _assert_identical(full_table, to_arrow(incremental))


def test_the_equality_check_sees_a_session_counted_twice(spark: SparkSession) -> None:
    # With every event taken for a session start, a session across midnight counts on both dates.
    t = transforms(spark)
    sessionised = t.events.events_clean(raw_events(spark, MULTI_DAY_EVENTS))
    clean = sessionised.withColumn("session_start_ts", sessionised["event_ts"])
    raw = Inputs(spark, spark)
    raw_users = raw.users(test_parity.USERS, nullable=True)
    orders = t.orders.orders_enriched(
        t.orders.dedup_order_lines(raw.orders(test_parity.ORDERS, nullable=True)),
        t.products.products_clean(raw.products(test_parity.PRODUCTS, nullable=True)),
    )
    daily = _daily(t, clean, lambda day, _: activity.user_activity_daily(day))
    full = to_arrow(t.users.users_enriched(raw_users, clean, orders))
    incremental = to_arrow(
        t.users.users_enriched_from_daily(t.users.users_clean(raw_users), daily, orders)
    )
    with pytest.raises(AssertionError):
        _assert_identical(full, incremental)


# --- the same on DuckDB (SQLFrame) ----------------------------------------------------------------


@pytest.mark.parametrize("fixture", BOTH_ENGINES)
def test_daily_tables_and_snapshots_are_the_same_on_both_engines(
    fixture: str, spark: SparkSession, duckdb_session: Any
) -> None:
    rows = FIXTURES[fixture]

    def tables(session: Any) -> dict[str, pa.Table]:
        t = transforms(session)
        raw = Inputs(spark, session)
        clean = t.events.events_clean(raw.events(rows, nullable=True))
        out = {
            "product_activity_daily": t.activity.product_activity_daily(clean),
            "user_activity_daily": _daily(
                t, clean, lambda day, _: t.activity.user_activity_daily(day)
            ),
            "order_activity_daily": t.activity.order_activity_daily(clean),
        }
        for name, (full, incremental) in _full_and_incremental(t, raw, rows).items():
            out[name] = full
            out[f"{name}_from_daily"] = incremental
        return {name: to_arrow(df) for name, df in out.items()}

    on_spark, on_duckdb = tables(spark), tables(duckdb_session)
    for name, table in on_spark.items():
        assert table.num_rows > 0, name
        assert_same_table(table, on_duckdb[name])
    # Each engine's snapshots from the per-date tables equal its full computation (on Spark, the
    # check test_snapshots_from_daily_tables_equal_the_full_computation makes for the others).
    for name in ("users_enriched", "category_summary", "order_reconciliation"):
        _assert_identical(on_spark[name], on_spark[f"{name}_from_daily"])
        _assert_identical(on_duckdb[name], on_duckdb[f"{name}_from_daily"])
