"""The stream's slices: which slice a row is in, and the split of hourly files of old."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from shopflow.lake import LakeLayout, list_data_files, read_dataset, write_parquet_atomic
from shopflow.settings import Settings
from shopflow.transform.stream_merge import STREAM_FILE_SCHEMA, STREAM_TABLE
from shopflow.transform.stream_slices import (
    is_slice_file,
    slice_minutes,
    split_legacy_partitions,
)
from tests.transform.builders import DAY, T0

US = timedelta(microseconds=1)


def test_a_row_is_in_the_slice_of_its_minute() -> None:
    times = [
        T0,
        T0 + timedelta(minutes=5) - US,
        T0 + timedelta(minutes=5),
        T0 + timedelta(hours=1) - US,
    ]
    stamps = pa.array(times, pa.timestamp("us", tz="UTC"))
    assert slice_minutes(stamps).to_pylist() == [0, 0, 5, 55]


def test_slice_file_names() -> None:
    assert is_slice_file("/lake/t/date=2026-11-25/hour=10/part-m05.parquet")
    assert not is_slice_file("/lake/t/date=2026-11-25/hour=10/part-m07.parquet")
    assert not is_slice_file("/lake/t/date=2026-11-25/hour=10/part-00000.parquet")


def _rows(*event_ids_and_times: tuple[str, datetime]) -> pa.Table:
    columns: dict[str, Any] = {
        f.name: [None] * len(event_ids_and_times) for f in STREAM_FILE_SCHEMA
    }
    columns.update(
        event_id=[e for e, _ in event_ids_and_times],
        event_ts=[t for _, t in event_ids_and_times],
        user_id=["u1"] * len(event_ids_and_times),
        session_source=["derived"] * len(event_ids_and_times),
    )
    return pa.table(columns, schema=STREAM_FILE_SCHEMA)


def _names(layout: LakeLayout) -> list[str]:
    root = layout.curated_root(STREAM_TABLE)
    return sorted(os.path.relpath(f.url, root) for f in list_data_files(root))


def test_an_hourly_file_of_old_is_split_into_slices_once(settings: Settings) -> None:
    layout = LakeLayout.from_settings(settings)
    partition = layout.curated_partition(STREAM_TABLE, DAY, 10)
    rows = _rows(("a", T0 + timedelta(minutes=1)), ("b", T0 + timedelta(minutes=7)),
                 ("c", T0 + timedelta(minutes=58)))  # fmt: skip
    write_parquet_atomic(rows, f"{partition}/part-00000.parquet")
    # A split cut short: one slice written, the hourly file not yet removed.
    write_parquet_atomic(rows.slice(0, 1), f"{partition}/part-m00.parquet")
    # The live table's placeholder: no rows, left alone.
    empty = layout.curated_partition(STREAM_TABLE, datetime(1970, 1, 1, tzinfo=UTC).date(), 0)
    write_parquet_atomic(rows.slice(0, 0), f"{empty}/part-00000.parquet")

    assert split_legacy_partitions(layout, {STREAM_TABLE: STREAM_FILE_SCHEMA}) == ([partition], [])

    hour = f"date={DAY.isoformat()}/hour=10"
    assert _names(layout) == [
        "date=1970-01-01/hour=00/part-00000.parquet",
        f"{hour}/part-m00.parquet", f"{hour}/part-m05.parquet", f"{hour}/part-m55.parquet",
    ]  # fmt: skip
    stored = read_dataset(partition).sort_by("event_id")
    assert stored["event_id"].to_pylist() == ["a", "b", "c"]  # each once
    assert split_legacy_partitions(layout, {STREAM_TABLE: STREAM_FILE_SCHEMA}) == ([], [])


def test_an_hourly_file_of_old_that_is_no_stream_file_is_quarantined(settings: Settings) -> None:
    layout = LakeLayout.from_settings(settings)
    partition = layout.curated_partition(STREAM_TABLE, DAY, 10)
    write_parquet_atomic(pa.table({"x": [1]}), f"{partition}/part-00000.parquet")
    write_parquet_atomic(pa.table({"event_id": [1]}), f"{partition}/part-00001.parquet")
    # A slice of a split cut short, damaged: read with the file of old, it stopped every start.
    Path(f"{partition}/part-m55.parquet").write_bytes(b"garbage")

    split, moved = split_legacy_partitions(layout, {STREAM_TABLE: STREAM_FILE_SCHEMA})

    assert split == []
    assert [(q.url, q.reason[:27]) for q in moved] == [
        (f"{partition}/part-00001.parquet", "column event_id is int64, e"),
        (f"{partition}/part-m55.parquet", "not a readable Parquet file"),
        (f"{partition}/part-00000.parquet", "rows without event_id or ev"),
    ]
    assert _names(layout) == []
