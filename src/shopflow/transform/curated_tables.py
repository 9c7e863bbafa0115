"""The ETL's tables: which curated tables it writes at which grain, how it reads its inputs
and outputs back, and the names of its state and dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final

from shopflow.contracts import (
    RAW_ORDER_SCHEMA,
    RAW_PRODUCT_SCHEMA,
    RAW_USER_SCHEMA,
)
from shopflow.schemas import EVENTS_CLEAN, curated

#: Partition keys of a curated table: (date, hour) for hourly tables, (date, None) for daily ones.
Keys = Sequence[tuple[date, int | None]]

#: A DataFrame of either engine (pyspark's or SQLFrame's; they share the API the job uses).
DataFrame = Any

#: Curated tables with one partition per event date and hour.
HOURLY_TABLES: Final = ("events_clean", "traffic_hourly")

#: Curated tables with one partition per recomputed event date.
DAILY_TABLES: Final = ("traffic_daily", "user_behavior")

#: Curated per-date activity (`shopflow.transform.activity`), one partition per recomputed date.
ACTIVITY_TABLES: Final = ("product_activity_daily", "user_activity_daily", "order_activity_daily")

#: Curated tables partitioned by date, computed whole, rewritten where their rows changed.
SYNCED_TABLES: Final = ("orders_enriched", "order_reconciliation")

#: Curated whole-table snapshots (`curated/<table>/part-00000.parquet`).
SNAPSHOT_TABLES: Final = (
    "products_clean",
    "products_history",
    "users_history",
    "users_enriched",
    "category_summary",
)

#: Every curated table the ETL writes.
CURATED_TABLES: Final = (
    *HOURLY_TABLES,
    *DAILY_TABLES,
    *ACTIVITY_TABLES,
    *SYNCED_TABLES,
    *SNAPSHOT_TABLES,
)

#: The raw pulls and the schema each is read with.
PULL_SCHEMAS: Final = {
    "orders": RAW_ORDER_SCHEMA,
    "products": RAW_PRODUCT_SCHEMA,
    "users": RAW_USER_SCHEMA,
}

#: Where staging rejects go (`deadletter/<source>/date=D/`).
REJECTS_SOURCE: Final = "events_etl"

#: Partitions written at once (`_replace_partitions`).
WRITE_THREADS: Final = 4

#: The staging column that keeps a raw event's partition date (its rejects are filed under it).
RAW_DATE_COLUMN: Final = "raw_date"

#: The ETL's state record under `_state/`.
STATE_NAME: Final = "etl_hourly"

#: How `events_clean` reads back (`date` and `hour` from the path).
CURATED_EVENTS_SCHEMA: Final = EVENTS_CLEAN.lake_schema(partitions_last=True)

#: How the activity tables read back (`date` from the path).
ACTIVITY_SCHEMAS: Final = {
    name: curated(name).lake_schema(partitions_last=True) for name in ACTIVITY_TABLES
}
