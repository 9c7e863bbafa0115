"""`shopflow stream` as a process: a file it cannot read is quarantined and the stream goes on; a
micro-batch that fails otherwise stops it with one line naming the cause (not the Python
traceback Spark wraps it in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from shopflow.contracts import RAW_EVENT_SCHEMA
from shopflow.lake import LakeLayout, read_dataset, replace_partition, write_parquet_atomic
from shopflow.settings import Settings
from shopflow.transform.stream_merge import STREAM_TABLE
from shopflow.warehouse.live import LIVE_TABLE

EVENT_TS: Final = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=1)


def _land(layout: LakeLayout, *event_ids: str) -> str:
    """One raw file of view events of one hour, as the landing writes it; returns its URL."""
    rows = [
        {
            "event_id": event_id, "event_name": "view", "product_id": "p1", "user_id": "u-a",
            "order_id": None, "price": 100.0, "event_ts": EVENT_TS + timedelta(seconds=i),
            "session_id": None, "message_id": f"m-{event_id}", "publish_ts": EVENT_TS,
            "ingest_ts": EVENT_TS,
        }
        for i, event_id in enumerate(event_ids)
    ]  # fmt: skip
    url = layout.event_batch_file_in(
        EVENT_TS.date(), EVENT_TS.hour, EVENT_TS, [f"m-{event_id}" for event_id in event_ids]
    )
    write_parquet_atomic(pa.Table.from_pylist(rows, RAW_EVENT_SCHEMA), url)
    return url


def _stream(settings: Settings) -> subprocess.CompletedProcess[str]:
    """`shopflow stream --available-now` in a process of its own."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")},
        **settings.child_environment(with_secrets=True),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    return subprocess.run(
        [sys.executable, "-m", "shopflow.cli", "stream", "--available-now"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _stream_ids(layout: LakeLayout) -> list[str]:
    rows = read_dataset(layout.curated_root(STREAM_TABLE)).column("event_id").to_pylist()
    return sorted(rows)


def test_unreadable_files_are_quarantined_and_the_stream_goes_on(settings: Settings) -> None:
    layout = LakeLayout.from_settings(settings)
    _land(layout, "e1", "e2")
    hour_folder = _land(layout, "e3").rsplit("/", 1)[0]
    # Landed by something else: garbage, and a file whose price is text.
    garbage = f"{hour_folder}/zz-garbage.parquet"
    Path(garbage).write_bytes(b"not parquet at all")
    foreign = f"{hour_folder}/zz-foreign.parquet"
    text_price = pa.schema(
        [pa.field("price", pa.string()) if f.name == "price" else f for f in RAW_EVENT_SCHEMA]
    )
    landed = _land(layout, "x1")
    row = pq.read_table(landed).to_pylist()[0]
    Path(landed).unlink()
    pq.write_table(pa.Table.from_pylist([{**row, "price": "cheap"}], text_price), foreign)

    done = _stream(settings)
    assert done.returncode == 0, done.stderr
    # Without the quarantine, Spark replays the failed micro-batch with the same files at every
    # restart: the stream could never get past them.
    assert "starting again without it" in done.stderr
    assert _stream_ids(layout) == ["e1", "e2", "e3"]
    for url, reason in ((garbage, "not a readable Parquet file"), (foreign, "column price is")):
        moved = Path(layout.quarantine_root()) / Path(url).relative_to(layout.root)
        assert moved.is_file() and not Path(url).exists()
        note = json.loads(Path(f"{moved}.reason.json").read_text())
        assert note["reason"].startswith(reason), note

    # The stream's own table file of that hour, damaged; then new events of the same hour.
    table_file = next(Path(layout.curated_root(STREAM_TABLE)).rglob("*.parquet"))
    table_file.write_bytes(b"garbage")
    # And a live file of an hour no micro-batch touches: every query of the warehouse's live view
    # would fail on it (two days back: not a date a micro-batch of today reads). The stream
    # screens its tables at its first micro-batch.
    untouched = Path(
        f"{layout.curated_partition(LIVE_TABLE, EVENT_TS.date() - timedelta(days=2), 5)}"
        "/part-m00.parquet"
    )
    untouched.parent.mkdir(parents=True)
    untouched.write_bytes(b"PAR1 garbage")
    _land(layout, "e4")
    done = _stream(settings)
    assert done.returncode == 0, done.stderr
    assert f"quarantined {table_file}: not a readable Parquet file" in done.stderr
    assert f"quarantined {untouched}: not a readable Parquet file" in done.stderr
    assert not untouched.exists()
    # Its rows are the hourly batch's now (their raw events are intact); the new one is live.
    assert _stream_ids(layout) == ["e4"]


def test_files_only_spark_cannot_read_or_place_are_quarantined_too(settings: Settings) -> None:
    layout = LakeLayout.from_settings(settings)
    good = _land(layout, "e1")
    hour_folder = good.rsplit("/", 1)[0]
    # pyarrow reads a Brotli file; this Spark has no Brotli codec. Both were found by a probe:
    # each stopped the stream at every start, the screen finding nothing wrong.
    brotli = f"{hour_folder}/zz-brotli.parquet"
    pq.write_table(pa.Table.from_pylist([{**pq.read_table(good).to_pylist()[0],
                                          "event_id": "e-brotli", "message_id": "m-brotli"}],
                                        RAW_EVENT_SCHEMA), brotli, compression="brotli")  # fmt: skip
    # A file in a date folder without an hour folder: Spark cannot even plan the micro-batch.
    unplaced = f"{hour_folder.rsplit('/', 1)[0]}/foreign.parquet"
    write_parquet_atomic(pa.table({"x": [1]}), unplaced)

    done = _stream(settings)

    assert done.returncode == 0, done.stderr
    assert f"quarantined {unplaced}: not in a date=.../hour=... folder" in done.stderr
    assert f"quarantined {brotli}: Spark cannot read it: " in done.stderr
    assert _stream_ids(layout) == ["e1"]


def test_a_failed_micro_batch_stops_the_stream_with_one_line_naming_its_cause(
    settings: Settings,
) -> None:
    layout = LakeLayout.from_settings(settings)
    _land(layout, "e1")
    # A users history whose user_name is a number: the merge refuses it (`check_file_types`).
    wrong = pa.table(
        {
            "user_id": ["u-a"],
            "user_name": [32],
            "valid_from": ["2026-01-01"],
            "valid_to": [None],
            "is_first_version": [True],
        }
    )
    replace_partition(wrong, layout.curated_root("users_history"))
    done = _stream(settings)
    assert done.returncode != 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("shopflow: error: stream failed in micro-batch 0: "), done.stderr
    assert "column user_name is int64, expected string" in last, last
    assert "Traceback" not in last
