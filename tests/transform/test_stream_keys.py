"""The stream table's key index: what it keeps, who it stands in for, and that a stale one is
rebuilt from the table."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from shopflow.lake import LakeLayout, list_data_files, replace_partition
from shopflow.lake.io import write_parquet_atomic
from shopflow.settings import Settings
from shopflow.transform.stream_keys import (
    KEY_COLUMNS,
    keys_root,
    out_of_order_users,
    read_keys,
    summarise,
)
from shopflow.transform.stream_merge import STREAM_FILE_SCHEMA, STREAM_TABLE
from shopflow.transform.stream_plan import FIRST_ID, FIRST_TS
from tests.transform.builders import DAY, T0

MIN = timedelta(minutes=1)
TS = pa.timestamp("us", tz="UTC")


def _rows(*rows: tuple[str, str | None, datetime, str]) -> pa.Table:
    """(user, client session or None, time, event id) → rows with `date` and `KEY_COLUMNS`."""
    return pa.table(
        {
            "date": pa.array([ts.date() for _, _, ts, _ in rows], pa.date32()),
            "user_id": [r[0] for r in rows],
            "session_id": pa.array([r[1] for r in rows], pa.string()),
            "session_source": ["derived" if r[1] is None else "client" for r in rows],
            "event_ts": pa.array([r[2] for r in rows], TS),
            "event_id": [r[3] for r in rows],
        }
    )


def _ids(table: pa.Table) -> list[str]:
    return sorted(table["event_id"].to_pylist())


def test_summarise_keeps_each_buckets_and_client_sessions_first_and_last_key() -> None:
    rows = _rows(
        # u1, derived, bucket 10:00-10:30: four events, two at the same time.
        ("u1", None, T0 + 1 * MIN, "a"),
        ("u1", None, T0 + 5 * MIN, "c"),
        ("u1", None, T0 + 5 * MIN, "b"),
        ("u1", None, T0 + 29 * MIN, "d"),
        # u1, bucket 10:30-11:00: one event (first and last at once).
        ("u1", None, T0 + 31 * MIN, "e"),
        # u1's client session: three events; u2's derived event in u1's bucket.
        ("u1", "s1", T0 + 2 * MIN, "f"),
        ("u1", "s1", T0 + 40 * MIN, "g"),
        ("u1", "s1", T0 + 20 * MIN, "h"),
        ("u2", None, T0 + 3 * MIN, "i"),
    )
    keys = summarise(rows, bucket_minutes=30)
    assert _ids(keys) == ["a", "d", "e", "f", "g", "i"]
    assert keys.column_names == ["date", *KEY_COLUMNS]


def test_the_same_key_twice_is_kept_once_and_ties_break_on_the_event_id() -> None:
    rows = _rows(("u1", None, T0, "b"), ("u1", None, T0, "a"), ("u1", None, T0, "b"))
    assert _ids(summarise(rows, bucket_minutes=30)) == ["a", "b"]
    # A group of one key, twice over (a row merged with its own index entry), in two chunks.
    one = _rows(("u2", "s", T0, "c"))
    assert _ids(summarise(pa.concat_tables([one, one]), bucket_minutes=30)) == ["c"]


def test_summarising_a_summary_with_more_rows_is_summarising_them_all() -> None:
    first = _rows(("u1", None, T0, "a"), ("u1", None, T0 + 10 * MIN, "b"))
    more = _rows(("u1", None, T0 + 20 * MIN, "c"), ("u1", "s", T0 + 21 * MIN, "d"))
    incremental = summarise(pa.concat_tables([summarise(first, 30), more]), 30)
    assert _ids(incremental) == _ids(summarise(pa.concat_tables([first, more]), 30))


def _firsts(*firsts: tuple[str, datetime, str]) -> pa.Table:
    return pa.table(
        {
            "user_id": [f[0] for f in firsts],
            FIRST_TS: pa.array([f[1] for f in firsts], TS),
            FIRST_ID: [f[2] for f in firsts],
        }
    )


def test_a_user_is_out_of_order_when_a_stored_key_is_at_or_after_the_first_new_one() -> None:
    keys = summarise(
        _rows(
            ("early", None, T0, "e1"),
            ("late", None, T0 + 10 * MIN, "l1"),
            ("same", "s", T0 + 10 * MIN, "m1"),
            ("tie", None, T0 + 10 * MIN, "t5"),
        ),
        bucket_minutes=30,
    )
    firsts = _firsts(
        ("early", T0 + MIN, "e2"),  # after its only key: in order
        ("late", T0 + 5 * MIN, "l2"),  # before a stored key
        ("same", T0 + 10 * MIN, "m1"),  # its own key again (a replay)
        ("tie", T0 + 10 * MIN, "t1"),  # same time, smaller id: sorts before
        ("new", T0, "n1"),  # no stored key at all
    )
    assert out_of_order_users(firsts, keys) == {"late", "same", "tie"}


def _partition_rows(*rows: tuple[str, datetime, str]) -> pa.Table:
    columns: dict[str, Any] = {f.name: [None] * len(rows) for f in STREAM_FILE_SCHEMA}
    columns.update(
        user_id=[r[0] for r in rows],
        event_ts=[r[1] for r in rows],
        event_id=[r[2] for r in rows],
        session_source=["derived"] * len(rows),
    )
    return pa.table(columns, schema=STREAM_FILE_SCHEMA)


def test_an_index_not_named_for_the_table_file_is_rebuilt_from_the_table(
    settings: Settings,
) -> None:
    layout = LakeLayout.from_settings(settings)
    table = STREAM_TABLE
    partition = layout.curated_partition(table, DAY, 10)
    replace_partition(_partition_rows(("u1", T0, "a"), ("u1", T0 + MIN, "b")), partition)

    built = read_keys(layout, table, {DAY}, 30, STREAM_FILE_SCHEMA)
    assert _ids(built[(DAY, 10)].keys) == ["a", "b"]
    index_files = list_data_files(keys_root(layout, table))
    assert len(index_files) == 1
    # Read again: the same file serves, nothing is written.
    again = read_keys(layout, table, {DAY}, 30, STREAM_FILE_SCHEMA)
    assert _ids(again[(DAY, 10)].keys) == ["a", "b"]
    assert list_data_files(keys_root(layout, table)) == index_files

    # The table partition rewritten (as by a micro-batch killed before its index write).
    replace_partition(_partition_rows(("u1", T0, "a"), ("u1", T0 + 9 * MIN, "z")), partition)
    rebuilt = read_keys(layout, table, {DAY}, 30, STREAM_FILE_SCHEMA)
    assert _ids(rebuilt[(DAY, 10)].keys) == ["a", "z"]
    after = list_data_files(keys_root(layout, table))
    assert len(after) == 1 and after != index_files  # the stale file is gone

    # An index file that is not Parquet (a disk fault) is rebuilt, not an error.
    Path(after[0].url).write_bytes(b"not parquet")
    assert _ids(read_keys(layout, table, {DAY}, 30, STREAM_FILE_SCHEMA)[(DAY, 10)].keys) == [
        "a",
        "z",
    ]

    # Another session gap is another index; a date not asked for is not read.
    assert _ids(read_keys(layout, table, {DAY}, 60, STREAM_FILE_SCHEMA)[(DAY, 10)].keys) == [
        "a",
        "z",
    ]
    assert read_keys(layout, table, {date(2026, 1, 1)}, 30, STREAM_FILE_SCHEMA) == {}
    assert os.path.isdir(keys_root(layout, table))


def test_a_partition_of_several_files_is_indexed_from_all_and_rebuilt_when_one_changes(
    settings: Settings,
) -> None:
    # The stream writes an hour as several slice files (`stream_live.SLICE_MINUTES`).
    layout = LakeLayout.from_settings(settings)
    table = STREAM_TABLE
    partition = layout.curated_partition(table, DAY, 10)
    write_parquet_atomic(_partition_rows(("u1", T0, "a")), f"{partition}/part-m00.parquet")
    write_parquet_atomic(
        _partition_rows(("u1", T0 + 9 * MIN, "z")), f"{partition}/part-m05.parquet"
    )

    found = read_keys(layout, table, {DAY}, 30, STREAM_FILE_SCHEMA)
    assert _ids(found[(DAY, 10)].keys) == ["a", "z"]
    assert len(found[(DAY, 10)].table_files) == 2
    [index_file] = list_data_files(keys_root(layout, table))

    # One slice rewritten: the index no longer matches the listing and is rebuilt.
    write_parquet_atomic(
        _partition_rows(("u1", T0 + 9 * MIN, "z"), ("u1", T0 + 11 * MIN, "zz")),
        f"{partition}/part-m05.parquet",
    )
    found = read_keys(layout, table, {DAY}, 30, STREAM_FILE_SCHEMA)
    assert _ids(found[(DAY, 10)].keys) == ["a", "zz"]
    [rebuilt] = list_data_files(keys_root(layout, table))
    assert rebuilt.url != index_file.url
