"""The live path end to end, as real processes: landing consumer + `shopflow stream` on a real bus,
events visible in `user_behavior_current` within seconds, a kill -9 of the stream mid-batch, then
the hourly batch superseding the live rows.

Bounds stated here (2 shared cores): a burst is visible within `FIRST_BURST_BOUND_S` of its publish
when the stream is still starting (Spark's cold start), else within `BURST_BOUND_S`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from shopflow.lake import LakeLayout, list_data_files, read_dataset
from shopflow.settings import Settings
from shopflow.sources.bus.factory import ensure_event_topic
from shopflow.transform.stream_live import read_late_state
from shopflow.transform.streaming import checkpoint_location
from shopflow.warehouse.live import CURRENT_VIEW, ensure_current_view
from tests.integration.live_processes import (
    BURST_BOUND_S,
    Processes,
    batch_files,
    event,
    kill_mid_batch,
    publish,
    run_hourly_batch,
    wait_committed,
)

pytestmark = pytest.mark.integration

FIRST_BURST_BOUND_S = 300.0
TRIGGER_SECONDS = 2


def _view_ids(settings: Settings) -> list[str]:
    """Event ids in `user_behavior_current`, one per row (this test is the only DuckDB user)."""
    con = duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True)
    try:
        return [r[0] for r in con.execute(f"SELECT event_id FROM {CURRENT_VIEW}").fetchall()]
    finally:
        con.close()


def _wait_visible(settings: Settings, ids: set[str], published: float, bound_s: float) -> float:
    while time.monotonic() - published < bound_s:
        if ids <= set(_view_ids(settings)):
            return time.monotonic() - published
        time.sleep(0.5)
    missing = ids - set(_view_ids(settings))
    raise AssertionError(f"not in {CURRENT_VIEW} within {bound_s} s: {sorted(missing)}")


@pytest.fixture(params=["pubsub", "kafka"])
def bus_settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    yield settings


def test_live_path_bursts_kill_and_hourly_batch(bus_settings: Settings) -> None:
    settings = bus_settings
    ensure_event_topic(settings)
    ensure_current_view(settings)
    assert _view_ids(settings) == []  # valid before any live file
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    checkpoint = Path(checkpoint_location(settings))
    procs = Processes(settings)
    procs.start("landing", "ingest", "events")
    stream_args = ("stream", "--trigger-seconds", str(TRIGGER_SECONDS))
    stream = procs.start("stream", *stream_args)
    latencies: list[float] = []
    try:
        # Burst 1, with a duplicate.
        burst1 = [event(f"b1-{i}", f"u{i % 3}", now + timedelta(seconds=i)) for i in range(6)]
        published = publish(settings, [*burst1, burst1[0]])
        ids1 = {e["event_id"] for e in burst1}
        latencies.append(_wait_visible(settings, ids1, published, FIRST_BURST_BOUND_S))

        # Burst 2, with a malformed message.
        burst2 = [
            event(f"b2-{i}", f"u{i % 3}", now + timedelta(minutes=1, seconds=i)) for i in range(5)
        ]
        published = publish(settings, [*burst2, b"{not json"])
        ids2 = {e["event_id"] for e in burst2}
        latencies.append(_wait_visible(settings, ids2, published, BURST_BOUND_S))
        # An event older than the watermark (12 h behind the newest event time seen): on its own,
        # once two micro-batches have moved the watermark (Spark moves it between batches).
        too_late = event("late-1", "u9", now - timedelta(hours=13))
        publish(settings, [too_late])
        deadline = time.monotonic() + BURST_BOUND_S
        while read_late_state(str(checkpoint))["skipped_total"] < 1:
            assert time.monotonic() < deadline, (
                f"late state {read_late_state(str(checkpoint))}; in the view: "
                f"{'late-1' in _view_ids(settings)}\n{procs.log('stream')}"
            )
            time.sleep(0.5)
        assert "late-1" not in _view_ids(settings)
        assert "older than the watermark" in procs.log("stream")

        # Burst 3: kill -9 the stream while its batch is written but not committed, restart.
        committed = max(batch_files(checkpoint, "commits"))
        burst3 = [
            event(f"b3-{i}", f"u{i % 3}", now + timedelta(minutes=2, seconds=i)) for i in range(8)
        ]
        published = publish(settings, [*burst3, burst3[-1]])
        killed = kill_mid_batch(stream, checkpoint, committed)
        procs.start("stream", *stream_args)
        ids3 = {e["event_id"] for e in burst3}
        _wait_visible(settings, ids3, time.monotonic(), FIRST_BURST_BOUND_S)
        wait_committed(checkpoint, killed, procs)
        live = _view_ids(settings)
        assert sorted(live) == sorted(ids1 | ids2 | ids3)  # none lost, none doubled
    finally:
        procs.stop_all()
    print(f"burst visibility (s): {[round(s, 1) for s in latencies]}")

    # The hourly batch: the system of record supersedes the live rows, the late event included.
    run_hourly_batch(procs)
    expected = ids1 | ids2 | ids3 | {"late-1"}
    rows = _view_ids(settings)
    assert sorted(rows) == sorted(expected)
    con = duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True)
    try:
        batch = {r[0] for r in con.execute("SELECT event_id FROM user_behavior").fetchall()}
    finally:
        con.close()
    assert batch == expected  # every event now comes from the batch part
    layout = LakeLayout.from_settings(settings)
    dead = read_dataset(layout.deadletter_root("events")).to_pylist()
    assert [r for r in dead if b"{not json" in (r.get("payload") or b"")], dead
    assert list_data_files(layout.curated_root("user_behavior_live"))
