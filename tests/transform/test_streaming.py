"""The streaming path against a real (temporary) lake, and its parity with the batch path."""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql import SparkSession

from shopflow.contracts import RAW_EVENT_SCHEMA
from shopflow.lake import LakeLayout, list_partitions, read_dataset, write_parquet_atomic
from shopflow.lake.commit_log import register_files
from shopflow.settings import Settings
from shopflow.transform.jobs import EtlRequest, run_etl
from shopflow.transform.stream_live import STREAM_REJECTS_SOURCE
from shopflow.transform.stream_merge import STREAM_TABLE
from shopflow.transform.streaming import (
    checkpoint_location,
    start_events_stream,
    start_rejects_stream,
)
from shopflow.warehouse.live import LIVE_TABLE
from tests.transform.builders import DAY, T0

MIN = timedelta(minutes=1)
NEXT_DAY_T0 = T0 + timedelta(days=1)  # next day 10:00 UTC


class Lake:
    """Writes raw event files in a chosen landing order (file modification time = landing time)."""

    def __init__(self, settings: Settings) -> None:
        self.layout = LakeLayout.from_settings(settings)
        self.files = 0
        self.base_mtime = datetime.now(UTC).timestamp() - 3600

    def land(self, *rows: dict[str, Any]) -> None:
        """One landed file in the partition of its first event; ingest_ts = landing order."""
        self.files += 1
        ingest_ts = T0 + timedelta(days=2, seconds=self.files)
        full = [
            {"ingest_ts": ingest_ts, "message_id": f"m{self.files}-{r['event_id']}", **r}
            for r in rows
        ]
        first: datetime = full[0]["event_ts"]
        url = self.layout.event_batch_file_in(
            first.date(), first.hour, first, [r["message_id"] for r in full]
        )
        write_parquet_atomic(pa.Table.from_pylist(full, RAW_EVENT_SCHEMA), url)
        mtime = self.base_mtime + 10 * self.files
        os.utime(url, (mtime, mtime))
        register_files(self.layout, "events", [url])  # as the landing consumer does


def ev(event_id: str, user_id: str, ts: datetime, **extra: Any) -> dict[str, Any]:
    """A valid view event (override any column with `extra`)."""
    return {
        "event_id": event_id,
        "event_name": "view",
        "product_id": "p1",
        "user_id": user_id,
        "order_id": None,
        "price": 100.0,
        "event_ts": ts,
        "session_id": None,
        "publish_ts": ts,
        **extra,
    }


def _run_batch(spark: SparkSession, settings: Settings, lake: Lake) -> None:
    """The batch ETL over every event date in the lake (a backfill: no state involved)."""
    dates = {p.date for p in list_partitions(lake.layout.events_root()) if p.date is not None}
    run_etl(spark, settings, EtlRequest(tuple(sorted(dates)), incremental=False, label="parity"))


def _rows(layout: LakeLayout, table: str) -> list[dict[str, Any]]:
    rows = read_dataset(layout.curated_root(table)).to_pylist()
    return sorted(rows, key=lambda r: r["event_id"])


def _run_stream(spark: SparkSession, settings: Settings, **options: Any) -> list[int]:
    batches: list[int] = []

    def on_batch(batch_id: int, written: list[str]) -> None:
        if written:
            batches.append(batch_id)

    query = start_events_stream(spark, settings, available_now=True, on_batch=on_batch, **options)
    query.awaitTermination(300)
    assert query.exception() is None
    assert not query.isActive
    return batches


def test_stream_and_batch_agree_on_events_clean(spark: SparkSession, settings: Settings) -> None:
    lake = Lake(settings)
    layout = lake.layout
    # 1: u1's derived session starts; u2 has a client session; one row breaks the contract.
    lake.land(
        ev("e01", "u1", T0),
        ev("e02", "u1", T0 + 10 * MIN),
        ev("e03", "u2", T0 + 5 * MIN, session_id="s-client"),
        ev("e-bad", "u2", T0 + 6 * MIN, price=-1.0),
    )
    # 2: u1's session continues in a later micro-batch; u4 starts a session at 11:10.
    lake.land(ev("e04", "u1", T0 + 35 * MIN), ev("e05", "u3", T0 + 20 * MIN))
    lake.land(ev("e07", "u4", T0 + 70 * MIN))
    # 3: e02 redelivered in a later file (its first landed copy must win), u1 continues at 11:00.
    lake.land(ev("e02", "u1", T0 + 10 * MIN), ev("e06", "u1", T0 + 60 * MIN))
    # 4: a late u4 event at 10:50 lands: u4's session (already written) now starts at 10:50.
    lake.land(ev("e08", "u4", T0 + 50 * MIN, event_name="order", order_id="o1", price=250.0))
    # 5/6: u5 just after midnight, then u5's 23:55 event lands late: the next day's session
    # now starts on the previous day (the stream must rewrite the day after an affected day).
    midnight = datetime.combine(DAY + timedelta(days=1), time(0), tzinfo=UTC)
    lake.land(ev("e09", "u5", midnight + 10 * MIN))
    lake.land(ev("e10", "u5", midnight - 5 * MIN))

    batches = _run_stream(spark, settings, max_files_per_trigger=1)
    assert len(batches) == 7  # one file per micro-batch

    _run_batch(spark, settings, lake)
    batch_rows = _rows(layout, "events_clean")
    stream_rows = _rows(layout, STREAM_TABLE)
    assert [r["event_id"] for r in stream_rows] == [
        "e01", "e02", "e03", "e04", "e05", "e06", "e07", "e08", "e09", "e10",
    ]  # fmt: skip
    assert stream_rows == batch_rows
    # The live part is the batch's user_behavior, row for row (`hour` is its partition only).
    live = [{k: v for k, v in r.items() if k != "hour"} for r in _rows(layout, LIVE_TABLE)]
    assert live == _rows(layout, "user_behavior")
    # The stream's contract rejects are the batch's dead letters, reason included.
    rejects = start_rejects_stream(spark, settings, available_now=True)
    rejects.awaitTermination(300)
    assert rejects.exception() is None
    stream_dead = read_dataset(layout.deadletter_root(STREAM_REJECTS_SOURCE)).to_pylist()
    batch_dead = read_dataset(layout.deadletter_root("events_etl")).to_pylist()
    assert [(r["event_id"], r["reason"]) for r in stream_dead] == [("e-bad", "negative price")]
    assert stream_dead == batch_dead

    by_id = {r["event_id"]: r for r in stream_rows}
    assert by_id["e02"]["ingest_ts"] == T0 + timedelta(days=2, seconds=1)  # first landed copy
    u1_sessions = {by_id[e]["session_id"] for e in ("e01", "e02", "e04", "e06")}
    assert u1_sessions == {f"d-u1-{int(T0.timestamp() * 1_000_000)}"}
    assert by_id["e07"]["session_id"] == by_id["e08"]["session_id"]
    assert by_id["e09"]["session_id"] == by_id["e10"]["session_id"]
    assert by_id["e03"]["session_source"] == "client"

    # Restart from the checkpoint: only the new file is read. The redelivered e09 is within the
    # watermark, so the dedup state (restored from the checkpoint) drops it; e11 joins its session.
    lake.land(ev("e09", "u5", midnight + 10 * MIN), ev("e11", "u5", midnight + 30 * MIN))
    assert len(_run_stream(spark, settings, max_files_per_trigger=1)) == 1
    _run_batch(spark, settings, lake)
    stream_rows = _rows(layout, STREAM_TABLE)
    assert stream_rows == _rows(layout, "events_clean")
    by_id = {r["event_id"]: r for r in stream_rows}
    assert len(stream_rows) == 11
    assert by_id["e09"]["ingest_ts"] == T0 + timedelta(days=2, seconds=6)  # the first copy
    assert by_id["e11"]["session_id"] == by_id["e10"]["session_id"]
    assert os.path.isdir(checkpoint_location(settings))


def test_stream_drops_events_later_than_the_tolerance_where_batch_keeps_them(
    spark: SparkSession, settings: Settings
) -> None:
    lake = Lake(settings)
    lake.land(ev("e1", "u1", NEXT_DAY_T0))
    lake.land(ev("e2", "u1", NEXT_DAY_T0 + 180 * MIN))
    lake.land(ev("e3", "u1", NEXT_DAY_T0 + 185 * MIN))
    # Lands once the watermark (latest event time - 1 hour, as of two micro-batches ago: Spark
    # filters late rows with the previous batch's watermark) has passed it by two hours.
    lake.land(ev("e-late", "u2", NEXT_DAY_T0))
    _run_stream(spark, settings, max_files_per_trigger=1, late_tolerance="1 hour")
    _run_batch(spark, settings, lake)
    assert [r["event_id"] for r in _rows(lake.layout, STREAM_TABLE)] == ["e1", "e2", "e3"]
    assert [r["event_id"] for r in _rows(lake.layout, "events_clean")] == [
        "e-late", "e1", "e2", "e3",
    ]  # fmt: skip


def test_an_event_far_ahead_of_its_landing_neither_moves_the_watermark_nor_is_lost(
    spark: SparkSession, settings: Settings
) -> None:
    # A raw file not written by the landing (or landed under wider bounds): its event is two days
    # ahead of its ingest time. Taken in, it would carry the watermark two days ahead and the
    # stream would skip every real event after it as too late.
    lake = Lake(settings)
    lake.land(ev("e1", "u1", NEXT_DAY_T0))
    lake.land(ev("e-ahead", "u2", NEXT_DAY_T0 + timedelta(days=3)))
    lake.land(ev("e2", "u1", NEXT_DAY_T0 + 5 * MIN))
    lake.land(ev("e3", "u3", NEXT_DAY_T0 + 10 * MIN))
    _run_stream(spark, settings, max_files_per_trigger=1, late_tolerance="1 hour")
    assert [r["event_id"] for r in _rows(lake.layout, STREAM_TABLE)] == ["e1", "e2", "e3"]
    rejects = start_rejects_stream(spark, settings, available_now=True)
    rejects.awaitTermination(300)
    assert rejects.exception() is None
    stream_dead = read_dataset(lake.layout.deadletter_root(STREAM_REJECTS_SOURCE)).to_pylist()
    assert [(r["event_id"], r["reason"]) for r in stream_dead] == [
        ("e-ahead", "event_ts too far ahead")
    ]
    _run_batch(spark, settings, lake)
    assert [r["event_id"] for r in _rows(lake.layout, "events_clean")] == ["e1", "e2", "e3"]
    batch_dead = read_dataset(lake.layout.deadletter_root("events_etl")).to_pylist()
    assert stream_dead == batch_dead


def test_the_deduplication_state_is_in_rocksdb_off_the_heap(
    spark: SparkSession, settings: Settings
) -> None:
    lake = Lake(settings)
    lake.land(ev("e01", "u1", T0))
    lake.land(ev("e01", "u1", T0), ev("e02", "u1", T0 + MIN))  # e01 redelivered
    _run_stream(spark, settings, max_files_per_trigger=1)
    checkpoint = Path(checkpoint_location(settings))
    assert "RocksDBStateStoreProvider" in (checkpoint / "offsets" / "0").read_text()
    state = [p.name for p in (checkpoint / "state").rglob("*") if p.is_file()]
    assert any(name.endswith(".changelog") for name in state), state
    assert not any(name.endswith(".delta") for name in state), state  # the heap store's files
    assert [r["event_id"] for r in _rows(lake.layout, STREAM_TABLE)] == ["e01", "e02"]
