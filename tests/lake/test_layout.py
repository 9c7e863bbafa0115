"""Lake paths and deterministic file names."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shopflow.lake import LakeLayout, batch_file_name, parse_ts_token, pull_file_name, ts_token
from shopflow.settings import Settings

T0 = datetime(2026, 11, 25, 23, 59, 58, 123456, tzinfo=UTC)


def test_ts_tokens_are_safe_fixed_width_and_sort_in_time_order() -> None:
    times = [T0 + timedelta(microseconds=step * 999_983) for step in range(-50, 50)]
    times.append(datetime(2026, 11, 26, 5, 29, 58, tzinfo=timezone(timedelta(hours=5, minutes=30))))
    tokens = [ts_token(ts) for ts in times]
    assert sorted(tokens) == [ts_token(ts) for ts in sorted(times)]
    assert {len(token) for token in tokens} == {22}
    assert all(token.replace("T", "").replace("Z", "").isdigit() for token in tokens)
    assert [parse_ts_token(token) for token in tokens] == times
    assert ts_token(T0) == "20261125T235958123456Z"


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        ts_token(datetime(2026, 1, 1))


def test_batch_name_depends_on_the_set_of_keys_not_their_order() -> None:
    name = batch_file_name("events", T0, ["m-2", "m-1", "m-3"])
    assert name == batch_file_name("events", T0, ["m-3", "m-1", "m-2"])
    assert name != batch_file_name("events", T0, ["m-1", "m-2"])
    assert name != batch_file_name("events", T0 + timedelta(microseconds=1), ["m-1", "m-2", "m-3"])
    assert name.startswith("events_20261125T235958123456Z_") and name.endswith(".parquet")
    # Kafka message ids hold slashes; they must not leak into the name.
    assert "/" not in batch_file_name("events", T0, ["shop-events/0/17"])


def test_paths_follow_the_design() -> None:
    layout = LakeLayout("gs://bucket/lake/")
    assert layout.events_partition(date(2026, 11, 25), 7) == (
        "gs://bucket/lake/raw/events/date=2026-11-25/hour=07"
    )
    batch = layout.event_batch_file(T0, ["m-1"])
    assert batch.startswith("gs://bucket/lake/raw/events/date=2026-11-25/hour=23/events_")
    assert layout.pull_file("orders", None, T0) == (
        "gs://bucket/lake/raw/orders/cursor_date=2026-11-25/"
        "orders_19700101T000000000000Z_20261125T235958123456Z.parquet"
    )
    assert layout.pull_file("users", T0 - timedelta(minutes=30), T0).endswith(
        "users_20261125T232958123456Z_20261125T235958123456Z.parquet"
    )
    assert layout.deadletter_file("events", T0, ["m-1"]).startswith(
        "gs://bucket/lake/deadletter/events/date=2026-11-25/events_"
    )
    assert layout.curated_partition("traffic_hourly", date(2026, 11, 25), 0) == (
        "gs://bucket/lake/curated/traffic_hourly/date=2026-11-25/hour=00"
    )
    assert layout.curated_partition("traffic_daily", date(2026, 11, 25)) == (
        "gs://bucket/lake/curated/traffic_daily/date=2026-11-25"
    )
    assert layout.state_file("orders_cursor") == "gs://bucket/lake/_state/orders_cursor.json"


def test_a_retried_pull_of_the_same_range_gets_the_same_name() -> None:
    layout = LakeLayout("/lake")
    start = T0 - timedelta(minutes=10)
    assert layout.pull_file("orders", start, T0) == layout.pull_file("orders", start, T0)
    assert pull_file_name("orders", start, T0) != pull_file_name("orders", start, T0 + timedelta(1))


@pytest.mark.parametrize("bad", ["Orders", "../x", "raw/x", "", "a b"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        LakeLayout("/lake").pull_root(bad)


@pytest.mark.parametrize("bad", ["../x", "_hidden", ".x", "a/b", ""])
def test_bad_state_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        LakeLayout("/lake").state_file(bad)


def test_hours_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        LakeLayout("/lake").events_partition(date(2026, 1, 1), 24)


def test_layout_from_settings_uses_the_lake_url(settings: Settings) -> None:
    assert LakeLayout.from_settings(settings).root == settings.lake_url
