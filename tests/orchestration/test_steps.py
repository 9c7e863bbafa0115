"""The scheduled steps without Airflow: intervals, the quality gate, freshness, and hourly runs
as backfill equal to `shopflow backfill` over the same range."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bench._faults.common import warehouse_tables
from bench.etl_engines import RawZone, write_raw_zone

from shopflow.lake import LakeLayout, list_data_files
from shopflow.metrics import load_warehouse
from shopflow.orchestration import steps
from shopflow.settings import Settings
from shopflow.transform.engine import open_etl_session
from shopflow.transform.jobs import backfill_request, run_etl
from shopflow.warehouse import open_warehouse

DAY1 = date(2026, 11, 1)


def test_interval_dates_cover_the_hours_of_the_interval() -> None:
    ten = datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert steps.interval_dates(ten, ten + timedelta(hours=1)) == (DAY1,)
    assert steps.interval_dates(ten, ten + timedelta(hours=14)) == (DAY1,)
    assert steps.interval_dates(ten, ten + timedelta(hours=15)) == (DAY1, date(2026, 11, 2))


@pytest.fixture(scope="module")
def raw_zone(tmp_path_factory: pytest.TempPathFactory) -> RawZone:
    lake = tmp_path_factory.mktemp("steps-raw") / "lake"
    return write_raw_zone(lake, 3000, seed=13, days=2, initial_users=150)


def home_with(zone: RawZone, settings: Settings, name: str) -> Settings:
    home = settings.home.parent / name
    shutil.copytree(zone.lake, home / "lake")
    return settings.model_copy(update={"home": home})


@pytest.mark.e2e
def test_hourly_backfill_runs_equal_shopflow_backfill_over_the_range(
    raw_zone: RawZone, settings: Settings
) -> None:
    by_hours = home_with(raw_zone, settings, "by-hours")
    start = datetime(2026, 11, 1, 22, tzinfo=UTC)
    for n in range(4):  # 22:00 to 02:00: two dates, as four backfill runs of the hourly DAG
        hour = start + timedelta(hours=n)
        etl = steps.run_interval_etl(
            by_hours, hour, hour + timedelta(hours=1), catch_up_new_data=False
        )
        steps.quality_gate(by_hours, etl.dates)
        steps.load_dates(by_hours, etl.dates)
    whole = home_with(raw_zone, settings, "whole")
    run_etl(open_etl_session(whole), whole, backfill_request("2026-11-01", "2026-11-02"))
    load_warehouse(whole)
    hourly, reference = warehouse_tables(by_hours.home), warehouse_tables(whole.home)
    assert hourly.keys() == reference.keys()
    for name, table in reference.items():
        assert hourly[name].equals(table), name


@pytest.mark.e2e
def test_the_quality_gate_stops_a_duplicated_event_and_passes_a_clean_date(
    raw_zone: RawZone, settings: Settings
) -> None:
    home = home_with(raw_zone, settings, "gate")
    ten = datetime(2026, 11, 1, 10, tzinfo=UTC)
    etl = steps.run_interval_etl(home, ten, ten + timedelta(hours=1), catch_up_new_data=False)
    assert etl.dates == ("2026-11-01",)
    assert steps.quality_gate(home, etl.dates).rows_in > 0
    layout = LakeLayout.from_settings(home)
    victim = list_data_files(layout.curated_partition("user_behavior", DAY1))[0].url
    table = pq.read_table(victim)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), victim)  # written past dedup
    with pytest.raises(
        steps.QualityGateError,
        match=r"unique_event_id \(user_behavior 2026-11-01\): \(event_id\) repeated by 1 row",
    ):
        steps.quality_gate(home, etl.dates)
    # The results were recorded; nothing was loaded.
    warehouse = open_warehouse(home, must_exist=True)
    try:
        assert warehouse.query("SELECT count(*) AS n FROM user_behavior") == [{"n": 0}]
        failed = warehouse.query("SELECT check_name FROM quality_results WHERE NOT passed")
    finally:
        warehouse.close()
    assert {"unique_event_id", "row_count_match"} <= {r["check_name"] for r in failed}


def test_freshness_and_landing_progress_come_from_the_newest_landed_batch(
    raw_zone: RawZone, settings: Settings
) -> None:
    home = home_with(raw_zone, settings, "fresh")
    with pytest.raises(steps.InputsNotReadyError, match="nothing has landed yet"):
        steps.events_freshness(settings)
    through = steps.landed_through(home)
    assert through is not None and through.date() >= date(2026, 11, 2)
    assert steps.check_inputs_landed(home, datetime(2026, 11, 1, 11, tzinfo=UTC))
    with pytest.raises(steps.InputsNotReadyError, match="not yet"):
        steps.check_inputs_landed(home, through + timedelta(hours=1))
    assert (
        steps.events_freshness(home, now=through + timedelta(minutes=1)).detail["age_seconds"] == 60
    )
    with pytest.raises(
        steps.InputsNotReadyError, match="events are stale: nothing landed for 3,600 s"
    ):
        steps.events_freshness(home, now=through + timedelta(hours=1))


@pytest.mark.integration
def test_a_kafka_backlog_over_the_threshold_is_reported(
    raw_zone: RawZone, kafka_settings: Settings
) -> None:
    from shopflow.sources.bus.factory import ensure_event_topic, make_publisher

    home = home_with(raw_zone, kafka_settings, "backlog")
    ensure_event_topic(home)
    publisher = make_publisher(home)
    try:
        publisher.publish([b'{"waiting": %d}' % n for n in range(250)])
    finally:
        publisher.close()
    through = steps.landed_through(home)
    assert through is not None
    fresh = through + timedelta(minutes=1)
    # The local broker (Tansu) advances its offsets per record batch, not per record, so the lag
    # it reports is a count of batches; a Kafka cluster reports the 250 messages themselves.
    backlog = steps.events_freshness(home, now=fresh).detail["backlog"]
    assert 1 <= backlog <= 250
    strict = home.model_copy(update={"events_max_backlog": backlog - 1})
    with pytest.raises(steps.InputsNotReadyError, match=f"{backlog:,} wait on the bus"):
        steps.events_freshness(strict, now=fresh)
