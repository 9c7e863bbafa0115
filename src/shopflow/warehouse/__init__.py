"""The warehouse: curated tables loaded into DuckDB (local) or BigQuery (gcp)."""

from shopflow.warehouse.base import PartitionKey, TableLoad, Warehouse, lake_reader
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.load import (
    AfterLoad,
    LoadReport,
    TableReport,
    append_history,
    duckdb_path,
    load_from_lake,
    load_tables,
    open_warehouse,
    plan_loads,
)
from shopflow.warehouse.schema import (
    HISTORY_TABLES,
    QUALITY_RESULTS,
    SEED_USER_BEHAVIOR_COLUMNS,
    TABLES,
    Grain,
    TableSpec,
)

__all__ = [
    "HISTORY_TABLES",
    "QUALITY_RESULTS",
    "SEED_USER_BEHAVIOR_COLUMNS",
    "TABLES",
    "AfterLoad",
    "Grain",
    "LoadReport",
    "PartitionKey",
    "TableLoad",
    "TableReport",
    "TableSpec",
    "Warehouse",
    "WarehouseError",
    "append_history",
    "duckdb_path",
    "lake_reader",
    "load_from_lake",
    "load_tables",
    "open_warehouse",
    "plan_loads",
]
