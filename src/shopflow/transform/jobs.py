"""Thin ETL entry points: read the raw zone, run the transforms, replace curated partitions.

The same entry points run in-process (tests, `shopflow etl`) and under spark-submit/Dataproc.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import DateType, IntegerType, StructField, StructType

from shopflow.contracts import (
    RAW_EVENT_SCHEMA,
    RAW_ORDER_SCHEMA,
    RAW_PRODUCT_SCHEMA,
    RAW_USER_SCHEMA,
)
from shopflow.lake import LakeLayout, list_partitions, replace_partition
from shopflow.settings import Settings
from shopflow.transform.events import event_rejects, events_clean, stage_events
from shopflow.transform.orders import dedup_order_lines, orders_enriched
from shopflow.transform.products import products_clean
from shopflow.transform.reconciliation import order_reconciliation
from shopflow.transform.traffic import traffic_daily, traffic_hourly
from shopflow.transform.user_behavior import user_behavior
from shopflow.transform.users import users_clean

#: Curated tables with one partition per event date and hour.
HOURLY_TABLES = ("events_clean", "traffic_hourly")
#: Curated tables with one partition per date.
DAILY_TABLES = ("user_behavior", "traffic_daily", "order_reconciliation", "orders_enriched")


@dataclass(frozen=True, slots=True)
class EtlRun:
    """What one ETL run did: the event dates it recomputed and the partitions it replaced."""

    dates: tuple[date, ...]
    partitions: dict[str, list[str]] = field(default_factory=dict)
    rejected_events: int = 0


def _event_schema() -> StructType:
    raw = from_arrow_schema(RAW_EVENT_SCHEMA)
    return StructType(
        [*raw.fields, StructField("date", DateType()), StructField("hour", IntegerType())]
    )


def _read(spark: SparkSession, schema: StructType, root: str, urls: Sequence[str]) -> DataFrame:
    if not urls:
        return spark.createDataFrame([], schema)
    # basePath keeps the Hive columns; the explicit schema types them (date, int) as the lake does.
    return spark.read.schema(schema).option("basePath", root).parquet(*urls)


def _read_pulls(
    spark: SparkSession, layout: LakeLayout, source: str, arrow: pa.Schema
) -> DataFrame:
    root = layout.pull_root(source)
    urls = [p.url for p in list_partitions(root)]
    # The pull partition key (cursor_date) is not part of the row contract.
    schema = StructType([*from_arrow_schema(arrow).fields, StructField("cursor_date", DateType())])
    return _read(spark, schema, root, urls).drop("cursor_date")


def _write(
    table: pa.Table, name: str, layout: LakeLayout, keys: Iterable[tuple[date, int | None]]
) -> list[str]:
    written = []
    for day, hour in sorted(keys, key=lambda k: (k[0], -1 if k[1] is None else k[1])):
        mask = pc.equal(table["date"], pa.scalar(day, pa.date32()))
        if hour is not None:
            mask = pc.and_(mask, pc.equal(table["hour"], pa.scalar(hour, pa.int32())))
        part = table.filter(mask)
        written.append(replace_partition(part, layout.curated_partition(name, day, hour)))
    return written


def event_dates(hours: Iterable[datetime]) -> tuple[date, ...]:
    """The UTC dates of the given event hours, sorted and unique."""
    return tuple(sorted({h.astimezone(UTC).date() for h in hours}))


def run_hourly_etl(spark: SparkSession, settings: Settings, hours: Sequence[datetime]) -> EtlRun:
    """Recompute the curated zone for the event dates of `hours` (UTC hour starts).

    Sessions and late events reach across hours, so the unit of recomputation is the whole event
    date (read with the previous date as session context): every hour partition of that date that
    has events is replaced, so re-running converges to the same state. Orders, products and users
    are read whole (they are small pulls, deduplicated here).
    """
    dates = event_dates(hours)
    if not dates:
        return EtlRun(dates=())
    layout = LakeLayout.from_settings(settings)
    events_root = layout.events_root()
    wanted = {d for day in dates for d in (day, day - timedelta(days=1))}
    event_urls = [p.url for p in list_partitions(events_root) if p.date in wanted]
    raw_events = _read(spark, _event_schema(), events_root, event_urls)

    staged = stage_events(raw_events).cache()
    rejected = event_rejects(staged).count()
    clean = events_clean(raw_events).cache()
    products = products_clean(_read_pulls(spark, layout, "products", RAW_PRODUCT_SCHEMA)).cache()
    users = users_clean(_read_pulls(spark, layout, "users", RAW_USER_SCHEMA))
    orders = orders_enriched(
        dedup_order_lines(_read_pulls(spark, layout, "orders", RAW_ORDER_SCHEMA)), products
    ).cache()

    in_dates = F.col("date").isin(list(dates))
    tables: dict[str, DataFrame] = {
        "events_clean": clean.where(in_dates),
        "user_behavior": user_behavior(clean, products, users).where(in_dates),
        "traffic_hourly": traffic_hourly(clean).where(in_dates),
        "traffic_daily": traffic_daily(clean).where(in_dates),
        "order_reconciliation": order_reconciliation(clean, orders).where(in_dates),
        "orders_enriched": orders.where(in_dates),
    }
    partitions: dict[str, list[str]] = {}
    for name, df in tables.items():
        # Collected to the driver: the lake's atomic one-file partition replace is Arrow-based.
        table = df.toArrow()
        if name in HOURLY_TABLES:
            keys: set[tuple[date, int | None]] = set(
                zip(table["date"].to_pylist(), table["hour"].to_pylist(), strict=True)
            )
        else:
            keys = {(day, None) for day in dates}
        partitions[name] = _write(table, name, layout, keys)
    for df in (staged, clean, products, orders):
        df.unpersist()
    return EtlRun(dates=dates, partitions=partitions, rejected_events=rejected)
