"""Committing an engine's staged files into partitions, locally and on a real fake-gcs-server."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopflow.lake import (
    LakeError,
    WriteConflictError,
    partition_generation,
    read_dataset,
    replace_partition,
)
from shopflow.lake.staging import (
    commit_staged_file,
    remove_staging,
    staged_files,
    staged_row_count,
)
from tests.lake.conftest import Lake


def _stage(lake: Lake, relative: str, ids: list[str]) -> str:
    """A Parquet file where Spark's partitioned writer would put it."""
    url = lake.url("_staging", "run-1", "t_1", relative)
    fs = lake.fs()
    fs.makedirs(url.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(url, "wb") as handle:
        pq.write_table(pa.table({"event_id": ids}), handle)
    return url


def _ids(lake: Lake, url: str) -> list[str]:
    table = read_dataset(url, storage_options=lake.storage_options)
    return sorted(table.column("event_id").to_pylist())


def test_staged_files_are_found_per_partition_and_committed_whole(lake: Lake) -> None:
    options = lake.storage_options
    _stage(lake, "date=2026-11-01/hour=3/part-00000-abc.c000.zstd.parquet", ["a", "b"])
    _stage(lake, "date=2026-11-01/hour=4/part-00001-abc.c000.zstd.parquet", ["c"])
    _stage(lake, "date=2026-11-01/hour=4/.part-00001-abc.c000.zstd.parquet.crc", ["x"])
    staging = lake.url("_staging", "run-1", "t_1")
    found = staged_files(staging, options)
    assert sorted(found) == [(date(2026, 11, 1), 3), (date(2026, 11, 1), 4)]
    assert staged_row_count(found[(date(2026, 11, 1), 3)], options) == 2

    # The partition held an older file of another name and the old part file: both replaced.
    partition = lake.url("curated", "t", "date=2026-11-01", "hour=03")
    replace_partition(pa.table({"event_id": ["old"]}), partition, storage_options=options)
    fs = lake.fs()
    with fs.open(f"{partition}/stale-from-an-old-writer.parquet", "wb") as handle:
        pq.write_table(pa.table({"event_id": ["stale"]}), handle)
    target = commit_staged_file(found[(date(2026, 11, 1), 3)], partition, storage_options=options)
    assert target.endswith("/hour=03/part-00000.parquet")
    assert _ids(lake, partition) == ["a", "b"]
    assert not fs.exists(found[(date(2026, 11, 1), 3)])  # moved, not copied

    remove_staging(staging, options)
    assert staged_files(staging, options) == {}
    remove_staging(staging, options)  # twice: nothing to remove is not an error


def test_two_files_for_one_partition_are_refused(lake: Lake) -> None:
    _stage(lake, "date=2026-11-01/part-00000-abc.parquet", ["a"])
    _stage(lake, "date=2026-11-01/part-00001-abc.parquet", ["b"])
    with pytest.raises(LakeError, match="more than one data file"):
        staged_files(lake.url("_staging", "run-1", "t_1"), lake.storage_options)


def test_a_snapshot_without_partition_folders_has_the_empty_key(lake: Lake) -> None:
    _stage(lake, "part-00000-abc.parquet", ["a"])
    assert list(staged_files(lake.url("_staging", "run-1", "t_1"), lake.storage_options)) == [
        (None, None)
    ]


@pytest.mark.integration
def test_a_commit_racing_another_writer_on_gcs_is_refused(gcs_lake: Lake) -> None:
    options = gcs_lake.storage_options
    partition = gcs_lake.url("curated", "t", "date=2026-11-01")
    replace_partition(pa.table({"event_id": ["first"]}), partition, storage_options=options)
    seen = partition_generation(partition, options)
    # Another writer commits after this one read the generation.
    replace_partition(pa.table({"event_id": ["other"]}), partition, storage_options=options)
    staged = _stage(gcs_lake, "date=2026-11-01/part-00000-abc.parquet", ["mine"])
    with pytest.raises(WriteConflictError, match="changed by another writer") as caught:
        commit_staged_file(staged, partition, storage_options=options, if_generation_match=seen)
    assert "\n" not in str(caught.value)
    assert _ids(gcs_lake, partition) == ["other"]
