"""The gate in front of the load on a simulated, ETL'd lake: a clean date passes and loads; each
injected fault stops the load with the check named, and `quality_results` records it (DuckDB)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from shopflow.lake import LakeLayout
from shopflow.quality import QualityGateError, Severity, gated_load, run_checks
from shopflow.settings import Settings
from shopflow.warehouse import open_warehouse
from tests.quality import faults

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
HOUR = 12  # a full hour of DAY2, with DAY1's same hour as history


def warehouse_rows(settings: Settings, sql: str) -> list[dict[str, Any]]:
    warehouse = open_warehouse(settings, must_exist=True)
    try:
        return warehouse.query(sql)
    finally:
        warehouse.close()


def loaded_events(settings: Settings, day: date) -> int:
    sql = f"SELECT count(*) AS n FROM events_clean WHERE date = DATE '{day}'"
    return int(warehouse_rows(settings, sql)[0]["n"])


def test_a_clean_date_passes_every_error_check_records_them_and_loads(
    lake_settings: Settings,
) -> None:
    checked, loaded = gated_load(lake_settings, [DAY2])
    assert checked.errors == []
    names = {r.check_name for r in checked.results}
    assert names >= {
        "unique_event_id",
        "unique_order_line",
        "unique_product_id",
        "unique_user_id",
        "not_null",
        "accepted_event_name",
        "row_count_match",
        "known_product",
        "known_user",
        "reconciliation",
        "freshness",
        "volume",
    }
    volume = next(r for r in checked.results if r.check_name == "volume")
    assert volume.observed is not None and volume.observed >= 0.2  # judged against DAY1
    # The simulated events are weeks old: freshness warns, and a warning does not stop the load.
    assert [r.check_name for r in checked.warnings] == ["freshness"]
    assert loaded.rows > 0 and loaded_events(lake_settings, DAY2) > 0
    recorded = warehouse_rows(
        lake_settings,
        "SELECT check_name, table_name, partition, severity, observed, threshold, passed, run_ts "
        "FROM quality_results",
    )
    assert len(recorded) == len(checked.results)
    assert {r["run_ts"] for r in recorded} == {checked.run_ts}
    assert all(r["passed"] for r in recorded if r["severity"] == "error")


FAULTS: dict[str, tuple[Callable[[LakeLayout, date, int], object], str, str, float]] = {
    # fault: (inject, check, the failure line's pattern, observed)
    "duplicated event_id": (
        faults.duplicate_event,
        "unique_event_id",
        r"unique_event_id \(events_clean 2026-11-02\): \(event_id\) repeated by 1 row",
        1.0,
    ),
    "unknown product": (
        faults.unknown_product,
        "known_product",
        r"known_product \(events_clean 2026-11-02\): 1 row name 1 product_ids missing from "
        rf"products_history \(e\.g\. {faults.UNKNOWN_PRODUCT}\)",
        1.0,
    ),
    "90% volume drop": (
        faults.volume_drop,
        "volume",
        r"volume \(events_clean 2026-11-02\): 12h has \d+ events, \d{1,2}% of the median [\d.]+ of "
        r"that hour over 1 earlier date\(s\) \(minimum 20%\)",
        -1.0,  # a share: checked below
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_injected_fault_stops_the_load_and_is_recorded(
    fault: str, lake_settings: Settings
) -> None:
    inject, check, pattern, observed = FAULTS[fault]
    first, _ = gated_load(lake_settings, [DAY2])
    before = loaded_events(lake_settings, DAY2)
    inject(LakeLayout.from_settings(lake_settings), DAY2, HOUR)

    with pytest.raises(QualityGateError, match=pattern) as failed:
        gated_load(lake_settings, [DAY2])
    message = str(failed.value)
    assert "\n" not in message and message.endswith("; nothing loaded")
    assert message.startswith("quality gate failed for 2026-11-02: " + check)

    # Nothing loaded: the warehouse still holds the first load's events of the date.
    assert loaded_events(lake_settings, DAY2) == before
    recorded = warehouse_rows(
        lake_settings,
        "SELECT run_ts, partition, severity, observed, threshold, passed FROM quality_results "
        f"WHERE check_name = '{check}' AND table_name = 'events_clean' ORDER BY run_ts",
    )
    assert len(recorded) == 2 and recorded[0]["run_ts"] == first.run_ts  # appended, a history
    assert recorded[0]["passed"] is True
    failure = recorded[1]
    assert failure["passed"] is False and failure["severity"] == "error"
    assert failure["partition"] == DAY2
    if observed >= 0:
        assert failure["observed"] == observed and failure["threshold"] == 0
    else:
        assert 0 < failure["observed"] < failure["threshold"] == 0.2


def test_a_warn_check_is_recorded_and_does_not_stop_the_load(lake_settings: Settings) -> None:
    strict = lake_settings.model_copy(update={"quality_freshness_max_age_seconds": 1.0})
    report = run_checks(strict, [DAY1, DAY2])
    freshness = next(r for r in report.results if r.check_name == "freshness")
    assert freshness.severity is Severity.WARN and not freshness.passed
    assert freshness.partition == DAY2 and freshness.threshold == 1.0
    assert report.errors == []


def test_the_thresholds_come_from_the_settings(lake_settings: Settings) -> None:
    faults.unknown_product(LakeLayout.from_settings(lake_settings), DAY2, HOUR)
    tolerant = lake_settings.model_copy(update={"quality_max_unknown_share": 0.01})
    assert run_checks(tolerant, [DAY2]).errors == []
    faults.volume_drop(LakeLayout.from_settings(lake_settings), DAY2, HOUR)
    lenient = tolerant.model_copy(update={"quality_volume_min_ratio": 0.05})
    assert run_checks(lenient, [DAY2]).errors == []
    assert [r.check_name for r in run_checks(tolerant, [DAY2]).errors] == ["volume"]
