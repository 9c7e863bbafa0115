"""The hourly DAG's `quality_gate` step (what its task runs) on each injected fault: it raises
naming the check, records the results, and the load task's step never ran."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from shopflow.lake import LakeLayout
from shopflow.orchestration import steps
from shopflow.settings import Settings
from shopflow.warehouse import duckdb_path, open_warehouse
from tests.quality import faults

DAY2 = date(2026, 11, 2)

FAULTS: dict[str, tuple[Callable[[LakeLayout, date, int], object], str]] = {
    "duplicated event_id": (faults.duplicate_event, "unique_event_id (events_clean 2026-11-02)"),
    "unknown product": (faults.unknown_product, "known_product (events_clean 2026-11-02): 1 row"),
    "90% volume drop": (faults.volume_drop, "volume (events_clean 2026-11-02): 12h has"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_dag_gate_step_stops_each_injected_fault(fault: str, lake_settings: Settings) -> None:
    inject, named = FAULTS[fault]
    inject(LakeLayout.from_settings(lake_settings), DAY2, 12)
    with pytest.raises(steps.QualityGateError, match="quality gate failed for 2026-11-02: ") as err:
        steps.quality_gate(lake_settings, ["2026-11-02"])
    assert named in str(err.value)
    warehouse = open_warehouse(lake_settings, must_exist=True)
    try:
        failed = warehouse.query(
            "SELECT check_name FROM quality_results WHERE NOT passed AND severity = 'error'"
        )
        loaded = warehouse.query("SELECT count(*) AS n FROM events_clean")
    finally:
        warehouse.close()
    assert named.split(" ", 1)[0] in {r["check_name"] for r in failed}
    assert loaded == [{"n": 0}]


def test_the_dag_gate_step_passes_a_clean_date_and_says_what_it_checked(
    lake_settings: Settings,
) -> None:
    result = steps.quality_gate(lake_settings, ["2026-11-02"])
    assert "volume" in result.detail["checked"] and result.rows_in > 0
    assert result.detail["warnings"][0].startswith("freshness (events_clean 2026-11-02)")
    assert duckdb_path(lake_settings).is_file()  # the results were recorded
    assert steps.quality_gate(lake_settings, []).detail == {"checked": []}
