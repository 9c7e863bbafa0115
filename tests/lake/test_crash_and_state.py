"""A writer SIGKILLed mid-write leaves no visible partial file; state is atomic and guarded."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from shopflow.lake import (
    LakeLayout,
    StateConflictError,
    StateStore,
    list_data_files,
    read_dataset,
    remove_stale_temp_files,
)
from shopflow.settings import Settings
from tests.lake.conftest import Lake

WRITER = Path(__file__).with_name("_writer.py")
ROWS = 1_500_000
KILLS = 4


def start_writer(
    mode: str, url: str, lake: Lake, amount: int, *extra: str
) -> subprocess.Popen[str]:
    """The writer script in its own Python process."""
    return subprocess.Popen(
        [
            sys.executable,
            str(WRITER),
            mode,
            url,
            json.dumps(lake.storage_options),
            str(amount),
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def kill_mid_write(process: subprocess.Popen[str], rng: random.Random) -> tuple[int, int]:
    """Let one write finish, SIGKILL during a later one; return (last written, last started)."""
    assert process.stdout is not None
    lines = [process.stdout.readline()]
    started = time.monotonic()
    lines.append(process.stdout.readline())
    duration = time.monotonic() - started
    lines.append(process.stdout.readline())
    time.sleep(rng.uniform(0, duration))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    lines += process.stdout.read().splitlines()
    last: dict[str, int] = {}
    for line in lines:
        word, version = line.split()
        last[word] = int(version)
    return last["wrote"], last["writing"]


def plain_reader_rows(lake: Lake, folder: str) -> ds.Dataset:
    """What a plain pyarrow.dataset reader discovers in `folder`."""
    fs = lake.fs()
    fs.invalidate_cache()
    filesystem = (
        pafs.PyFileSystem(pafs.FSSpecHandler(fs)) if lake.is_gcs else pafs.LocalFileSystem()
    )
    return ds.dataset(folder.removeprefix("gs://"), filesystem=filesystem, format="parquet")


@pytest.mark.parametrize("mode", ["parquet", "replace"])
def test_killed_writer_never_leaves_a_visible_partial_file(lake: Lake, mode: str) -> None:
    layout = LakeLayout(lake.root)
    if mode == "parquet":
        folder = layout.events_partition(date(2026, 11, 25), 10)
        target = f"{folder}/events_batch.parquet"
    else:
        folder = layout.curated_partition("traffic_hourly", date(2026, 11, 25), 10)
        target = folder
    rng = random.Random(7)
    leftovers = 0
    for kill in range(KILLS):
        process = start_writer(mode, target, lake, ROWS, str(kill * 100))
        written, in_flight = kill_mid_write(process, rng)

        files = list_data_files(folder, storage_options=lake.storage_options)
        assert len(files) == 1, files
        table = read_dataset(folder, storage_options=lake.storage_options)
        versions = set(table.column("version").to_pylist())
        assert table.num_rows == ROWS
        assert versions in ({written}, {in_flight})  # the rename may have happened just before
        plain = plain_reader_rows(lake, folder)
        assert len(plain.files) == 1
        assert plain.count_rows() == ROWS
        if not lake.is_gcs:
            leftovers += len(list(Path(folder).glob(".*.tmp")))
    if not lake.is_gcs:
        # Killing really happened mid-write at least once (a temp file was left behind) ...
        assert leftovers > 0
        # ... and those leftovers can be swept.
        assert remove_stale_temp_files(lake.root, older_than=datetime.now(UTC) + timedelta(1))
        assert not list(Path(folder).glob(".*.tmp"))


def test_state_round_trip_survives_a_new_store(lake: Lake) -> None:
    store = StateStore(lake.root, storage_options=lake.storage_options)
    assert store.get("orders_cursor") is None
    store.put("orders_cursor", {"updated_at": "2026-11-25T10:00:00Z", "n": 1})
    store.put("orders_cursor", {"updated_at": "2026-11-25T10:10:00Z", "n": 2})
    again = StateStore(lake.root, storage_options=lake.storage_options)
    assert again.get("orders_cursor") == {"updated_at": "2026-11-25T10:10:00Z", "n": 2}
    assert again.get("other") is None
    # The record lives where the layout says, hidden from data listings.
    assert list_data_files(lake.root, suffix=".json", storage_options=lake.storage_options) == []
    fs = lake.fs()
    fs.invalidate_cache()
    assert fs.exists(LakeLayout(lake.root).state_file("orders_cursor").removeprefix("gs://"))


def test_state_conflict_is_detected(lake: Lake) -> None:
    first = StateStore(lake.root, storage_options=lake.storage_options)
    second = StateStore(lake.root, storage_options=lake.storage_options)
    assert first.get("watermark") is None
    assert second.get("watermark") is None
    first.put("watermark", {"hour": 1})
    with pytest.raises(StateConflictError, match="another writer"):
        second.put("watermark", {"hour": 2})
    assert second.get("watermark") == {"hour": 1}
    second.put("watermark", {"hour": 2})
    with pytest.raises(StateConflictError):
        first.put("watermark", {"hour": 3})
    assert StateStore(lake.root, storage_options=lake.storage_options).get("watermark") == {
        "hour": 2
    }


def test_concurrent_increments_lose_no_update(lake: Lake) -> None:
    each = 15
    writers = [start_writer("increment", lake.root, lake, each) for _ in range(2)]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    assert StateStore(lake.root, storage_options=lake.storage_options).get("counter") == {
        "n": 2 * each
    }


def test_state_store_from_settings(settings: Settings) -> None:
    StateStore(settings).put("x", {"a": 1})
    assert StateStore(settings.lake_url).get("x") == {"a": 1}
    assert Path(settings.lake_url, "_state", "x.json").is_file()
