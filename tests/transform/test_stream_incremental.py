"""A micro-batch replaces only the partitions it can change, and the tables end as a full recompute."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, SparkSession

from shopflow.lake import (
    LakeError,
    LakeLayout,
    list_data_files,
    read_dataset,
    replace_partition,
)
from shopflow.settings import Settings
from shopflow.transform.engine import transforms
from shopflow.transform.events import (
    EVENTS_CLEAN_COLUMNS,
    dedup_events,
    sessionise,
    stage_events,
    valid_events,
)
from shopflow.transform.stream_keys import keys_root
from shopflow.transform.stream_live import HISTORY_SCHEMAS, live_rows, read_history
from shopflow.transform.stream_merge import (
    STREAM_TABLE,
    DuckDBMerge,
    affected_dates,
    apply_micro_batch,
)
from shopflow.transform.stream_slices import is_slice_file
from shopflow.warehouse.live import LIVE_TABLE
from tests.transform.builders import DAY, T0, raw_events

MIN = timedelta(minutes=1)
MIDNIGHT = T0 + timedelta(hours=14)  # the next day, 00:00


def _event(event_id: str, user_id: str, ts: datetime, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user_id, "event_ts": ts, **extra}


FIRST = [
    # u-a: two derived sessions, 10:00-10:20 and 11:10-11:30 (a 50-minute gap).
    _event("a1", "u-a", T0),
    _event("a2", "u-a", T0 + 20 * MIN),
    _event("a3", "u-a", T0 + 70 * MIN),
    _event("a4", "u-a", T0 + 90 * MIN),
    _event("b1", "u-b", T0 + 5 * MIN),
    # u-c is not in the second micro-batch: its partition (12:00) must stay as written.
    _event("c1", "u-c", T0 + 130 * MIN),
    _event("c2", "u-c", T0 + 140 * MIN),
    # u-d: a client session over 10:40-11:45.
    _event("d1", "u-d", T0 + 40 * MIN, session_id="s-d"),
    _event("d2", "u-d", T0 + 105 * MIN, session_id="s-d"),
    # u-e: a session from 23:15 to 23:40, another just after midnight.
    _event("e-p1", "u-e", MIDNIGHT - 45 * MIN),
    _event("e-p2", "u-e", MIDNIGHT - 20 * MIN),
    _event("e1", "u-e", MIDNIGHT + 10 * MIN),
    # u-f: a client session begun at 10:00.
    _event("f1", "u-f", T0, session_id="s-f"),
    # u-g: one derived session of an event every 10 minutes, 10:00-11:40.
    *(_event(f"g{i:02d}", "u-g", T0 + 10 * i * MIN) for i in range(11)),
]
SECOND = [
    # Late: bridges u-a's two sessions, so a3/a4 (hour 11) take a1's session id.
    _event("a-late", "u-a", T0 + 45 * MIN),
    _event("b2", "u-b", T0 + 30 * MIN),
    # An earlier event of the client session: d2's (hour 11) session start moves to 10:10.
    _event("d0", "u-d", T0 + 10 * MIN, session_id="s-d"),
    # 23:55: bridges u-e's two sessions, so e1 (next day, hour 00) joins the one from 23:15.
    _event("e0", "u-e", MIDNIGHT - 5 * MIN),
    # u-f's client session goes on at 11:50: it still starts at 10:00.
    _event("f2", "u-f", T0 + 110 * MIN, session_id="s-f"),
    # u-g's session goes on: the new event's session id is still the one from 10:00.
    _event("g-new", "u-g", T0 + 110 * MIN),
]


@pytest.fixture(params=["spark", "duckdb"])
def merge(request: pytest.FixtureRequest) -> Iterator[DuckDBMerge | None]:
    """What a micro-batch is merged on: the stream's Spark (None), or DuckDB."""
    if request.param == "spark":
        yield None
        return
    on_duckdb = DuckDBMerge(request.getfixturevalue("duckdb_session"))
    yield on_duckdb
    on_duckdb.close()


def _new_events(spark: SparkSession, rows: list[dict[str, Any]], landed: datetime) -> DataFrame:
    """A micro-batch as `foreachBatch` gets it: staged, valid events landed at `landed`."""
    raw = raw_events(spark, [{**r, "ingest_ts": landed} for r in rows])
    return valid_events(stage_events(raw))


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: str(r["event_id"]))


def _files(layout: LakeLayout, table: str) -> dict[str, tuple[int, int]]:
    root = layout.curated_root(table)
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (
                stat.st_ino,
                stat.st_mtime_ns,
            )
    return found


def test_a_micro_batch_replaces_only_what_it_can_change(
    spark: SparkSession, settings: Settings, merge: DuckDBMerge | None
) -> None:
    layout = LakeLayout.from_settings(settings)
    first = _new_events(spark, FIRST, T0 + timedelta(days=2))
    second = _new_events(spark, SECOND, T0 + timedelta(days=2, hours=1))
    apply_micro_batch(first, layout, merge=merge)
    before = _files(layout, STREAM_TABLE)
    live_before = _files(layout, LIVE_TABLE)

    written = apply_micro_batch(second, layout, merge=merge)

    day = DAY.isoformat()
    next_day = (DAY + timedelta(days=1)).isoformat()
    changed = {f"date={day}/hour={h}" for h in ("10", "11", "23")} | {f"date={next_day}/hour=00"}
    assert {"/".join(url.split("/")[-3:-1]) for url in written} == changed
    assert all(is_slice_file(url) for url in written)
    # The same slices of the stream table and of the live table.
    table_slices = [url for url in written if f"/{STREAM_TABLE}/" in url]
    live_slices = [url for url in written if f"/{LIVE_TABLE}/" in url]
    assert len(table_slices) + len(live_slices) == len(written)
    assert [u.split("/")[-3:] for u in table_slices] == [u.split("/")[-3:] for u in live_slices]
    # Files of an hour it cannot change, and slices of a changed hour holding no changed row,
    # are left alone (same inode, same modification time).
    untouched = [
        name
        for name in before
        if name.startswith(f"date={day}/hour=12/")
        or (name.startswith(f"date={day}/hour=10/") and name.rsplit("/", 1)[-1] not in
            {u.rsplit("/", 1)[-1] for u in table_slices if f"date={day}/hour=10/" in u})
    ]  # fmt: skip
    assert any(name.startswith(f"date={day}/hour=10/") for name in untouched)
    for name in untouched:
        assert _files(layout, STREAM_TABLE)[name] == before[name], name
        assert _files(layout, LIVE_TABLE)[name] == live_before[name], name

    # Both tables are what a recompute of every event gives.
    everything = dedup_events(first.unionByName(second))
    full = sessionise(everything).select(*EVENTS_CLEAN_COLUMNS)
    expected = _sorted(full.toArrow().to_pylist())
    stream = read_dataset(layout.curated_root(STREAM_TABLE)).select(list(EVENTS_CLEAN_COLUMNS))
    assert _sorted(stream.to_pylist()) == expected
    histories = (read_history(spark, layout, f"{n}_history") for n in ("products", "users"))
    expected_live = live_rows(transforms(spark), full, *histories).toArrow()
    live = read_dataset(layout.curated_root(LIVE_TABLE)).select(expected_live.column_names)
    assert _sorted(live.to_pylist()) == _sorted(expected_live.to_pylist())
    by_id = {r["event_id"]: r for r in expected}
    assert by_id["a4"]["session_id"] == by_id["a1"]["session_id"]
    assert by_id["d2"]["session_start_ts"] == T0 + 10 * MIN
    assert by_id["e1"]["session_id"] == by_id["e-p1"]["session_id"]
    assert by_id["f2"]["session_start_ts"] == T0
    assert by_id["g-new"]["session_id"] == by_id["g00"]["session_id"]

    # A replay (a crash after the writes, before the checkpoint commit) changes nothing.
    apply_micro_batch(second, layout, merge=merge)
    stream = read_dataset(layout.curated_root(STREAM_TABLE)).select(list(EVENTS_CLEAN_COLUMNS))
    assert _sorted(stream.to_pylist()) == expected


@pytest.mark.parametrize("seed", [2, 9])
def test_shuffled_micro_batches_with_replays_and_a_damaged_index_equal_a_recompute(
    spark: SparkSession, settings: Settings, merge: DuckDBMerge | None, seed: int
) -> None:
    """Seeded events around midnight (gaps either side of 30 minutes, client sessions, equal
    times) in micro-batches of shuffled order, so many users arrive out of order; copies of
    earlier events; replays; the key index deleted or overwritten between batches."""
    layout = LakeLayout.from_settings(settings)
    rng = random.Random(seed)
    steps = [0, 1, 5, 15, 29, 30, 31, 45, 90]
    events = []
    for user in range(4):
        ts = MIDNIGHT - timedelta(minutes=rng.randint(30, 120))
        for i in range(rng.randint(5, 14)):
            ts += timedelta(minutes=rng.choice(steps))
            session = rng.choice([None, None, f"s{user}-{rng.randint(0, 1)}"])
            events.append(_event(f"e{user}-{i:02d}", f"u{user}", ts, session_id=session))
    rng.shuffle(events)
    count = 7
    batches = [events[i::count] for i in range(count)]
    for batch in batches[1:]:
        batch.append(dict(rng.choice(events)))  # a copy of an event, maybe already stored
    landed = [T0 + timedelta(days=2, minutes=k) for k in range(count)]
    index = keys_root(layout, STREAM_TABLE)
    for k, batch in enumerate(batches):
        # As `foreachBatch` gets it: the state store lets one copy per batch through.
        new = _new_events(spark, batch, landed[k]).dropDuplicates(["event_id"])
        apply_micro_batch(new, layout, merge=merge)
        if k % 3 == 1:
            apply_micro_batch(new, layout, merge=merge)  # a replay
        if k == 2:
            shutil.rmtree(index)
        if k == 4:
            Path(list_data_files(index)[0].url).write_bytes(b"not parquet")

    every = [_new_events(spark, batch, landed[k]) for k, batch in enumerate(batches)]
    union = every[0]
    for part in every[1:]:
        union = union.unionByName(part)
    full = sessionise(dedup_events(union)).select(*EVENTS_CLEAN_COLUMNS)
    expected = _sorted(full.drop("ingest_ts").toArrow().to_pylist())
    stream = read_dataset(layout.curated_root(STREAM_TABLE)).select(
        [c for c in EVENTS_CLEAN_COLUMNS if c != "ingest_ts"]
    )
    # Which copy of an event survives (its `ingest_ts`) may differ; the rest may not.
    assert _sorted(stream.to_pylist()) == expected


def _write_users_history(layout: LakeLayout, name: str) -> None:
    rows = pa.table(
        {
            "user_id": ["u-a"],
            "user_name": [name],
            "valid_from": [T0 - timedelta(days=30)],
            "valid_to": [None],
            "is_first_version": [True],
        },
        schema=HISTORY_SCHEMAS["users_history"],
    )
    replace_partition(rows, layout.curated_root("users_history"))


def test_live_rows_take_the_names_of_the_history_the_etl_last_wrote(
    spark: SparkSession, settings: Settings, merge: DuckDBMerge | None
) -> None:
    layout = LakeLayout.from_settings(settings)
    landed = T0 + timedelta(days=2)

    def live_name(event_id: str) -> object:
        live = read_dataset(layout.curated_root(LIVE_TABLE)).to_pylist()
        return next(r["user_name"] for r in live if r["event_id"] == event_id)

    apply_micro_batch(_new_events(spark, [_event("a1", "u-a", T0)], landed), layout, merge=merge)
    assert live_name("a1") is None  # no history yet
    _write_users_history(layout, "Asha")
    apply_micro_batch(
        _new_events(spark, [_event("a2", "u-a", T0 + MIN)], landed), layout, merge=merge
    )
    assert live_name("a2") == "Asha"
    _write_users_history(layout, "Asha R")  # the next hourly ETL renamed her
    apply_micro_batch(
        _new_events(spark, [_event("a3", "u-a", T0 + 2 * MIN)], landed), layout, merge=merge
    )
    assert live_name("a3") == "Asha R"


def test_the_calendars_first_and_last_days_have_no_neighbours() -> None:
    # An absurd event time (9999-12-31, landed from outside the landing's checks) must not
    # stop the stream with an overflow.
    assert affected_dates({date.max}) == ({date.max}, {date.max, date.max - timedelta(days=1)})
    assert affected_dates({date.min}) == (
        {date.min, date.min + timedelta(days=1)},
        {date.min, date.min + timedelta(days=1)},
    )


def test_a_history_file_of_other_column_types_is_refused_not_converted(
    spark: SparkSession, settings: Settings, duckdb_session: Any
) -> None:
    layout = LakeLayout.from_settings(settings)
    wrong = pa.table(
        {
            "user_id": ["u-a"],
            "user_name": [32],  # a number, not text
            "valid_from": ["2026-01-01"],
            "valid_to": [None],
            "is_first_version": ["yes"],  # text DuckDB would cast to true
        }
    )
    replace_partition(wrong, layout.curated_root("users_history"))
    merge = DuckDBMerge(duckdb_session)
    try:
        new = _new_events(spark, [_event("a1", "u-a", T0)], T0 + timedelta(days=2))
        with pytest.raises(LakeError, match=r"column user_name is int64, expected string"):
            apply_micro_batch(new, layout, merge=merge)
    finally:
        merge.close()
