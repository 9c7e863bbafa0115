"""The BigQuery loader against the BigQuery emulator, through the real google-cloud-bigquery client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopflow.lake import LakeLayout, write_bytes_atomic
from shopflow.metrics import load_warehouse
from shopflow.settings import Settings
from shopflow.warehouse import (
    TABLES,
    PartitionKey,
    TableLoad,
    WarehouseError,
    lake_reader,
    load_from_lake,
)
from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse, make_client
from shopflow.warehouse.bq_emulator import BigQueryEmulator, EmulatorError
from tests.warehouse.tiny_lake import DAY1, DAY2, EVENTS, curated_tables, snapshot, write_curated

pytestmark = pytest.mark.integration


def dump(warehouse: BigQueryWarehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every table, row for row."""
    return {
        t: snapshot(warehouse.query(f"SELECT * FROM `{warehouse.dataset_ref}.{t}`")) for t in TABLES
    }


def test_tables_are_partitioned_by_date(bq_warehouse: BigQueryWarehouse) -> None:
    for name, spec in TABLES.items():
        table = bq_warehouse.client.get_table(f"{bq_warehouse.dataset_ref}.{name}")
        assert [f.name for f in table.schema] == list(spec.column_names)
        if spec.partitioned:
            assert table.time_partitioning is not None
            assert table.time_partitioning.field == "date"


def test_load_and_reload_hour_day_and_all_are_identical(
    settings: Settings, tiny_lake: LakeLayout, bq_warehouse: BigQueryWarehouse
) -> None:
    report = load_warehouse(settings, warehouse=bq_warehouse)
    assert {t.table: t.rows for t in report.tables} == {
        n: t.num_rows for n, t in curated_tables().items()
    }
    before = dump(bq_warehouse)
    assert len(before["user_behavior"]) == len(EVENTS)
    assert load_from_lake(bq_warehouse, tiny_lake, "events_clean", [PartitionKey(DAY1, 10)]) == 5
    assert dump(bq_warehouse) == before
    load_warehouse(settings, dates=[DAY2], warehouse=bq_warehouse)
    assert dump(bq_warehouse) == before
    load_warehouse(settings, warehouse=bq_warehouse)
    assert dump(bq_warehouse) == before
    # Staging tables are dropped after each load.
    names = {t.table_id for t in bq_warehouse.client.list_tables(bq_warehouse.dataset_ref)}
    assert not {n for n in names if n.startswith("_stage_")}


def test_a_retried_load_with_the_same_load_id_does_not_duplicate(
    tiny_lake: LakeLayout, bq_warehouse: BigQueryWarehouse
) -> None:
    bq_warehouse.load_id = "airflow-run-2026-11-26T00"
    keys = (PartitionKey(DAY1), PartitionKey(DAY2))
    load = TableLoad("user_behavior", keys, lake_reader(tiny_lake, "user_behavior", keys))
    assert bq_warehouse.load_batch([load]) == [len(EVENTS)]
    assert bq_warehouse.load_batch([load]) == [len(EVENTS)]
    rows = bq_warehouse.query(
        f"SELECT COUNT(*) AS n FROM `{bq_warehouse.dataset_ref}.user_behavior`"
    )
    assert rows == [{"n": len(EVENTS)}]


def test_failed_load_leaves_the_previous_state(
    settings: Settings, tiny_lake: LakeLayout, bq_warehouse: BigQueryWarehouse
) -> None:
    load_warehouse(settings, warehouse=bq_warehouse)
    before = dump(bq_warehouse)
    changed = curated_tables([e for e in EVENTS if e[0] != "e16"])
    write_curated(tiny_lake, {"user_behavior": changed["user_behavior"]})
    corrupt = tiny_lake.curated_partition("order_reconciliation", DAY2) + "/part-00000.parquet"
    write_bytes_atomic(b"PAR1 this is not parquet", corrupt)
    with pytest.raises(
        WarehouseError, match=r"load failed, the warehouse is unchanged: .*(?i:parquet|magic)"
    ):
        load_warehouse(settings, dates=[DAY2], warehouse=bq_warehouse)
    assert dump(bq_warehouse) == before
    names = {t.table_id for t in bq_warehouse.client.list_tables(bq_warehouse.dataset_ref)}
    assert not {n for n in names if n.startswith("_stage_")}


def test_a_failing_statement_rolls_back_the_whole_transaction(
    tiny_lake: LakeLayout, bq_warehouse: BigQueryWarehouse
) -> None:
    keys = (PartitionKey(DAY1), PartitionKey(DAY2))
    good = TableLoad("user_behavior", keys, lake_reader(tiny_lake, "user_behavior", keys))
    bq_warehouse.load_batch([good])
    before = dump(bq_warehouse)
    # The second table's INSERT fails inside the script (its staging table is dropped under it),
    # after the first table's DELETE and INSERT ran.
    original = bq_warehouse._stage

    def stage_then_drop(spec: Any, partitions: Any, rows: Any) -> str:
        name = original(spec, partitions, rows)
        if spec.name == "traffic_daily":
            bq_warehouse.client.delete_table(f"{bq_warehouse.dataset_ref}.{name}")
        return name

    bq_warehouse._stage = stage_then_drop  # type: ignore[method-assign]
    changed = curated_tables([e for e in EVENTS if e[0] != "e16"])
    broken = TableLoad("traffic_daily", keys, lambda: changed["traffic_daily"])
    fewer = TableLoad("user_behavior", keys, lambda: changed["user_behavior"])
    with pytest.raises(WarehouseError, match="failed"):
        bq_warehouse.load_batch([fewer, broken])
    assert dump(bq_warehouse) == before


def test_launcher_reports_a_missing_interpreter(tmp_path: Path) -> None:
    with pytest.raises(EmulatorError, match=r"pip install bqemulator==1\.4\.0"):
        BigQueryEmulator(python=tmp_path / "nope" / "bin" / "python").start()


def test_launcher_starts_and_stops(tmp_path: Path) -> None:
    emulator = BigQueryEmulator(log_path=tmp_path / "emu.log").start()
    try:
        assert emulator.running
        client = make_client(emulator.project, emulator.endpoint)
        assert [dict(r.items()) for r in client.query("SELECT 1 AS one").result()] == [{"one": 1}]
    finally:
        emulator.stop()
    assert not emulator.running
    emulator.stop()  # twice is fine
