"""Quarantine on either back end: an unreadable raw file leaves the dataset, whole, with a reason."""

from __future__ import annotations

import json

import pyarrow as pa

from shopflow.contracts import RAW_EVENT_SCHEMA
from shopflow.lake import LakeLayout, list_data_files, write_bytes_atomic
from shopflow.lake.quarantine import screen_files
from tests.lake.conftest import Lake


def test_an_unreadable_file_moves_to_quarantine_whole_with_its_reason(lake: Lake) -> None:
    options = lake.storage_options
    layout = LakeLayout(lake.root)
    url = f"{layout.events_root()}/date=2026-01-01/hour=03/events_bad.parquet"
    garbage = b"not parquet at all" * 100
    write_bytes_atomic(garbage, url, storage_options=options)
    assert [f.url for f in list_data_files(layout.events_root(), storage_options=options)] == [url]

    schema = pa.schema([*RAW_EVENT_SCHEMA, ("date", pa.date32()), ("hour", pa.int32())])
    moved = screen_files(layout, [url], schema, options, partition_keys=["date", "hour"])

    assert [m.url for m in moved] == [url] and "not a readable Parquet file" in moved[0].reason
    # Gone from the dataset at once (no stale listing), kept byte for byte beside its reason.
    assert list_data_files(layout.events_root(), storage_options=options) == []
    fs = lake.fs()
    target = moved[0].moved_to.removeprefix("gs://")
    assert fs.cat_file(target) == garbage
    note = json.loads(fs.cat_file(f"{target}.reason.json"))
    assert note["reason"] == moved[0].reason

    # The same path damaged again (a stream slice keeps its name): the first copy is kept.
    again = b"other garbage" * 10
    write_bytes_atomic(again, url, storage_options=options)
    [second] = screen_files(layout, [url], schema, options, partition_keys=["date", "hour"])
    assert second.moved_to == f"{moved[0].moved_to}.1"
    assert fs.cat_file(target) == garbage
    assert fs.cat_file(second.moved_to.removeprefix("gs://")) == again
    assert json.loads(fs.cat_file(f"{second.moved_to.removeprefix('gs://')}.reason.json"))
