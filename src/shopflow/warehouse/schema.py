"""The warehouse tables: names, columns and types, and how each is partitioned.

One description serves both warehouses: DuckDB DDL, BigQuery schema fields and the Arrow schema a
load casts its input to. Columns follow the curated tables of `shopflow.transform` (names and
order); `user_behavior` starts with the seed's nine unified-table columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.warehouse.errors import WarehouseError


class Grain(StrEnum):
    """How a table is partitioned in the lake and replaced in the warehouse."""

    HOURLY = "hourly"  # curated/<t>/date=/hour=/ ; replaced per (date, hour) or per date
    DAILY = "daily"  # curated/<t>/date=/ ; replaced per date
    WHOLE = "whole"  # one snapshot; replaced whole


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
        """The Arrow schema of the curated table in the lake: as the warehouse's, but money is a
        float there (the transforms' arithmetic), made exact by `conform` at the load."""
        return pa.schema(
            [
                (name, pa.float64() if kind is ColumnType.NUMERIC else _ARROW_TYPES[kind])
                for name, kind in self.columns
            ]
        )

    def duckdb_ddl(self) -> str:
        """`CREATE TABLE IF NOT EXISTS` for DuckDB."""
        cols = ", ".join(f"{name} {_DUCKDB_TYPES[kind]}" for name, kind in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})"


# Short names keep the column lists below readable (N: INT64, M: money).
S, N, F, M, D, T = (
    ColumnType.STRING,
    ColumnType.INT64,
    ColumnType.FLOAT64,
    ColumnType.NUMERIC,
    ColumnType.DATE,
    ColumnType.TIMESTAMP,
)

_TRAFFIC_MEASURES: Final = (
    ("events", N),
    ("views", N),
    ("wishlists", N),
    ("orders", N),
    ("returns", N),
    ("unique_visitors", N),
    ("sessions", N),
    ("view_to_wishlist_rate", F),
    ("wishlist_to_order_rate", F),
    ("view_to_order_rate", F),
    ("return_rate", F),
    ("events_per_session", F),
)

_SPECS: Final = (
    TableSpec(
        "events_clean",
        Grain.HOURLY,
        (
            ("event_id", S),
            ("event_name", S),
            ("product_id", S),
            ("user_id", S),
            ("order_id", S),
            ("price", M),
            ("event_ts", T),
            ("date", D),
            ("hour", N),
            ("session_id", S),
            ("session_source", S),
            ("ingest_ts", T),
        ),
    ),
    TableSpec("traffic_hourly", Grain.HOURLY, (("date", D), ("hour", N), *_TRAFFIC_MEASURES)),
    TableSpec("traffic_daily", Grain.DAILY, (("date", D), *_TRAFFIC_MEASURES)),
    TableSpec(
        "orders_enriched",
        Grain.DAILY,
        (
            ("order_id", S),
            ("product_id", S),
            ("user_id", S),
            ("date", D),
            ("order_ts", T),
            ("quantity", N),
            ("unit_price_inr", M),
            ("status", S),
            ("updated_at", T),
            ("product_name", S),
            ("category", S),
            ("line_amount_inr", M),
            ("order_total_inr", M),
        ),
    ),
    TableSpec(
        "products_clean",
        Grain.WHOLE,
        (
            ("product_id", S),
            ("product_name", S),
            ("brand", S),
            ("category", S),
            ("category_l1", S),
            ("category_l2", S),
            ("category_path", S),
            ("price", M),
            ("retail_price_inr", M),
            ("price_band", S),
            ("date", D),
            ("updated_at", T),
        ),
    ),
    TableSpec(
        "category_summary",
        Grain.WHOLE,
        (
            ("category", S),
            ("products", N),
            ("min_price_inr", M),
            ("avg_price_inr", M),
            ("max_price_inr", M),
            ("products_under_500_inr", N),
            ("products_500_to_1999_inr", N),
            ("products_2000_to_9999_inr", N),
            ("products_10000_plus_inr", N),
            ("views", N),
            ("wishlists", N),
            ("returns", N),
            ("orders", N),
            ("units_sold", N),
            ("revenue_inr", M),
        ),
    ),
    TableSpec(
        "users_enriched",
        Grain.WHOLE,
        (
            ("user_id", S),
            ("user_name", S),
            ("email", S),
            ("city", S),
            ("date", D),
            ("updated_at", T),
            ("events", N),
            ("views", N),
            ("wishlists", N),
            ("order_events", N),
            ("returns", N),
            ("sessions", N),
            ("orders", N),
            ("ordered_amount_inr", M),
            ("first_seen_ts", T),
            ("last_seen_ts", T),
        ),
    ),
    TableSpec(
        "user_behavior",
        Grain.DAILY,
        (
            ("date", D),
            ("event_id", S),
            ("event_name", S),
            ("price", M),
            ("product_id", S),
            ("product_name", S),
            ("user_id", S),
            ("user_name", S),
            ("order_id", S),
            ("event_ts", T),
            ("session_id", S),
            ("category", S),
        ),
    ),
    TableSpec(
        "order_reconciliation",
        Grain.DAILY,
        (
            ("date", D),
            ("api_orders", N),
            ("event_orders", N),
            ("matched_orders", N),
            ("orders_without_event", N),
            ("events_without_order", N),
            ("amount_mismatches", N),
            ("returns_without_order", N),
        ),
    ),
)

#: Every warehouse table by name, in load order.
TABLES: Final[dict[str, TableSpec]] = {spec.name: spec for spec in _SPECS}

#: The data-quality results: one row per check, table and date per run, appended (a history),
#: never loaded from the lake. `partition` is the checked date (null for a snapshot table).
QUALITY_RESULTS: Final = TableSpec(
    "quality_results",
    Grain.WHOLE,
    (
        ("check_name", S),
        ("table_name", S),
        ("partition", D),
        ("severity", S),
        ("observed", F),
        ("threshold", F),
        ("passed", ColumnType.BOOL),
        ("run_ts", T),
        ("detail", S),
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
