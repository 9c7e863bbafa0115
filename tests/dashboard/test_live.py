"""The "last minutes" panel's data: live Parquet files read without the warehouse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shopflow.dashboard.live import live_root, recent_live_activity
from shopflow.settings import Settings
from tests.dashboard.live_files import write_live_file

NOW = datetime(2026, 11, 28, 10, 5, 30, tzinfo=UTC)


def test_no_live_files_is_an_empty_panel(settings: Settings) -> None:
    activity = recent_live_activity(settings, minutes=10, now=NOW)
    assert (activity.per_minute, activity.newest_event_ts, activity.files) == ([], None, 0)
    assert activity.newest_age_seconds is None


def test_events_per_minute_by_type_and_newest_age(settings: Settings) -> None:
    at = NOW - timedelta(minutes=1)  # 10:04:30
    write_live_file(
        settings,
        "part-00000",
        [
            ("a", "view", at),
            ("b", "view", at + timedelta(seconds=10)),
            ("c", "order", at + timedelta(seconds=20)),
            ("d", "view", NOW - timedelta(minutes=3)),  # 10:02:30
        ],
    )
    # The previous hour: 09:58 is inside a 10-minute window, 09:40 is not.
    write_live_file(
        settings,
        "part-00000",
        [("e", "wishlist", NOW - timedelta(minutes=7)), ("f", "view", NOW - timedelta(minutes=25))],
    )
    # An hour long past, never read for a 10-minute window; and a temp file of a writer.
    write_live_file(settings, "part-00000", [("old", "view", NOW - timedelta(hours=5))])
    write_live_file(settings, ".part-00001.tmp", [("tmp", "view", NOW)])
    activity = recent_live_activity(settings, minutes=10, now=NOW)
    got = [
        (r["minute"].strftime("%H:%M"), r["event_name"], r["events"]) for r in activity.per_minute
    ]
    assert got == [
        ("09:58", "wishlist", 1),
        ("10:02", "view", 1),
        ("10:04", "order", 1),
        ("10:04", "view", 2),
    ]
    assert activity.events == 5
    assert activity.files == 2
    assert activity.newest_event_ts == at + timedelta(seconds=20)
    assert activity.newest_age_seconds == 40.0


def test_a_damaged_live_file_is_left_out_and_named(settings: Settings) -> None:
    at = NOW - timedelta(minutes=1)
    write_live_file(settings, "part-m00", [("a", "view", at), ("b", "order", at)])
    write_live_file(settings, "part-m05", [("c", "view", at)])
    damaged = next(
        p for p in Path(live_root(settings).removeprefix("file://")).rglob("part-m05.parquet")
    )
    damaged.write_bytes(b"PAR1 not parquet")
    activity = recent_live_activity(settings, minutes=10, now=NOW)
    assert activity.events == 2
    assert activity.damaged == (str(damaged),)
    assert activity.note == ""
