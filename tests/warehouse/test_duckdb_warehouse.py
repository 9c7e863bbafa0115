"""The DuckDB warehouse: loads replace partitions in one transaction; reloads change nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import shopflow.warehouse.load as warehouse_load
from shopflow.lake import LakeLayout, replace_partition, write_bytes_atomic
from shopflow.metrics import load_warehouse
from shopflow.settings import Settings
from shopflow.warehouse import (
    SEED_USER_BEHAVIOR_COLUMNS,
    TABLES,
    PartitionKey,
    Warehouse,
    WarehouseError,
    duckdb_path,
    load_from_lake,
    open_warehouse,
)
from shopflow.warehouse.base import lake_reader
from shopflow.warehouse.duckdb_warehouse import DuckDBWarehouse
from tests.warehouse.tiny_lake import (
    DAY1,
    DAY2,
    EVENTS,
    curated_tables,
    snapshot,
    write_curated,
)


def dump(warehouse: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    """Every table, row for row."""
    dataset = getattr(warehouse, "dataset_ref", None)
    prefix = f"`{dataset}`." if dataset else ""
    return {t: snapshot(warehouse.query(f"SELECT * FROM {prefix}{t}")) for t in TABLES}


def test_load_puts_every_curated_row_in_the_warehouse(
    settings: Settings, tiny_lake: LakeLayout
) -> None:
    report = load_warehouse(settings)
    expected = curated_tables()
    assert {t.table: t.rows for t in report.tables} == {n: t.num_rows for n, t in expected.items()}
    assert report.skipped == {}
    assert duckdb_path(settings) == settings.home / "warehouse.duckdb"
    warehouse = open_warehouse(settings, must_exist=True)
    try:
        tables = dump(warehouse)
        for name, table in expected.items():
            spec = TABLES[name]
            want = snapshot(
                [dict(zip(spec.column_names, r.values(), strict=True)) for r in table.to_pylist()]
            )
            assert tables[name] == want, name
        columns = [r["column_name"] for r in warehouse.query("DESCRIBE user_behavior")]
        assert (
            tuple(columns[:9])
            == SEED_USER_BEHAVIOR_COLUMNS
            == (
                "date",
                "event_id",
                "event_name",
                "price",
                "product_id",
                "product_name",
                "user_id",
                "user_name",
                "order_id",
            )
        )
    finally:
        warehouse.close()


def test_reloading_an_hour_or_a_day_leaves_every_table_identical(
    settings: Settings, tiny_lake: LakeLayout
) -> None:
    load_warehouse(settings)
    warehouse = open_warehouse(settings)
    try:
        before = dump(warehouse)
        assert all(before.values())
        assert load_from_lake(warehouse, tiny_lake, "events_clean", [PartitionKey(DAY1, 10)]) == 5
        assert load_from_lake(warehouse, tiny_lake, "traffic_hourly", [PartitionKey(DAY2, 12)]) == 1
        assert dump(warehouse) == before
        load_warehouse(settings, dates=[DAY1], warehouse=warehouse)
        assert dump(warehouse) == before
        load_warehouse(settings, warehouse=warehouse)
        load_warehouse(settings, warehouse=warehouse)
        assert dump(warehouse) == before
    finally:
        warehouse.close()


def test_a_reload_replaces_only_its_partitions(settings: Settings, tiny_lake: LakeLayout) -> None:
    load_warehouse(settings)
    # Day 2 recomputed by the ETL without e16: its hour 19 partitions are now empty.
    for name in ("events_clean", "traffic_hourly"):
        empty = TABLES[name].arrow_schema().empty_table()
        replace_partition(empty, tiny_lake.curated_partition(name, DAY2, 19))
    warehouse = open_warehouse(settings)
    try:
        load_from_lake(warehouse, tiny_lake, "events_clean", [PartitionKey(DAY2, 19)])
        ids = [
            r["event_id"] for r in warehouse.query("SELECT event_id FROM events_clean ORDER BY 1")
        ]
        assert ids == [*(f"e{i:02d}" for i in range(1, 16)), "e17"]
        # A reload of the whole day takes traffic's empty hour 19 along.
        load_warehouse(settings, tables=["traffic_hourly"], dates=[DAY2], warehouse=warehouse)
        hours = warehouse.query("SELECT hour FROM traffic_hourly WHERE date = DATE '2026-11-26'")
        assert sorted(r["hour"] for r in hours) == [9, 12, 13, 14]  # 14: e17, the return
    finally:
        warehouse.close()


def test_failed_load_leaves_the_previous_state(settings: Settings, tiny_lake: LakeLayout) -> None:
    load_warehouse(settings)
    warehouse = open_warehouse(settings)
    before = dump(warehouse)
    warehouse.close()
    # New day-2 data (e16 gone) for user_behavior, which is loaded before order_reconciliation in
    # the same transaction, then a corrupt order_reconciliation file: the whole load rolls back.
    changed = curated_tables([e for e in EVENTS if e[0] != "e16"])
    write_curated(tiny_lake, {"user_behavior": changed["user_behavior"]})
    corrupt = tiny_lake.curated_partition("order_reconciliation", DAY2) + "/part-00000.parquet"
    write_bytes_atomic(b"PAR1 this is not parquet", corrupt)
    with pytest.raises(
        WarehouseError, match=r"load failed, the warehouse is unchanged: .*(?i:parquet|magic)"
    ):
        load_warehouse(settings, dates=[DAY2])
    warehouse = open_warehouse(settings)
    try:
        assert dump(warehouse) == before
    finally:
        warehouse.close()
    # The same load with the file repaired does change the warehouse.
    write_curated(tiny_lake, {"order_reconciliation": changed["order_reconciliation"]})
    load_warehouse(settings, dates=[DAY2])
    warehouse = open_warehouse(settings)
    try:
        after = dump(warehouse)
        assert len(after["user_behavior"]) == len(before["user_behavior"]) - 1
    finally:
        warehouse.close()


def test_a_load_writes_a_copy_so_readers_see_the_old_file_until_it_is_done(
    settings: Settings, tiny_lake: LakeLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_warehouse(settings)
    path = duckdb_path(settings)
    stale = path.with_name(f".{path.name}.loading")
    stale.write_bytes(b"left by a load killed with -9")
    original_inode = path.stat().st_ino
    seen_during_load: list[int] = []

    def read_live_warehouse() -> None:
        reader = open_warehouse(settings, must_exist=True)  # DuckDB's lock would refuse this
        try:
            rows = reader.query("SELECT count(*) AS n FROM user_behavior")
            seen_during_load.append(int(rows[0]["n"]))
        finally:
            reader.close()

    def looking_lake_reader(layout: LakeLayout, table: str, keys: Any) -> Callable[[], Any]:
        read = lake_reader(layout, table, keys)

        def look_then_read() -> Any:
            read_live_warehouse()
            return read()

        return look_then_read

    monkeypatch.setattr(warehouse_load, "lake_reader", looking_lake_reader)
    load_warehouse(settings, dates=[DAY2])
    assert seen_during_load and set(seen_during_load) == {len(EVENTS)}
    assert path.stat().st_ino != original_inode  # replaced by one rename
    assert not list(path.parent.glob(f".{path.name}.loading*"))


def test_a_load_that_fails_at_commit_leaves_the_file_intact_and_no_copy(
    settings: Settings, tiny_lake: LakeLayout
) -> None:
    load_warehouse(settings)
    path = duckdb_path(settings)
    before = path.read_bytes()
    write_bytes_atomic(
        b"PAR1 not parquet", tiny_lake.curated_partition("traffic_hourly", DAY2) + "/part-0.parquet"
    )
    with pytest.raises(WarehouseError, match="the warehouse is unchanged"):
        load_warehouse(settings, dates=[DAY2])
    assert path.read_bytes() == before
    left = [p.name for p in path.parent.iterdir() if "warehouse" in p.name]
    assert sorted(left) == [f".{path.name}.load-lock", path.name]  # the lock file stays


def test_whole_tables_are_replaced_whole(settings: Settings) -> None:
    warehouse = open_warehouse(settings)
    try:
        products = curated_tables()["products_clean"]
        assert warehouse.load_partitions("products_clean", None, products) == 3
        assert warehouse.load_partitions("products_clean", None, products.slice(0, 1)) == 1
        assert warehouse.query("SELECT product_id FROM products_clean") == [{"product_id": "p1"}]
        with pytest.raises(WarehouseError, match="not partitioned"):
            warehouse.load_partitions("products_clean", [PartitionKey(DAY1)], products)
    finally:
        warehouse.close()


def test_rows_outside_the_replaced_partitions_are_refused(settings: Settings) -> None:
    warehouse = open_warehouse(settings)
    try:
        events = curated_tables()["events_clean"]
        with pytest.raises(WarehouseError, match="outside the load"):
            warehouse.load_partitions("events_clean", [PartitionKey(DAY1, 10)], events)
        with pytest.raises(WarehouseError, match="daily"):
            warehouse.load_partitions("user_behavior", [PartitionKey(DAY1, 10)], events)
        with pytest.raises(WarehouseError, match="lacks column"):
            warehouse.load_partitions(
                "user_behavior", [PartitionKey(DAY1)], pa.table({"date": [DAY1]})
            )
        assert warehouse.query("SELECT count(*) AS n FROM events_clean") == [{"n": 0}]
        reader = pa.RecordBatchReader.from_batches(events.schema, events.to_batches())
        assert (
            warehouse.load_partitions(
                "events_clean", [PartitionKey(DAY1), PartitionKey(DAY2)], reader
            )
            == 17
        )
    finally:
        warehouse.close()


def test_dates_missing_from_the_lake_are_skipped_not_deleted(
    settings: Settings, tiny_lake: LakeLayout
) -> None:
    load_warehouse(settings)
    report = load_warehouse(settings, tables=["user_behavior"], dates=[date(2026, 1, 1), DAY2])
    assert [(t.table, t.partitions) for t in report.tables] == [
        ("user_behavior", (PartitionKey(DAY2),))
    ]
    assert "2026-01-01" in report.skipped["user_behavior"]
    with pytest.raises(WarehouseError, match="unknown warehouse table"):
        load_warehouse(settings, tables=["nope"])


def test_missing_lake_and_missing_warehouse_are_one_line_errors(settings: Settings) -> None:
    with pytest.raises(WarehouseError, match=r"no curated data under .*shopflow etl"):
        load_warehouse(settings)
    with pytest.raises(WarehouseError, match=r"no warehouse at .*shopflow load"):
        open_warehouse(settings, must_exist=True)
    assert not Path(duckdb_path(settings)).exists()


def _holding(code: str) -> subprocess.Popen[str]:
    """A child process that runs `code`, says "ready", and then holds on until killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", f"{code}\nprint('ready', flush=True)\nimport time; time.sleep(600)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_a_load_is_refused_while_another_process_writes_or_loads_the_file(
    settings: Settings, tiny_lake: LakeLayout
) -> None:
    load_warehouse(settings)
    path = duckdb_path(settings)
    before = path.read_bytes()
    writer = _holding(f"import duckdb; con = duckdb.connect({str(path)!r})")
    try:
        with pytest.raises(WarehouseError, match="open for writing by another process"):
            load_warehouse(settings, dates=[DAY2])
    finally:
        writer.kill()
        writer.wait()
    # Another home (or lake) loading the same file, through a symlink: one load at a time.
    lock = path.with_name(f".{path.name}.load-lock")
    loader = _holding(
        "import fcntl; h = open(" + repr(str(lock)) + ", 'a+'); "
        "fcntl.flock(h, fcntl.LOCK_EX); h.write('pid 1234'); h.flush()"
    )
    try:
        with pytest.raises(WarehouseError, match=r"another load is writing .* \(pid 1234\)"):
            load_warehouse(settings, dates=[DAY2])
    finally:
        loader.kill()
        loader.wait()
    assert path.read_bytes() == before
    load_warehouse(settings, dates=[DAY2])  # both gone: it loads


def test_a_warehouse_with_float_money_is_brought_to_decimal(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:  # a warehouse made when money was DOUBLE
        old.execute("CREATE TABLE orders_enriched (order_id VARCHAR, line_amount_inr DOUBLE)")
        old.execute("INSERT INTO orders_enriched VALUES ('o1', 0.1), ('o2', 0.2)")
    warehouse = DuckDBWarehouse(path)
    try:
        rows = warehouse.query(
            "SELECT typeof(line_amount_inr) AS kind, SUM(line_amount_inr) AS total"
            " FROM orders_enriched GROUP BY 1"
        )
    finally:
        warehouse.close()
    assert [(r["kind"], str(r["total"])) for r in rows] == [("DECIMAL(38,9)", "0.300000000")]
