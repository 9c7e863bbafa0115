"""Tiny raw-zone DataFrames for transform tests, built with the contract schemas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import DateType, IntegerType, StructField, StructType

from shopflow.contracts import (
    RAW_EVENT_SCHEMA,
    RAW_ORDER_SCHEMA,
    RAW_PRODUCT_SCHEMA,
    RAW_USER_SCHEMA,
)

#: 2026-11-25 10:00 UTC, the hour most test events fall in.
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DAY = T0.date()


def utc(value: datetime) -> datetime:
    """A timestamp collected from Spark (naive, local time) as an aware UTC datetime."""
    return value.astimezone(UTC)


def _schema(arrow: pa.Schema, nullable: bool) -> StructType:
    schema = from_arrow_schema(arrow)
    if nullable:
        schema = StructType([StructField(f.name, f.dataType, True) for f in schema.fields])
    return schema


def _frame(spark: SparkSession, schema: StructType, rows: Sequence[Mapping[str, Any]]) -> DataFrame:
    names = schema.fieldNames()
    return spark.createDataFrame([tuple(row[name] for name in names) for row in rows], schema)


def raw_events(
    spark: SparkSession, rows: Sequence[Mapping[str, Any]], *, nullable: bool = False
) -> DataFrame:
    """Raw events as read from `raw/events/date=/hour=/` (partition columns included).

    Defaults: a view of p1 by u1 at T0 for 100 INR, no session, landed a second later.
    """
    schema = _schema(RAW_EVENT_SCHEMA, nullable)
    schema = StructType(
        [*schema.fields, StructField("date", DateType()), StructField("hour", IntegerType())]
    )
    full = []
    for row in rows:
        event_ts: datetime = row.get("event_ts", T0)
        values: dict[str, Any] = {
            "event_name": "view",
            "product_id": "p1",
            "user_id": "u1",
            "order_id": None,
            "price": 100.0,
            "session_id": None,
            "message_id": f"m-{row['event_id']}",
            "publish_ts": None,
            "ingest_ts": event_ts + timedelta(seconds=1),
            "date": event_ts.date(),
            "hour": event_ts.hour,
            **row,
            "event_ts": event_ts,
        }
        full.append(values)
    return _frame(spark, schema, full)


def raw_orders(
    spark: SparkSession, rows: Sequence[Mapping[str, Any]], *, nullable: bool = False
) -> DataFrame:
    """Raw order lines. Defaults: o1/p1/u1, one unit at 100 INR, placed at T0, updated then."""
    defaults: dict[str, Any] = {
        "order_id": "o1",
        "product_id": "p1",
        "user_id": "u1",
        "date": DAY,
        "order_ts": T0,
        "quantity": 1,
        "unit_price_inr": 100.0,
        "status": "placed",
        "updated_at": T0,
        "ingest_ts": T0 + timedelta(minutes=10),
    }
    return _frame(spark, _schema(RAW_ORDER_SCHEMA, nullable), [{**defaults, **r} for r in rows])


def raw_products(
    spark: SparkSession, rows: Sequence[Mapping[str, Any]], *, nullable: bool = False
) -> DataFrame:
    """Raw products. Defaults: p1 'Shirt' of Clothing, 100 INR, updated at T0."""
    defaults: dict[str, Any] = {
        "product_id": "p1",
        "product_name": "Shirt",
        "category": None,
        "category_path": '["Clothing >> Men\'s Clothing >> Shirts"]',
        "brand": "Acme",
        "price": 100.0,
        "retail_price_inr": 150.0,
        "date": date(2026, 1, 1),
        "updated_at": T0,
        "ingest_ts": T0 + timedelta(minutes=30),
        "deleted_at": None,
    }
    return _frame(spark, _schema(RAW_PRODUCT_SCHEMA, nullable), [{**defaults, **r} for r in rows])


def raw_users(
    spark: SparkSession, rows: Sequence[Mapping[str, Any]], *, nullable: bool = False
) -> DataFrame:
    """Raw users. Defaults: u1 'Asha Rao' of Pune, signed up 2026-01-01, updated at T0."""
    defaults: dict[str, Any] = {
        "user_id": "u1",
        "user_name": "Asha Rao",
        "email": "asha@example.com",
        "city": "Pune",
        "date": date(2026, 1, 1),
        "updated_at": T0,
        "ingest_ts": T0 + timedelta(minutes=30),
        "deleted_at": None,
    }
    return _frame(spark, _schema(RAW_USER_SCHEMA, nullable), [{**defaults, **r} for r in rows])


def by_key(rows: Sequence[Row], key: str) -> dict[Any, Row]:
    """Collected rows indexed by one column (which must be unique)."""
    indexed = {row[key]: row for row in rows}
    assert len(indexed) == len(rows), f"{key} is not unique"
    return indexed
