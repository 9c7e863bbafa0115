"""`quality_results` in the BigQuery warehouse (the emulator): a clean gate's results, then a
failed gate's, appended; the failed gate loads nothing into BigQuery."""

from __future__ import annotations

from datetime import date

import pytest

from shopflow.lake import LakeLayout
from shopflow.quality import QualityGateError, gated_load
from shopflow.settings import Settings
from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse
from tests.quality import faults

DAY2 = date(2026, 11, 2)


def test_bigquery_records_every_run_and_a_failed_gate_loads_nothing(
    lake_settings: Settings, bq_warehouse: BigQueryWarehouse
) -> None:
    table = f"`{bq_warehouse.dataset_ref}`"
    clean, loaded = gated_load(lake_settings, [DAY2], warehouse=bq_warehouse)
    events = bq_warehouse.query(f"SELECT count(*) AS n FROM {table}.events_clean")
    assert events == [{"n": loaded.tables[0].rows}] and loaded.tables[0].table == "events_clean"

    faults.unknown_product(LakeLayout.from_settings(lake_settings), DAY2, 12)
    with pytest.raises(QualityGateError, match=r"known_product \(events_clean 2026-11-02\): 1 row"):
        gated_load(lake_settings, [DAY2], warehouse=bq_warehouse)

    assert bq_warehouse.query(f"SELECT count(*) AS n FROM {table}.events_clean") == events
    unknown = bq_warehouse.query(
        f"SELECT count(*) AS n FROM {table}.events_clean "
        f"WHERE product_id = '{faults.UNKNOWN_PRODUCT}'"
    )
    assert unknown == [{"n": 0}]
    rows = bq_warehouse.query(
        "SELECT run_ts, `partition`, severity, observed, threshold, passed "
        f"FROM {table}.quality_results WHERE check_name = 'known_product' ORDER BY run_ts"
    )
    assert [(r["partition"], r["severity"], r["passed"]) for r in rows] == [
        (DAY2, "error", True),
        (DAY2, "error", False),
    ]
    assert rows[1]["observed"] == 1.0 and rows[1]["threshold"] == 0.0
    assert rows[0]["run_ts"] == clean.run_ts
    total = bq_warehouse.query(f"SELECT count(*) AS n FROM {table}.quality_results")
    assert total == [{"n": 2 * len(clean.results)}]
