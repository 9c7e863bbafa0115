"""The live path end to end, as real processes: landing consumer + `shopflow stream` on a real bus,
events visible in `user_behavior_current` within seconds, a kill -9 of the stream mid-batch, then
the hourly batch superseding the live rows.

Bounds stated here (2 shared cores): a burst is visible within `FIRST_BURST_BOUND_S` of its publish
when the stream is still starting (Spark's cold start), else within `BURST_BOUND_S`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shopflow.lake import LakeLayout, list_data_files, read_dataset
from shopflow.settings import Settings
from shopflow.sources.bus.factory import ensure_event_topic, make_publisher
from shopflow.transform.stream_live import read_late_state
from shopflow.transform.streaming import checkpoint_location
from shopflow.warehouse.live import CURRENT_VIEW, ensure_current_view

pytestmark = pytest.mark.integration

FIRST_BURST_BOUND_S = 300.0
BURST_BOUND_S = 120.0
TRIGGER_SECONDS = 2


def _event(event_id: str, user: str, ts: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_name": "view",
        "product_id": "p1",
        "user_id": user,
        "order_id": None,
        "price": 10.0,
        "event_ts": ts.isoformat(),
        "session_id": None,
    }


def _publish(settings: Settings, payloads: list[bytes | dict[str, Any]]) -> float:
    publisher = make_publisher(settings)
    try:
        publisher.publish(p if isinstance(p, bytes) else json.dumps(p).encode() for p in payloads)
    finally:
        publisher.close()
    return time.monotonic()


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


class Processes:
    """The landing consumer and the stream as child processes, logs under the home."""

    def __init__(self, settings: Settings) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
        self.env = {
            **base,
            **settings.child_environment(with_secrets=True),
            "SHOPFLOW_LANDING_BATCH_MAX_SECONDS": "1",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        self.logs = settings.home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = 0

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = (self.logs / f"{name}-{self.starts}.log").open("wb")
        child = subprocess.Popen(
            [sys.executable, "-m", "shopflow.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes Spark's JVM with it
        )
        self.children[name] = child
        return child

    def log(self, name: str) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob(f"{name}-*.log")))

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in self.children.values():
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _batch_files(checkpoint: Path, kind: str) -> set[int]:
    folder = checkpoint / kind
    if not folder.is_dir():
        return set()
    return {int(p.name.split(".")[0]) for p in folder.iterdir() if p.name.split(".")[0].isdigit()}


def _log_offset(checkpoint: Path, batch: int) -> int:
    """The file-source log entry a query batch reads up to (the offset file's last line)."""
    lines = (checkpoint / "offsets" / str(batch)).read_text().strip().splitlines()
    return int(json.loads(lines[-1])["logOffset"])


def _kill_mid_batch(stream: subprocess.Popen[bytes], checkpoint: Path, after: int) -> int:
    """kill -9 the stream once a batch after `after` that reads new files has started (its offsets
    are written) and is not committed; return that batch id."""
    seen = _log_offset(checkpoint, after)
    deadline = time.monotonic() + BURST_BOUND_S
    while time.monotonic() < deadline:
        started = {b for b in _batch_files(checkpoint, "offsets") if b > after}
        for batch in sorted(started - _batch_files(checkpoint, "commits")):
            try:
                new_files = _log_offset(checkpoint, batch) > seen
            except (OSError, ValueError, KeyError):
                continue  # being written
            if new_files:
                os.killpg(stream.pid, signal.SIGKILL)  # the Python driver and its JVM
                stream.wait()
                assert batch not in _batch_files(checkpoint, "commits"), "committed before kill"
                return batch
        time.sleep(0.02)
    raise AssertionError("no micro-batch of the third burst started within the bound")


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
        burst1 = [_event(f"b1-{i}", f"u{i % 3}", now + timedelta(seconds=i)) for i in range(6)]
        published = _publish(settings, [*burst1, burst1[0]])
        ids1 = {e["event_id"] for e in burst1}
        latencies.append(_wait_visible(settings, ids1, published, FIRST_BURST_BOUND_S))

        # Burst 2, with a malformed message.
        burst2 = [
            _event(f"b2-{i}", f"u{i % 3}", now + timedelta(minutes=1, seconds=i)) for i in range(5)
        ]
        published = _publish(settings, [*burst2, b"{not json"])
        ids2 = {e["event_id"] for e in burst2}
        latencies.append(_wait_visible(settings, ids2, published, BURST_BOUND_S))
        # An event older than the watermark (12 h behind the newest event time seen): on its own,
        # once two micro-batches have moved the watermark (Spark moves it between batches).
        too_late = _event("late-1", "u9", now - timedelta(hours=13))
        _publish(settings, [too_late])
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
        committed = max(_batch_files(checkpoint, "commits"))
        burst3 = [
            _event(f"b3-{i}", f"u{i % 3}", now + timedelta(minutes=2, seconds=i)) for i in range(8)
        ]
        published = _publish(settings, [*burst3, burst3[-1]])
        killed = _kill_mid_batch(stream, checkpoint, committed)
        procs.start("stream", *stream_args)
        ids3 = {e["event_id"] for e in burst3}
        _wait_visible(settings, ids3, time.monotonic(), FIRST_BURST_BOUND_S)
        # The replayed batch commits: its rows are visible once foreachBatch wrote them, and
        # Spark writes the commit file just after.
        deadline = time.monotonic() + BURST_BOUND_S
        while killed not in _batch_files(checkpoint, "commits"):
            assert time.monotonic() < deadline, procs.log("stream")
            time.sleep(0.2)
        live = _view_ids(settings)
        assert sorted(live) == sorted(ids1 | ids2 | ids3)  # none lost, none doubled
    finally:
        procs.stop_all()
    print(f"burst visibility (s): {[round(s, 1) for s in latencies]}")

    # The hourly batch: the system of record supersedes the live rows, the late event included.
    # No catalogue in this test: events naming unknown products/users must not stop the load.
    env = {**procs.env, "SHOPFLOW_QUALITY_MAX_UNKNOWN_SHARE": "1"}
    for args in (("etl",), ("load",)):
        done = subprocess.run(
            [sys.executable, "-m", "shopflow.cli", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
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
