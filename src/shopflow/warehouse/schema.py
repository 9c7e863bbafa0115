"""The warehouse tables: names, columns and types, and how each is partitioned.

Derived from the curated tables' declarations (`shopflow.schemas`, the one place a table's
columns are declared): each warehouse table is its curated table's warehouse columns, in order,
in warehouse types. One description serves both warehouses: DuckDB DDL, BigQuery schema fields
and the Arrow schema a load casts its input to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.schemas import CURATED, Kind, curated
from shopflow.schemas import Grain as Grain  # re-exported: the warehouse speaks of grains too
from shopflow.warehouse.errors import WarehouseError


class ColumnType(StrEnum):
    """The few logical types the warehouse uses, named as in BigQuery."""

    STRING = "STRING"
    INT64 = "INT64"
    FLOAT64 = "FLOAT64"
    NUMERIC = "NUMERIC"  # money: an exact decimal, 38 digits of which 9 after the point
    DATE = "DATE"
    TIMESTAMP = "TIMESTAMP"
    BOOL = "BOOL"


#: The Arrow type of money in the warehouse: BigQuery's NUMERIC, DuckDB's DECIMAL(38, 9).
MONEY_TYPE: Final = pa.decimal128(38, 9)
#: Decimal places money is rounded to when it comes from a float column of the lake (the paisa).
MONEY_PLACES: Final = 2

_DUCKDB_TYPES: Final = {
    ColumnType.STRING: "VARCHAR",
    ColumnType.INT64: "BIGINT",
    ColumnType.FLOAT64: "DOUBLE",
    ColumnType.NUMERIC: "DECIMAL(38, 9)",  # BigQuery's NUMERIC exactly
    ColumnType.DATE: "DATE",
    ColumnType.TIMESTAMP: "TIMESTAMPTZ",
    ColumnType.BOOL: "BOOLEAN",
}


def duckdb_type(kind: ColumnType) -> str:
    """DuckDB's name of a warehouse column type."""
    return _DUCKDB_TYPES[kind]


_ARROW_TYPES: Final[dict[ColumnType, pa.DataType]] = {
    ColumnType.STRING: pa.string(),
    ColumnType.INT64: pa.int64(),
    ColumnType.FLOAT64: pa.float64(),
    ColumnType.NUMERIC: MONEY_TYPE,
    ColumnType.DATE: pa.date32(),
    ColumnType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    ColumnType.BOOL: pa.bool_(),
}


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One warehouse table."""

    name: str
    grain: Grain
    columns: tuple[tuple[str, ColumnType], ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in order."""
        return tuple(name for name, _ in self.columns)

    @property
    def partitioned(self) -> bool:
        """Whether loads replace partitions (by `date`, and `hour` for hourly tables)."""
        return self.grain is not Grain.WHOLE

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema a load casts its input to."""
        return pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in self.columns])

    def lake_arrow_schema(self) -> pa.Schema:
        """The Arrow schema of its curated table in the lake, these columns only (money is a float
        there, made exact by `conform` at the load)."""
        lake = curated(self.name).lake_schema()
        return pa.schema([lake.field(name) for name in self.column_names])

    def duckdb_ddl(self) -> str:
        """`CREATE TABLE IF NOT EXISTS` for DuckDB."""
        cols = ", ".join(f"{name} {_DUCKDB_TYPES[kind]}" for name, kind in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})"


#: The warehouse type of each declared kind (`hour` is INT64 here, money exact).
_WAREHOUSE_TYPES: Final = {
    Kind.STRING: ColumnType.STRING,
    Kind.INT32: ColumnType.INT64,
    Kind.INT64: ColumnType.INT64,
    Kind.FLOAT64: ColumnType.FLOAT64,
    Kind.MONEY: ColumnType.NUMERIC,
    Kind.DATE: ColumnType.DATE,
    Kind.TIMESTAMP: ColumnType.TIMESTAMP,
}


def _from_declaration(name: str) -> TableSpec:
    table = curated(name)
    columns = tuple((c.name, _WAREHOUSE_TYPES[c.kind]) for c in table.columns if c.warehouse)
    return TableSpec(table.name, table.grain, columns)


#: Every warehouse table by name, in load order.
TABLES: Final[dict[str, TableSpec]] = {
    name: _from_declaration(name) for name, table in CURATED.items() if table.warehouse
}

#: The data-quality results: one row per check, table and date per run, appended (a history),
#: never loaded from the lake. `partition` is the checked date (null for a snapshot table).
QUALITY_RESULTS: Final = TableSpec(
    "quality_results",
    Grain.WHOLE,
    (
        ("check_name", ColumnType.STRING),
        ("table_name", ColumnType.STRING),
        ("partition", ColumnType.DATE),
        ("severity", ColumnType.STRING),
        ("observed", ColumnType.FLOAT64),
        ("threshold", ColumnType.FLOAT64),
        ("passed", ColumnType.BOOL),
        ("run_ts", ColumnType.TIMESTAMP),
        ("detail", ColumnType.STRING),
    ),
)

#: Tables the warehouse creates besides `TABLES`: histories that are appended to, not loaded.
HISTORY_TABLES: Final[dict[str, TableSpec]] = {QUALITY_RESULTS.name: QUALITY_RESULTS}

#: The seed's unified-table columns, which `user_behavior` keeps first and under these names.
SEED_USER_BEHAVIOR_COLUMNS: Final = TABLES["user_behavior"].column_names[:9]


def table_spec(name: str) -> TableSpec:
    """The spec of a warehouse table; an unknown name is a one-line error."""
    try:
        return TABLES[name]
    except KeyError:
        raise WarehouseError(
            f"unknown warehouse table {name!r}; known: {', '.join(TABLES)}"
        ) from None


def history_spec(name: str) -> TableSpec:
    """The spec of a history table (appended to, never loaded); an unknown name is an error."""
    try:
        return HISTORY_TABLES[name]
    except KeyError:
        raise WarehouseError(
            f"{name!r} is not a history table; known: {', '.join(HISTORY_TABLES)}"
        ) from None


def conform(spec: TableSpec, table: pa.Table) -> pa.Table:
    """`table` with exactly the spec's columns, in order, cast to the warehouse types.

    Extra columns are dropped; a missing one is an error (the curated table broke its contract).
    """
    missing = [name for name in spec.column_names if name not in table.column_names]
    if missing:
        raise WarehouseError(f"{spec.name}: input lacks column(s) {', '.join(missing)}")
    schema = spec.arrow_schema()
    columns = [to_warehouse_type(table.column(field.name), field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def to_warehouse_type(column: pa.ChunkedArray | pa.Array, kind: pa.DataType) -> pa.ChunkedArray:
    """`column` cast to the warehouse type `kind`; a float cast to money is rounded to the paisa
    (half to even) first and converted through its shortest decimal text, so 0.1 is 0.1 exactly
    (a direct cast would keep the binary float's error: 12345678.12 as 12345678.119999999)."""
    chunked = column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])
    if pa.types.is_decimal(kind) and pa.types.is_floating(chunked.type):
        text = pc.round(chunked, MONEY_PLACES).cast(pa.string())
        return text.cast(kind)
    return chunked.cast(kind)
