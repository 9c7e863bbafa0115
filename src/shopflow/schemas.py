"""The curated tables' schemas, declared once: each table's columns, their types and its grain.

Everything else is derived from these declarations: the transforms' column lists
(`shopflow.transform.*`), the Arrow schemas the ETL reads the lake with
(`shopflow.transform.curated_tables`), the Spark `StructType` of the stream
(`shopflow.transform.streaming`), and the warehouse tables with their DuckDB DDL and BigQuery
fields (`shopflow.warehouse.schema`). The raw zone's schemas (what the landing writes) are the
data contracts in `shopflow.contracts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pyarrow as pa


class Grain(StrEnum):
    """How a table is partitioned in the lake and replaced in the warehouse."""

    HOURLY = "hourly"  # curated/<t>/date=/hour=/ ; replaced per (date, hour) or per date
    DAILY = "daily"  # curated/<t>/date=/ ; replaced per date
    WHOLE = "whole"  # one snapshot; replaced whole


class Kind(StrEnum):
    """A column's logical type."""

    STRING = "string"
    INT32 = "int32"  # `hour`
    INT64 = "int64"
    FLOAT64 = "float64"  # a share or rate, not money
    MONEY = "money"  # INR: a float in the lake, an exact decimal in the warehouse
    DATE = "date"
    TIMESTAMP = "timestamp"  # UTC, microseconds


#: The Arrow type of each kind in the lake (Parquet as the transforms write it).
LAKE_TYPES: Final[dict[Kind, pa.DataType]] = {
    Kind.STRING: pa.string(),
    Kind.INT32: pa.int32(),
    Kind.INT64: pa.int64(),
    Kind.FLOAT64: pa.float64(),
    Kind.MONEY: pa.float64(),
    Kind.DATE: pa.date32(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column; `warehouse=False` keeps it in the lake only."""

    name: str
    kind: Kind
    warehouse: bool = True


@dataclass(frozen=True, slots=True)
class CuratedTable:
    """One curated table of the lake: name, grain, columns in the transforms' order, and whether
    the warehouse loads it."""

    name: str
    grain: Grain
    columns: tuple[Column, ...]
    warehouse: bool = True

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every column name, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def partition_columns(self) -> tuple[str, ...]:
        """The Hive partition columns of its lake folders."""
        return {Grain.HOURLY: ("date", "hour"), Grain.DAILY: ("date",), Grain.WHOLE: ()}[self.grain]

    def lake_schema(self, *, partitions_last: bool = False) -> pa.Schema:
        """Its Arrow schema in the lake; with `partitions_last`, the partition columns at the
        end, where a Hive-partitioned read puts them."""
        columns = list(self.columns)
        if partitions_last:
            keys = self.partition_columns
            columns = [c for c in columns if c.name not in keys] + [
                c for key in keys for c in columns if c.name == key
            ]
        return pa.schema([(c.name, LAKE_TYPES[c.kind]) for c in columns])


S, I32, N, F, M, D, T = (
    Kind.STRING,
    Kind.INT32,
    Kind.INT64,
    Kind.FLOAT64,
    Kind.MONEY,
    Kind.DATE,
    Kind.TIMESTAMP,
)


def _table(
    name: str, grain: Grain, *columns: tuple[str, Kind] | Column, warehouse: bool = True
) -> CuratedTable:
    cols = tuple(c if isinstance(c, Column) else Column(*c) for c in columns)
    return CuratedTable(name, grain, cols, warehouse)


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
_BEHAVIOUR_COUNTS: Final = (
    ("events", N),
    ("views", N),
    ("wishlists", N),
    ("order_events", N),
    ("returns", N),
)
_USER_COLUMNS: Final = (
    ("user_id", S),
    ("user_name", S),
    ("email", S),
    ("city", S),
    ("date", D),
    ("updated_at", T),
)

EVENTS_CLEAN: Final = _table(
    "events_clean",
    Grain.HOURLY,
    ("event_id", S),
    ("event_name", S),
    ("product_id", S),
    ("user_id", S),
    ("order_id", S),
    ("price", M),
    ("event_ts", T),
    ("date", D),
    ("hour", I32),
    ("session_id", S),
    ("session_source", S),
    Column("session_start_ts", T, warehouse=False),  # the ETL's own bookkeeping of sessions
    ("ingest_ts", T),
)
TRAFFIC_HOURLY: Final = _table(
    "traffic_hourly", Grain.HOURLY, ("date", D), ("hour", I32), *_TRAFFIC_MEASURES
)
TRAFFIC_DAILY: Final = _table("traffic_daily", Grain.DAILY, ("date", D), *_TRAFFIC_MEASURES)
ORDERS_ENRICHED: Final = _table(
    "orders_enriched",
    Grain.DAILY,
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
)
PRODUCTS_CLEAN: Final = _table(
    "products_clean",
    Grain.WHOLE,
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
)
CATEGORY_SUMMARY: Final = _table(
    "category_summary",
    Grain.WHOLE,
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
)
USERS_ENRICHED: Final = _table(
    "users_enriched",
    Grain.WHOLE,
    *_USER_COLUMNS,
    *_BEHAVIOUR_COUNTS,
    ("sessions", N),
    ("orders", N),
    ("ordered_amount_inr", M),
    ("first_seen_ts", T),
    ("last_seen_ts", T),
)
USER_BEHAVIOR: Final = _table(
    "user_behavior",
    Grain.DAILY,
    # The seed's nine unified-table columns first, under these names.
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
)
ORDER_RECONCILIATION: Final = _table(
    "order_reconciliation",
    Grain.DAILY,
    ("date", D),
    ("api_orders", N),
    ("event_orders", N),
    ("matched_orders", N),
    ("orders_without_event", N),
    ("events_without_order", N),
    ("amount_mismatches", N),
    ("returns_without_order", N),
)
PRODUCT_ACTIVITY_DAILY: Final = _table(
    "product_activity_daily",
    Grain.DAILY,
    ("date", D),
    ("product_id", S),
    *_BEHAVIOUR_COUNTS,
    warehouse=False,
)
USER_ACTIVITY_DAILY: Final = _table(
    "user_activity_daily",
    Grain.DAILY,
    ("date", D),
    ("user_id", S),
    *_BEHAVIOUR_COUNTS,
    ("sessions_started", N),
    ("first_seen_ts", T),
    ("last_seen_ts", T),
    warehouse=False,
)
ORDER_ACTIVITY_DAILY: Final = _table(
    "order_activity_daily",
    Grain.DAILY,
    ("date", D),
    ("order_id", S),
    ("order_events", N),
    ("order_amount_inr", M),
    ("returns", N),
    warehouse=False,
)

#: Every declared curated table by name; the warehouse's come first, in load order.
CURATED: Final[dict[str, CuratedTable]] = {
    t.name: t
    for t in (
        EVENTS_CLEAN,
        TRAFFIC_HOURLY,
        TRAFFIC_DAILY,
        ORDERS_ENRICHED,
        PRODUCTS_CLEAN,
        CATEGORY_SUMMARY,
        USERS_ENRICHED,
        USER_BEHAVIOR,
        ORDER_RECONCILIATION,
        PRODUCT_ACTIVITY_DAILY,
        USER_ACTIVITY_DAILY,
        ORDER_ACTIVITY_DAILY,
    )
}


def curated(name: str) -> CuratedTable:
    """The declaration of the curated table `name` (a KeyError names an undeclared one)."""
    return CURATED[name]
