"""Exact change tracking (commit logs, manifests) and recomputes that remove what no longer exists.

Run on the DuckDB engine: what is tested here is the planning and the partition writes, which are
the same for both engines (`test_jobs.py` runs the job itself on both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from shopflow.contracts import RAW_EVENT_SCHEMA
from shopflow.errors import ShopflowError
from shopflow.lake import LakeError, LakeLayout, list_partitions, read_dataset, write_parquet_atomic
from shopflow.lake.commit_log import CommitLog, register_files
from shopflow.metrics import load_warehouse
from shopflow.settings import Settings
from shopflow.transform.jobs import CURATED_TABLES, EtlRequest, backfill_request, run_etl
from shopflow.warehouse.load import duckdb_path
from tests.transform.builders import DAY
from tests.transform.test_jobs import HOUR, _event, land, land_catalogue_and_orders


def _event_ids(layout: LakeLayout, table: str, day: date | None = None) -> set[str]:
    root = layout.curated_root(table)
    url = root if day is None else f"{root}/date={day.isoformat()}"
    if not list_partitions(url):
        return set()
    return set(read_dataset(url, columns=["event_id"])["event_id"].to_pylist())


# ------------------------------------------------------------------------------------------------
# The commit log


def test_commit_log_numbers_are_dense_under_concurrent_writers(tmp_path: Path) -> None:
    layout = LakeLayout(str(tmp_path / "lake"))
    urls = [f"{layout.events_root()}/date=2026-01-01/hour=00/f{n}.parquet" for n in range(60)]
    logs = [CommitLog(layout, "events") for _ in range(4)]  # four writers, as four processes
    taken: list[int] = []

    def write(writer: int) -> None:
        for url in urls[writer::4]:
            taken.append(logs[writer].append([url]))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(1, 61))  # no number twice, none skipped
    reader = CommitLog(layout, "events")
    assert reader.tail() == 60
    records = reader.read_after(0)
    assert [r.seq for r in records] == list(range(1, 61))
    assert sorted(f for r in records for f in r.files) == sorted(
        u.removeprefix(layout.root + "/") for u in urls
    )
    assert [r.seq for r in reader.read_after(57)] == [58, 59, 60]
    assert reader.read_after(60) == []


def test_a_damaged_commit_record_is_a_one_line_error(tmp_path: Path) -> None:
    layout = LakeLayout(str(tmp_path / "lake"))
    log = CommitLog(layout, "events")
    log.append([f"{layout.events_root()}/date=2026-01-01/hour=00/a.parquet"])
    Path(log.record_url(1)).write_text("{not json")
    with pytest.raises(LakeError, match=r"commit record .*000000000001\.json is not readable"):
        log.read_after(0)
    with pytest.raises(LakeError, match="not inside the lake"):
        log.append(["/elsewhere/raw/events/date=2026-01-01/hour=00/a.parquet"])


# ------------------------------------------------------------------------------------------------
# What a run picks up


def _old_file(layout: LakeLayout, event_id: str, offset: timedelta, days_old: float) -> str:
    """A raw event file whose modification time is `days_old` days in the past."""
    row = _event(event_id, offset)
    url = layout.event_batch_file_in(DAY, row["event_ts"].hour, row["event_ts"], [event_id])
    write_parquet_atomic(pa.Table.from_pylist([row], RAW_EVENT_SCHEMA), url)
    old = time.time() - days_old * 86400
    os.utime(url, (old, old))
    return url


def test_files_committed_with_old_modification_times_are_picked_up_exactly_once(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    land(layout, "a", [_event("e1", timedelta(0))])
    assert run_etl(duckdb_session, settings, EtlRequest()).dates == (DAY,)
    assert run_etl(duckdb_session, settings, EtlRequest()).dates == ()

    # A landing host whose clock is a day behind commits a file: its time is a day old.
    behind = _old_file(layout, "e-behind", timedelta(minutes=5), days_old=1)
    register_files(layout, "events", [behind])
    # A file restored from a backup (times preserved), then registered by hand.
    restored = _old_file(layout, "e-restored", timedelta(minutes=7), days_old=30)
    registered = subprocess.run(
        [str(Path(sys.executable).parent / "shopflow"), "lake", "register", restored],
        env={**os.environ, "SHOPFLOW_HOME": str(settings.home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert registered.returncode == 0, registered.stderr
    assert "registered 1 raw events files" in registered.stdout

    run = run_etl(duckdb_session, settings, EtlRequest())
    assert run.dates == (DAY,)  # (the next date has no events: not recomputed)
    assert {"e1", "e-behind", "e-restored"} <= _event_ids(layout, "events_clean")
    assert run_etl(duckdb_session, settings, EtlRequest()).dates == ()  # exactly once


def test_a_raw_file_that_was_never_committed_is_reported_and_not_read(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    land(layout, "a", [_event("e1", timedelta(0))])
    stray = _old_file(layout, "e-stray", timedelta(minutes=3), days_old=0)  # no commit record
    land(layout, "b", [_event("e2", HOUR)])

    run = run_etl(duckdb_session, settings, EtlRequest())
    assert run.uncommitted == [stray]
    assert "not read: 1 raw event files no commit record names" in run.summary()
    assert _event_ids(layout, "events_clean") == {"e1", "e2"}


def test_a_lake_landed_before_the_commit_log_is_adopted_once(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    land(layout, "a", [_event("e1", timedelta(0))])
    shutil.rmtree(Path(layout.state_root()) / "commits" / "events")  # as an older landing left it
    assert run_etl(duckdb_session, settings, EtlRequest()).dates == (DAY,)
    assert _event_ids(layout, "events_clean") == {"e1"}
    assert CommitLog(layout, "events").tail() == 1
    assert run_etl(duckdb_session, settings, EtlRequest()).dates == ()


# ------------------------------------------------------------------------------------------------
# Recomputes remove what no longer exists


def _warehouse_event_ids(settings: Settings, table: str, day: date) -> set[str]:
    with duckdb.connect(str(duckdb_path(settings)), read_only=True) as conn:
        rows = conn.execute(f"SELECT event_id FROM {table} WHERE date = ?", [day]).fetchall()
    return {r[0] for r in rows}


def _raw_recount(layout: LakeLayout, day: date) -> set[str]:
    table = read_dataset(f"{layout.events_root()}/date={day.isoformat()}", columns=["event_id"])
    return set(table["event_id"].to_pylist())


def test_a_deleted_raw_hour_backfilled_is_gone_from_every_curated_table_and_the_warehouse(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    land(layout, "a", [_event("e1", timedelta(0)), _event("e2", timedelta(minutes=5))])
    land(layout, "b", [_event("e3", 2 * HOUR, event_name="wishlist")])
    run_etl(duckdb_session, settings, EtlRequest())
    load_warehouse(settings, dates=[DAY], recomputed=True)
    hour_two = _event("e3", 2 * HOUR)["event_ts"].hour
    assert _warehouse_event_ids(settings, "user_behavior", DAY) == {"e1", "e2", "e3"}

    shutil.rmtree(f"{layout.events_root()}/date={DAY.isoformat()}/hour={hour_two:02d}")
    run = run_etl(duckdb_session, settings, backfill_request(DAY.isoformat(), DAY.isoformat()))
    assert run.dates == (DAY,)
    for table in ("events_clean", "user_behavior"):
        assert _event_ids(layout, table, DAY) == {"e1", "e2"} == _raw_recount(layout, DAY), table
    for table in ("events_clean", "traffic_hourly"):
        hours = {p.hour for p in list_partitions(layout.curated_root(table))}
        assert hour_two not in hours, table
    traffic = read_dataset(layout.curated_partition("traffic_daily", DAY)).to_pylist()
    assert sum(r.get("wishlists", 0) or 0 for r in traffic) == 0

    load_warehouse(settings, dates=list(run.dates), recomputed=True)
    for table in ("events_clean", "user_behavior"):
        assert _warehouse_event_ids(settings, table, DAY) == {"e1", "e2"}, table


def test_a_date_whose_raw_events_are_all_gone_is_emptied_everywhere(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    land(layout, "a", [_event("e1", timedelta(0))])
    land(layout, "b", [_event("e2", timedelta(days=1, hours=1))])  # the next date
    run_etl(duckdb_session, settings, EtlRequest())
    next_day = DAY + timedelta(days=1)
    load_warehouse(settings, dates=[DAY, next_day], recomputed=True)

    shutil.rmtree(f"{layout.events_root()}/date={next_day.isoformat()}")
    run = run_etl(
        duckdb_session, settings, backfill_request(next_day.isoformat(), next_day.isoformat())
    )
    assert run.dates == (next_day,)
    for table in CURATED_TABLES:
        dated = [p for p in list_partitions(layout.curated_root(table)) if p.date == next_day]
        if table in ("orders_enriched", "order_reconciliation"):
            continue  # by order date, from the API's orders: not the events'
        assert dated == [], table
    load_warehouse(settings, dates=[next_day], recomputed=True)
    assert _warehouse_event_ids(settings, "user_behavior", next_day) == set()
    assert _warehouse_event_ids(settings, "user_behavior", DAY) == {"e1"}


# ------------------------------------------------------------------------------------------------
# Sessions do not depend on which dates are recomputed together


def _sessions(layout: LakeLayout) -> tuple[list[tuple[str, str]], int]:
    events = read_dataset(layout.curated_root("events_clean"), columns=["event_id", "session_id"])
    ids = sorted(zip(events["event_id"].to_pylist(), events["session_id"].to_pylist(), strict=True))
    daily = read_dataset(layout.curated_root("user_activity_daily"), columns=["sessions_started"])
    return ids, sum(daily["sessions_started"].to_pylist())


def test_session_ids_and_counts_do_not_depend_on_the_recomputed_range(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    # A derived session active every 20 minutes from DAY 10:00 to DAY+2 02:00 (over 24 h, across
    # two midnights), and a client session id used on DAY and again on DAY+3.
    busy = [_event(f"b{n:03d}", timedelta(minutes=20 * n), user_id="u1") for n in range(0, 121)]
    client = [
        _event("c1", timedelta(hours=1), user_id="u2", session_id="s-reused"),
        _event("c2", timedelta(days=3, hours=1), user_id="u2", session_id="s-reused"),
    ]
    land(layout, "a", [*busy, *client])
    first = run_etl(duckdb_session, settings, EtlRequest())
    assert len(first.dates) == 4
    reference = _sessions(layout)
    last = max(first.dates)
    # Recompute in other ranges and orders: every time the same ids and the same counts.
    for start, end in (
        (DAY + timedelta(days=2), DAY + timedelta(days=2)),
        (DAY + timedelta(days=1), last),
        (last, last),
        (DAY, DAY),
    ):
        run_etl(duckdb_session, settings, backfill_request(start.isoformat(), end.isoformat()))
        assert _sessions(layout) == reference, (start, end)
    ids, sessions = reference
    busy_ids = {sid for eid, sid in ids if eid.startswith("b")}
    # The stated rules: the long session is traced back one date at most (a new id where its
    # start leaves the window), counted once; the client id used again after a whole date without
    # it is a second session.
    assert len(busy_ids) == 2
    assert sessions == 1 + 2


# ------------------------------------------------------------------------------------------------
# Damage to the log and manifests: reported, never silent loss (found by a hostile probe)


def test_a_record_deleted_below_the_end_is_reported_and_later_commits_are_still_read(
    tmp_path: Path,
) -> None:
    layout = LakeLayout(str(tmp_path / "lake"))
    log = CommitLog(layout, "events")
    for n in range(5):
        log.append([f"{layout.events_root()}/date=2026-01-01/hour=00/f{n}.parquet"])
    Path(log.record_url(2)).unlink()
    writer = CommitLog(layout, "events")  # a new process: finds the end past the gap
    assert writer.append([f"{layout.events_root()}/date=2026-01-02/hour=00/g.parquet"]) == 6
    reader = CommitLog(layout, "events")
    assert [r.seq for r in reader.read_after(0)] == [1, 3, 4, 5, 6]
    assert reader.missing == [2]


def test_a_lost_manifest_never_empties_its_date_and_says_how_to_rebuild(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    land(layout, "a", [_event("e1", timedelta(0)), _event("e2", HOUR)])
    run_etl(duckdb_session, settings, EtlRequest())
    manifest = Path(layout.state_root()) / "manifests" / "events" / f"date={DAY.isoformat()}.json"
    manifest.write_text("{}")
    with pytest.raises(LakeError, match=r"is not readable .*shopflow lake register"):
        run_etl(duckdb_session, settings, backfill_request(DAY.isoformat(), DAY.isoformat()))
    manifest.unlink()
    with pytest.raises(ShopflowError, match=r"2 files no commit record names .*lake register"):
        run_etl(duckdb_session, settings, backfill_request(DAY.isoformat(), DAY.isoformat()))
    assert _event_ids(layout, "events_clean") == {"e1", "e2"}  # not emptied


def test_a_whole_lake_load_empties_the_dates_the_lake_no_longer_has(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    land_catalogue_and_orders(layout)
    land(layout, "a", [_event("e1", timedelta(0))])
    land(layout, "b", [_event("e2", timedelta(days=1, hours=1))])
    run_etl(duckdb_session, settings, EtlRequest())
    load_warehouse(settings)
    next_day = DAY + timedelta(days=1)
    shutil.rmtree(f"{layout.events_root()}/date={next_day.isoformat()}")
    run_etl(duckdb_session, settings, backfill_request(next_day.isoformat(), next_day.isoformat()))
    load_warehouse(settings)  # as `shopflow load` with no dates
    assert _warehouse_event_ids(settings, "user_behavior", next_day) == set()
    assert _warehouse_event_ids(settings, "events_clean", next_day) == set()
    assert _warehouse_event_ids(settings, "user_behavior", DAY) == {"e1"}
