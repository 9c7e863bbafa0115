"""Events: staging checks, first-landed-wins dedup, 30-minute sessions, client sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from shopflow.contracts import EventBounds
from shopflow.transform.events import (
    EVENTS_CLEAN_COLUMNS,
    STAGED_EVENT_COLUMNS,
    event_rejects,
    events_clean,
    events_clean_from_staged,
    sessionise,
    stage_events,
    valid_events,
)
from tests.transform.builders import T0, by_key, raw_events, utc


def _micros(offset: timedelta) -> int:
    return int((T0 + offset).timestamp()) * 1_000_000 + (T0 + offset).microsecond


def test_events_clean_has_the_contract_columns(spark: SparkSession) -> None:
    clean = events_clean(raw_events(spark, [{"event_id": "e1"}]))
    assert tuple(clean.columns) == EVENTS_CLEAN_COLUMNS
    row = clean.collect()[0]
    assert (row.date, row.hour) == (T0.date(), 10)
    assert utc(row.event_ts) == T0


def test_duplicates_across_files_first_landed_wins(spark: SparkSession) -> None:
    raw = raw_events(
        spark,
        [
            # The same event landed in three files; the later copies carry a different price so
            # the test can tell which copy survived.
            {
                "event_id": "e1",
                "price": 3.0,
                "message_id": "m3",
                "ingest_ts": T0 + timedelta(hours=2),
            },
            {
                "event_id": "e1",
                "price": 1.0,
                "message_id": "m1",
                "ingest_ts": T0 + timedelta(seconds=5),
            },
            {
                "event_id": "e1",
                "price": 2.0,
                "message_id": "m2",
                "ingest_ts": T0 + timedelta(hours=1),
            },
            # Landed twice in the same instant: the smaller message_id wins, deterministically.
            {
                "event_id": "e2",
                "price": 20.0,
                "message_id": "m20",
                "ingest_ts": T0 + timedelta(seconds=9),
            },
            {
                "event_id": "e2",
                "price": 10.0,
                "message_id": "m10",
                "ingest_ts": T0 + timedelta(seconds=9),
            },
        ],
    )
    rows = by_key(events_clean(raw).collect(), "event_id")
    assert set(rows) == {"e1", "e2"}
    assert rows["e1"].price == 1.0
    assert utc(rows["e1"].ingest_ts) == T0 + timedelta(seconds=5)
    assert rows["e2"].price == 10.0


def test_staging_trims_and_splits_off_bad_rows_with_a_reason(spark: SparkSession) -> None:
    raw = raw_events(
        spark,
        [
            {"event_id": " e1 ", "event_name": " View ", "user_id": " u1", "session_id": "  "},
            {"event_id": "e2", "event_name": "click"},
            {"event_id": "e3", "event_name": "order", "order_id": None},
            {"event_id": "e4", "event_name": "view", "order_id": "o9"},
            {"event_id": "e5", "price": -1.0},
            {"event_id": "e6", "price": float("nan")},
            {"event_id": "e7", "user_id": None},
        ],
        nullable=True,
    )
    staged = stage_events(raw).cache()
    good = valid_events(staged).collect()
    rejects = {row.event_id: row.reject_reason for row in event_rejects(staged).collect()}
    assert staged.count() == 7  # nothing dropped: every row is either good or rejected
    assert [(r.event_id, r.event_name, r.user_id, r.session_id) for r in good] == [
        ("e1", "view", "u1", None)
    ]
    assert rejects == {
        "e2": "unknown event_name",
        "e3": "order/return event without order_id",
        "e4": "view/wishlist event with an order_id",
        "e5": "negative price",
        "e6": "missing price",
        "e7": "missing user_id",
    }
    staged.unpersist()


def test_staging_rejects_rows_outside_the_landing_bounds(spark: SparkSession) -> None:
    bounds = EventBounds(
        min_event_ts=T0 - timedelta(days=1), max_future=timedelta(minutes=1), max_price_inr=500.0
    )
    raw = raw_events(
        spark,
        [
            {"event_id": "ok"},
            {"event_id": "floor", "event_ts": T0 - timedelta(days=1)},
            {"event_id": "old", "event_ts": T0 - timedelta(days=1, microseconds=1)},
            {"event_id": "ahead", "event_ts": T0 + timedelta(minutes=1, microseconds=1),
             "ingest_ts": T0},
            {"event_id": "edge", "event_ts": T0 + timedelta(minutes=1), "ingest_ts": T0},
            {"event_id": "year_9999", "event_ts": datetime(9999, 12, 31, 23, tzinfo=UTC)},
            {"event_id": "no_ingest_ts", "event_ts": datetime(2999, 1, 1, tzinfo=UTC),
             "ingest_ts": None},
            {"event_id": "dear", "price": 500.01},
            {"event_id": "priced_at_ceiling", "price": 500.0},
        ],
        nullable=True,
    )  # fmt: skip
    reasons = {r.event_id: r.reject_reason for r in stage_events(raw, bounds=bounds).collect()}
    assert reasons == {
        "ok": None,
        "floor": None,
        "old": "event_ts before the accepted floor",
        "ahead": "event_ts too far ahead",
        "edge": None,
        # Its ingest_ts is as absurd (a second later): the check counts from now at the latest.
        "year_9999": "event_ts too far ahead",
        "no_ingest_ts": "event_ts too far ahead",
        "dear": "price above the accepted ceiling",
        "priced_at_ceiling": None,
    }


def test_staging_keeps_the_named_raw_columns_after_the_reason(spark: SparkSession) -> None:
    raw = raw_events(
        spark, [{"event_id": "e1"}, {"event_id": "e2", "price": -1.0}], nullable=True
    ).withColumn("raw_date", F.lit("2026-11-24"))
    staged = stage_events(raw, keep=("raw_date",))
    assert tuple(staged.columns) == (*STAGED_EVENT_COLUMNS, "raw_date")
    assert {(r.event_id, r.reject_reason, r.raw_date) for r in staged.collect()} == {
        ("e1", None, "2026-11-24"),
        ("e2", "negative price", "2026-11-24"),
    }
    # The extra column does not reach events_clean.
    clean = events_clean_from_staged(staged)
    assert tuple(clean.columns) == EVENTS_CLEAN_COLUMNS
    assert [r.event_id for r in clean.collect()] == ["e1"]


def test_session_splits_at_exactly_30_minutes_not_at_29_59(spark: SparkSession) -> None:
    minute = timedelta(minutes=1)
    raw = raw_events(
        spark,
        [
            {"event_id": "a1", "event_ts": T0},
            {"event_id": "a2", "event_ts": T0 + 29 * minute + timedelta(seconds=59)},
            {"event_id": "a3", "event_ts": T0 + 59 * minute + timedelta(seconds=59)},  # +30:00
            {"event_id": "a4", "event_ts": T0 + 89 * minute + timedelta(seconds=58.999999)},
        ],
    )
    rows = by_key(events_clean(raw).collect(), "event_id")
    first = f"d-u1-{_micros(timedelta(0))}"
    second = f"d-u1-{_micros(59 * minute + timedelta(seconds=59))}"
    assert rows["a1"].session_id == first
    assert rows["a2"].session_id == first
    assert rows["a3"].session_id == second
    assert rows["a4"].session_id == second  # 29:59.999999 later: still the same session
    assert {r.session_source for r in rows.values()} == {"derived"}


def test_sessions_are_per_user(spark: SparkSession) -> None:
    raw = raw_events(
        spark,
        [
            {"event_id": "a1", "user_id": "u1", "event_ts": T0},
            {"event_id": "b1", "user_id": "u2", "event_ts": T0 + timedelta(minutes=20)},
            {"event_id": "a2", "user_id": "u1", "event_ts": T0 + timedelta(minutes=40)},
        ],
    )
    rows = by_key(events_clean(raw).collect(), "event_id")
    # u2's event in between does not keep u1's session alive.
    assert rows["a1"].session_id != rows["a2"].session_id
    assert rows["b1"].session_id == f"d-u2-{_micros(timedelta(minutes=20))}"


def test_client_session_ids_are_kept(spark: SparkSession) -> None:
    raw = raw_events(
        spark,
        [
            {"event_id": "c1", "session_id": "s-client", "event_ts": T0},
            {"event_id": "c2", "session_id": "s-client", "event_ts": T0 + timedelta(hours=2)},
            {"event_id": "d1", "session_id": None, "event_ts": T0 + timedelta(minutes=5)},
        ],
    )
    rows = by_key(events_clean(raw).collect(), "event_id")
    assert (rows["c1"].session_id, rows["c1"].session_source) == ("s-client", "client")
    assert (rows["c2"].session_id, rows["c2"].session_source) == ("s-client", "client")
    assert rows["d1"].session_id == f"d-u1-{_micros(timedelta(minutes=5))}"
    assert rows["d1"].session_source == "derived"


def test_a_late_event_lands_in_its_own_hour_and_joins_its_session(spark: SparkSession) -> None:
    on_time = [
        {"event_id": "e1", "event_ts": T0},
        {"event_id": "e3", "event_ts": T0 + timedelta(minutes=50)},
    ]
    # Landed three hours after it happened, in the next run's input.
    late = {
        "event_id": "e2",
        "event_ts": T0 + timedelta(minutes=25),
        "ingest_ts": T0 + timedelta(hours=3),
    }
    before = by_key(events_clean(raw_events(spark, on_time)).collect(), "event_id")
    assert before["e1"].session_id != before["e3"].session_id

    after = by_key(events_clean(raw_events(spark, [*on_time, late])).collect(), "event_id")
    assert (after["e2"].date, after["e2"].hour) == (T0.date(), 10)
    # The late event closes the gap: the result is what an on-time run would have produced.
    assert after["e1"].session_id == after["e2"].session_id == after["e3"].session_id


def test_sessionise_rejects_a_non_positive_gap(spark: SparkSession) -> None:
    df = valid_events(stage_events(raw_events(spark, [{"event_id": "e1"}])))
    with pytest.raises(ValueError, match="gap_minutes"):
        sessionise(df, gap_minutes=0)
