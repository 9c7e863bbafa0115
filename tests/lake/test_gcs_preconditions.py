"""Generation preconditions on GCS: a writer racing another one's commit is refused, not lost."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from shopflow.lake import (
    LakeError,
    WriteConflictError,
    object_generation,
    partition_generation,
    read_dataset,
    replace_partition,
    write_bytes_atomic,
)
from tests.lake.conftest import Lake

pytestmark = pytest.mark.integration


def rows(*ids: str) -> pa.Table:
    return pa.table({"event_id": list(ids)})


def ids_in(lake: Lake, url: str) -> list[str]:
    table = read_dataset(url, storage_options=lake.storage_options)
    return sorted(table.column("event_id").to_pylist())


def test_a_commit_racing_another_is_refused_and_the_other_kept(gcs_lake: Lake) -> None:
    lake, options = gcs_lake, gcs_lake.storage_options
    url = lake.url("curated", "t", "date=2026-01-01")
    assert partition_generation(url, options) == 0
    replace_partition(rows("a"), url, storage_options=options)
    # Writer one reads the partition (its generation), then writer two commits first.
    seen_by_one = partition_generation(url, options)
    assert seen_by_one
    replace_partition(rows("b1", "b2"), url, storage_options=options)
    assert partition_generation(url, options) != seen_by_one
    with pytest.raises(WriteConflictError, match="changed by another writer") as caught:
        replace_partition(rows("c"), url, storage_options=options, if_generation_match=seen_by_one)
    assert "\n" not in str(caught.value)
    assert ids_in(lake, url) == ["b1", "b2"]
    # A partition another writer created meanwhile is not overwritten by a create either.
    fresh = lake.url("curated", "t", "date=2026-01-02")
    replace_partition(rows("x"), fresh, storage_options=options)
    with pytest.raises(WriteConflictError):
        replace_partition(rows("y"), fresh, storage_options=options, if_generation_match=0)
    assert ids_in(lake, fresh) == ["x"]


def test_the_same_bytes_already_there_are_not_a_conflict(gcs_lake: Lake) -> None:
    # What a retried upload meets when its first attempt landed but the answer was lost.
    lake, options = gcs_lake, gcs_lake.storage_options
    url = lake.url("_state", "x.json")
    write_bytes_atomic(b"one", url, storage_options=options)
    before = object_generation(url, options)
    assert before
    write_bytes_atomic(b"two", url, storage_options=options, if_generation_match=before)
    write_bytes_atomic(b"two", url, storage_options=options, if_generation_match=before)
    with pytest.raises(WriteConflictError):
        write_bytes_atomic(b"three", url, storage_options=options, if_generation_match=before)
    assert lake.fs().cat_file(url.removeprefix("gs://")) == b"two"


def test_concurrent_replacements_each_commit_whole_or_are_refused(gcs_lake: Lake) -> None:
    lake, options = gcs_lake, gcs_lake.storage_options
    url = lake.url("curated", "t", "date=2026-01-03")
    replace_partition(rows("start"), url, storage_options=options)
    start = threading.Barrier(6)
    outcomes: dict[str, str] = {}

    def writer(name: str) -> None:
        start.wait()
        try:
            replace_partition(rows(name, f"{name}-2"), url, storage_options=options)
            outcomes[name] = "committed"
        except WriteConflictError:
            outcomes[name] = "refused"

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 6 and "committed" in outcomes.values()
    final = ids_in(lake, url)
    winner = final[0]
    assert final == [winner, f"{winner}-2"] and outcomes[winner] == "committed"


def test_a_generation_precondition_off_gcs_is_an_error(local_lake: Lake) -> None:
    url = local_lake.url("curated", "t", "date=2026-01-01")
    assert partition_generation(url) is None
    with pytest.raises(LakeError, match="needs GCS"):
        replace_partition(rows("a"), url, if_generation_match=0)
