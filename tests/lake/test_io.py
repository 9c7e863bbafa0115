"""Writes, listing, partition replacement and reading, on the local file system and on fake GCS."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from shopflow.contracts import RAW_EVENT_SCHEMA
from shopflow.lake import (
    PARTITION_FILE,
    AlreadyExistsError,
    LakeError,
    LakeLayout,
    list_data_files,
    list_partitions,
    read_dataset,
    replace_partition,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from tests.lake.conftest import Lake

T0 = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def events(ids: list[str], ts: datetime = T0) -> pa.Table:
    """Raw event rows in the landing contract."""
    rows = len(ids)
    return pa.table(
        {
            "event_id": ids,
            "event_name": ["view"] * rows,
            "product_id": ["p-1"] * rows,
            "user_id": ["u-1"] * rows,
            "order_id": [None] * rows,
            "price": [499.0] * rows,
            "event_ts": [ts] * rows,
            "session_id": [None] * rows,
            "message_id": [f"m-{i}" for i in ids],
            "publish_ts": [ts] * rows,
            "ingest_ts": [ts] * rows,
        },
        schema=RAW_EVENT_SCHEMA,
    )


def arrow_dataset(lake: Lake, url: str) -> ds.Dataset:
    """The dataset a plain pyarrow reader discovers under `url` (no help from the lake layer)."""
    fs, path = lake.fs(), url.removeprefix("gs://")
    filesystem = (
        pafs.LocalFileSystem() if not lake.is_gcs else pafs.PyFileSystem(pafs.FSSpecHandler(fs))
    )
    fs.invalidate_cache()
    return ds.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive")


def test_parquet_round_trip_with_typed_hive_columns(lake: Lake) -> None:
    layout = LakeLayout(lake.root)
    first = layout.event_batch_file(T0, ["m-a", "m-b"])
    second = layout.event_batch_file(T0 + timedelta(hours=1), ["m-c"])
    write_parquet_atomic(events(["a", "b"]), first, storage_options=lake.storage_options)
    write_parquet_atomic(
        events(["c"], T0 + timedelta(hours=1)), second, storage_options=lake.storage_options
    )

    table = read_dataset(
        layout.events_root(), schema=RAW_EVENT_SCHEMA, storage_options=lake.storage_options
    )
    assert table.schema.field("date").type == pa.date32()
    assert table.schema.field("hour").type == pa.int32()
    assert table.schema.field("event_ts").type == RAW_EVENT_SCHEMA.field("event_ts").type
    rows = sorted(
        zip(*table.select(["event_id", "date", "hour"]).to_pydict().values(), strict=True)
    )
    assert rows == [
        ("a", date(2026, 11, 25), 10),
        ("b", date(2026, 11, 25), 10),
        ("c", date(2026, 11, 25), 11),
    ]

    one_hour = read_dataset(
        [layout.events_partition(date(2026, 11, 25), 11)], storage_options=lake.storage_options
    )
    assert one_hour.column("event_id").to_pylist() == ["c"]
    assert one_hour.column("hour").to_pylist() == [11]


def test_reading_nothing_gives_an_empty_table_with_the_schema(lake: Lake) -> None:
    table = read_dataset(
        lake.url("raw", "events"), schema=RAW_EVENT_SCHEMA, storage_options=lake.storage_options
    )
    assert table.num_rows == 0
    assert table.schema == RAW_EVENT_SCHEMA


def test_rewriting_a_batch_replaces_it_and_never_duplicates(lake: Lake) -> None:
    layout = LakeLayout(lake.root)
    url = layout.event_batch_file(T0, ["m-a", "m-b"])
    write_parquet_atomic(events(["a", "b"]), url, storage_options=lake.storage_options)
    # The retry of the same messages (redelivered in another order) maps to the same file.
    assert layout.event_batch_file(T0, ["m-b", "m-a"]) == url
    write_parquet_atomic(events(["b", "a"]), url, storage_options=lake.storage_options)

    files = list_data_files(layout.events_root(), storage_options=lake.storage_options)
    assert [f.url for f in files] == [url]
    table = read_dataset(layout.events_root(), storage_options=lake.storage_options)
    assert table.column("event_id").to_pylist() == ["b", "a"]


def test_create_only_refuses_to_replace(lake: Lake) -> None:
    url = lake.url("raw", "orders", "cursor_date=2026-11-25", "orders_x.parquet")
    write_parquet_atomic(events(["a"]), url, create_only=True, storage_options=lake.storage_options)
    with pytest.raises(AlreadyExistsError):
        write_parquet_atomic(
            events(["z"]), url, create_only=True, storage_options=lake.storage_options
        )
    assert read_dataset(url.rsplit("/", 1)[0], storage_options=lake.storage_options).column(
        "event_id"
    ).to_pylist() == ["a"]
    assert len(list_data_files(lake.root, storage_options=lake.storage_options)) == 1


def test_bytes_and_json_round_trip(lake: Lake) -> None:
    url = lake.url("misc", "note.json")
    write_json_atomic({"b": 1, "a": [1, 2]}, url, storage_options=lake.storage_options)
    write_bytes_atomic(b"raw", lake.url("misc", "blob.bin"), storage_options=lake.storage_options)
    fs = lake.fs()
    fs.invalidate_cache()
    assert fs.cat_file(url.removeprefix("gs://")) == b'{\n "a": [\n  1,\n  2\n ],\n "b": 1\n}'
    assert fs.cat_file(lake.url("misc", "blob.bin").removeprefix("gs://")) == b"raw"
    with pytest.raises(AlreadyExistsError):
        write_json_atomic({}, url, create_only=True, storage_options=lake.storage_options)


def test_listing_skips_hidden_and_temp_files(lake: Lake) -> None:
    layout = LakeLayout(lake.root)
    partition = layout.events_partition(date(2026, 11, 25), 10)
    good = f"{partition}/events_1.parquet"
    write_parquet_atomic(events(["a"]), good, storage_options=lake.storage_options)
    for hidden in (
        f"{partition}/.events_2.parquet.abc.tmp",
        f"{partition}/_events_3.parquet",
        f"{partition}/_tmp/events_4.parquet",
        f"{lake.root}/raw/events/_SUCCESS",
        f"{partition}/notes.txt",
    ):
        write_bytes_atomic(b"not parquet", hidden, storage_options=lake.storage_options)

    files = list_data_files(layout.events_root(), storage_options=lake.storage_options)
    assert [f.url for f in files] == [good]
    assert files[0].size > 0
    assert abs(files[0].mtime - datetime.now(UTC)) < timedelta(minutes=1)
    assert list_data_files(lake.url("nothing", "here"), storage_options=lake.storage_options) == []
    # A plain reader ignores the same files (only the hidden ones: .txt is not a lake file).
    fs = lake.fs()
    fs.rm_file(f"{partition}/notes.txt".removeprefix("gs://"))
    assert arrow_dataset(lake, layout.events_root()).to_table().num_rows == 1


def test_partitions_changed_since_find_late_data(lake: Lake) -> None:
    layout = LakeLayout(lake.root)
    day = date(2026, 11, 25)
    for hour in (8, 9):
        url = layout.event_batch_file_in(day, hour, T0, [f"m-{hour}"])
        write_parquet_atomic(events([str(hour)]), url, storage_options=lake.storage_options)
    everything = list_partitions(layout.events_root(), storage_options=lake.storage_options)
    assert [(p.date, p.hour) for p in everything] == [(day, 8), (day, 9)]
    watermark = max(p.latest_mtime for p in everything)
    assert (
        list_partitions(layout.events_root(), since=watermark, storage_options=lake.storage_options)
        == []
    )

    time.sleep(0.05)  # mtimes have sub-second precision on both back ends
    late = layout.event_batch_file_in(day, 8, T0, ["m-late"])
    write_parquet_atomic(events(["late"]), late, storage_options=lake.storage_options)
    changed = list_partitions(
        layout.events_root(), since=watermark, storage_options=lake.storage_options
    )
    assert [(p.date, p.hour, len(p.files)) for p in changed] == [(day, 8, 2)]
    assert changed[0].values == {"date": "2026-11-25", "hour": "08"}
    assert changed[0].url == layout.events_partition(day, 8)


def versioned(version: int) -> pa.Table:
    """A partition's content: `100 + version` rows that all carry `version`."""
    rows = 100 + version
    return pa.table(
        {"date": [date(2026, 11, 25)] * rows, "version": [version] * rows, "n": list(range(rows))}
    )


def test_replace_partition_swaps_whole_content(lake: Lake) -> None:
    layout = LakeLayout(lake.root)
    partition = layout.curated_partition("traffic_daily", date(2026, 11, 25))
    # A file of another name, as an older writer (e.g. Spark) might have left.
    write_parquet_atomic(
        versioned(0), f"{partition}/part-00007-old.parquet", storage_options=lake.storage_options
    )

    target = replace_partition(versioned(1), partition, storage_options=lake.storage_options)
    assert target == f"{partition}/{PARTITION_FILE}"
    replace_partition(versioned(2), partition, storage_options=lake.storage_options)

    assert [f.url for f in list_data_files(partition, storage_options=lake.storage_options)] == [
        target
    ]
    table = read_dataset(layout.curated_root("traffic_daily"), storage_options=lake.storage_options)
    assert table.num_rows == 102
    assert set(table.column("version").to_pylist()) == {2}
    assert set(table.column("date").to_pylist()) == {date(2026, 11, 25)}
    # The partition column lives in the path only, as Spark writes it.
    assert read_dataset(partition, storage_options=lake.storage_options).num_rows == 102


def test_replace_partition_refuses_rows_of_another_partition(lake: Lake) -> None:
    partition = LakeLayout(lake.root).curated_partition("traffic_hourly", date(2026, 11, 25), 7)
    wrong_hour = pa.table({"hour": pa.array([7, 8], pa.int32()), "x": [1, 2]})
    with pytest.raises(LakeError, match="hour"):
        replace_partition(wrong_hour, partition, storage_options=lake.storage_options)
    replace_partition(
        pa.table({"hour": pa.array([7], pa.int32()), "x": [1]}),
        partition,
        storage_options=lake.storage_options,
    )
    assert read_dataset(partition, storage_options=lake.storage_options).column(
        "hour"
    ).to_pylist() == [7]


def test_readers_see_old_or_new_partition_never_a_mix(lake: Lake) -> None:
    partition = LakeLayout(lake.root).curated_partition("traffic_daily", date(2026, 11, 25))
    replace_partition(versioned(0), partition, storage_options=lake.storage_options)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for version in range(1, 30):
                replace_partition(
                    versioned(version), partition, storage_options=lake.storage_options
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    reads = 0
    while not stop.is_set() or reads == 0:
        table = read_dataset(partition, storage_options=lake.storage_options)
        versions = set(table.column("version").to_pylist())
        assert len(versions) == 1, f"a reader saw versions {versions} at once"
        (version,) = versions
        assert table.num_rows == 100 + version
        seen.add(version)
        reads += 1
    writer.join()
    assert not errors
    assert len(seen) > 1, "the reader never overlapped the writer; the test proved nothing"
