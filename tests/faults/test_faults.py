"""The fault suite at its small size: each scenario's guarantee, against the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.etl_engines import RawZone, write_raw_zone
from bench.faults import (
    SIZES,
    Outcome,
    scenario_concurrent_runs,
    scenario_corrupt_raw_files,
    scenario_disk_full,
    scenario_kill_etl_and_load,
    scenario_kill_landing,
    scenario_malformed_stream,
    scenario_orders_api_faults,
    scenario_services_go_away,
    scenario_unreachable_services,
)

pytestmark = pytest.mark.e2e

SMALL = SIZES["small"]


@pytest.fixture(scope="module")
def raw_zone(tmp_path_factory: pytest.TempPathFactory) -> RawZone:
    lake = tmp_path_factory.mktemp("faults-raw") / "lake"
    return write_raw_zone(lake, SMALL["events"], seed=7, days=2, initial_users=300)


def assert_passed(outcome: Outcome) -> None:
    assert outcome.injections > 0
    assert outcome.passed, outcome.problems


def test_kill_9_of_etl_and_load_loses_and_doubles_nothing(
    raw_zone: RawZone, tmp_path: Path
) -> None:
    outcome = scenario_kill_etl_and_load(raw_zone, tmp_path, SMALL["kills"], seed=7)
    assert_passed(outcome)
    assert outcome.events_in == outcome.in_warehouse > 0


def test_corrupt_raw_files_are_quarantined_and_the_rest_loads(
    raw_zone: RawZone, tmp_path: Path
) -> None:
    outcome = scenario_corrupt_raw_files(raw_zone, tmp_path, SMALL["rounds"], seed=7)
    assert_passed(outcome)
    assert outcome.dead_lettered == outcome.injections
    assert outcome.events_in == outcome.in_warehouse > 0


def test_a_second_writer_is_refused_while_an_etl_runs(raw_zone: RawZone, tmp_path: Path) -> None:
    outcome = scenario_concurrent_runs(raw_zone, tmp_path, SMALL["attempts"])
    assert_passed(outcome)
    assert outcome.errors_seen, "the refused runs showed no error"


def test_unreachable_services_are_one_line_each_and_write_nothing(tmp_path: Path) -> None:
    outcome = scenario_unreachable_services(tmp_path)
    assert_passed(outcome)


def test_malformed_messages_all_reach_the_dead_letters_and_the_rest_lands(tmp_path: Path) -> None:
    outcome = scenario_malformed_stream(
        tmp_path, SMALL["stream_events"] // 10, SMALL["malformed"], seed=7
    )
    assert_passed(outcome)
    assert outcome.dead_lettered >= SMALL["malformed"]


@pytest.mark.parametrize(("bus", "events"), [("kafka", SMALL["stream_events"]), ("pubsub", 8000)])
def test_kill_9_of_the_landing_consumer_mid_stream(tmp_path: Path, bus: str, events: int) -> None:
    outcome = scenario_kill_landing(tmp_path, events, SMALL["landing_kills"], 7, bus)
    assert_passed(outcome)
    assert outcome.injections == SMALL["landing_kills"]


def test_the_shop_db_and_the_bus_cut_off_mid_run(tmp_path: Path) -> None:
    outcome = scenario_services_go_away(tmp_path, SMALL["cuts"], seed=7)
    assert_passed(outcome)
    assert len(outcome.errors_seen) >= 1


def test_orders_api_faults_and_a_restart_mid_pull(raw_zone: RawZone, tmp_path: Path) -> None:
    outcome = scenario_orders_api_faults(raw_zone, tmp_path, SMALL["pulls"], seed=7)
    assert_passed(outcome)
    assert outcome.events_in == outcome.in_warehouse > 0


def test_a_full_disk_under_the_etl_and_the_load_is_one_line_and_resumes_cleanly(
    raw_zone: RawZone, tmp_path: Path
) -> None:
    outcome = scenario_disk_full(raw_zone, tmp_path, SMALL["attempts"])
    assert_passed(outcome)
    assert outcome.errors_seen, "the full disk showed the user no error"
