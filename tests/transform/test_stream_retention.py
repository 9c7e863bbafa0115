"""The stream's tables keep a bounded number of dates (`shopflow.transform.stream_retention`)."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from bench._faults.common import run, shopflow_env

from shopflow.lake import LakeLayout, list_partitions, replace_partition
from shopflow.lake.io import write_parquet_atomic
from shopflow.settings import Settings
from shopflow.transform.stream_keys import keys_root
from shopflow.transform.stream_merge import STREAM_FILE_SCHEMA, STREAM_TABLE
from shopflow.transform.stream_retention import (
    delete_expired_stream_dates,
    expired_dates,
    min_keep_days,
)
from shopflow.transform.stream_slices import slice_file_name
from shopflow.warehouse.live import LIVE_TABLE, PLACEHOLDER_DATE, live_file_schema
from tests.transform.builders import DAY, T0
from tests.transform.test_streaming import Lake, ev

TABLES = (STREAM_TABLE, LIVE_TABLE)


def test_the_stream_keeps_the_days_its_late_tolerance_reads_back() -> None:
    assert min_keep_days(timedelta(hours=12)) == 3
    assert min_keep_days(timedelta(0)) == 2
    assert min_keep_days(timedelta(hours=24)) == 3
    assert min_keep_days(timedelta(hours=25)) == 4


def test_expired_dates_count_back_from_the_newest_date_but_never_from_after_today() -> None:
    days = [date(2026, 11, d) for d in (20, 21, 23, 24, 25)]
    assert expired_dates(days, 3, today=date(2026, 11, 28)) == days[:2]
    assert expired_dates(days, 1, today=date(2026, 11, 28)) == days[:4]
    # A date after today (a clock ahead) does not push the others out.
    assert expired_dates([*days, date(2099, 1, 1)], 3, today=date(2026, 11, 25)) == days[:2]
    assert expired_dates([], 3, today=date(2026, 11, 28)) == []
    assert expired_dates(days, 10**9, today=date(2026, 11, 28)) == []
    with pytest.raises(ValueError, match="at least 1"):
        expired_dates(days, 0, today=date(2026, 11, 28))


def _fill(layout: LakeLayout, days: list[date]) -> None:
    """One hour partition per table and date (a zero-row slice file is enough to list)."""
    for name, schema in ((STREAM_TABLE, STREAM_FILE_SCHEMA), (LIVE_TABLE, live_file_schema())):
        for day in days:
            url = f"{layout.curated_partition(name, day, 10)}/{slice_file_name(0)}"
            write_parquet_atomic(schema.empty_table(), url)


def _dates(layout: LakeLayout, name: str) -> list[str]:
    return sorted({p.values["date"] for p in list_partitions(layout.curated_root(name))})


def test_expired_dates_are_deleted_from_both_tables_and_the_placeholder_stays(
    settings: Settings,
) -> None:
    layout = LakeLayout.from_settings(settings)
    days = [date(2026, 11, d) for d in range(20, 26)]
    _fill(layout, days)
    replace_partition(
        pa.table({"x": [1]}),
        layout.curated_partition(LIVE_TABLE, date.fromisoformat(PLACEHOLDER_DATE), 0),
    )

    deleted = delete_expired_stream_dates(layout, TABLES, 3, today=date(2026, 11, 28))

    assert len(deleted) == 6  # three dates of two tables
    kept = ["2026-11-23", "2026-11-24", "2026-11-25"]
    assert _dates(layout, STREAM_TABLE) == kept
    assert _dates(layout, LIVE_TABLE) == [PLACEHOLDER_DATE, *kept]
    # No empty `date=` folders left behind.
    stream_root = Path(layout.curated_root(STREAM_TABLE))
    assert sorted(p.name for p in stream_root.iterdir()) == [f"date={d}" for d in kept]
    assert delete_expired_stream_dates(layout, TABLES, 3, today=date(2026, 11, 28)) == []


def test_a_date_left_in_the_live_table_alone_still_expires(settings: Settings) -> None:
    # As after a kill between the two tables' deletions: the stream table lost the date already.
    layout = LakeLayout.from_settings(settings)
    days = [date(2026, 11, d) for d in range(20, 26)]
    _fill(layout, days)
    for url in delete_expired_stream_dates(layout, (STREAM_TABLE,), 3, today=date(2026, 11, 28)):
        assert STREAM_TABLE in url
    assert len(_dates(layout, LIVE_TABLE)) == 6

    deleted = delete_expired_stream_dates(layout, TABLES, 3, today=date(2026, 11, 28))

    assert len(deleted) == 3
    assert _dates(layout, LIVE_TABLE) == ["2026-11-23", "2026-11-24", "2026-11-25"]


def test_the_key_index_expires_with_the_stream_table(settings: Settings) -> None:
    layout = LakeLayout.from_settings(settings)
    days = [date(2026, 11, d) for d in range(20, 26)]
    _fill(layout, days)
    index = keys_root(layout, STREAM_TABLE)
    for day in days:
        write_parquet_atomic(
            pa.table({"x": [1]}), f"{index}/date={day.isoformat()}/hour=10/keys-30m-1-2.parquet"
        )

    deleted = delete_expired_stream_dates(
        layout, TABLES, 3, today=date(2026, 11, 28), index_roots=(index,)
    )

    assert len(deleted) == 9  # three dates of two tables and the index
    kept = ["2026-11-23", "2026-11-24", "2026-11-25"]
    assert sorted({p.values["date"] for p in list_partitions(index)}) == kept


def _shopflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = shopflow_env(settings.home) | {"SPARK_LOCAL_IP": "127.0.0.1"}
    return run(env, *args, timeout=600)


def test_keep_days_too_short_or_an_absurd_tolerance_is_a_one_line_error(
    settings: Settings,
) -> None:
    done = _shopflow(settings, "stream", "--keep-days", "2", "--late-tolerance-hours", "12")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "shopflow: error: --keep-days 2 is less than the 3 days a late tolerance of 12 h reads back"
    ]
    absurd = _shopflow(settings, "stream", "--late-tolerance-hours", "1e300")
    assert absurd.returncode == 2
    assert len(absurd.stderr.strip().splitlines()) == 1, absurd.stderr
    assert "--late-tolerance-hours" in absurd.stderr


@pytest.mark.e2e
def test_shopflow_stream_deletes_the_expired_dates_of_its_tables(settings: Settings) -> None:
    layout = LakeLayout.from_settings(settings)
    _fill(layout, [DAY - timedelta(days=n) for n in range(5, 0, -1)])
    Lake(settings).land(ev("e1", "u1", T0), ev("e2", "u2", T0 + timedelta(minutes=1)))

    done = _shopflow(settings, "stream", "--available-now", "--keep-days", "3")

    assert done.returncode == 0, done.stderr[-3000:]
    assert "retention: deleted 6 partition(s) older than 3 days" in done.stderr
    kept = [(DAY - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert _dates(layout, STREAM_TABLE) == kept
    assert _dates(layout, LIVE_TABLE)[-3:] == kept
    assert len(list_partitions(layout.curated_partition(STREAM_TABLE, DAY))) == 1
