"""The hourly ETL entry point against a real (temporary) lake."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow as pa
from pyspark.sql import SparkSession

from shopflow.contracts import RAW_EVENT_SCHEMA, RAW_ORDER_SCHEMA, RAW_PRODUCT_SCHEMA
from shopflow.lake import LakeLayout, read_dataset, write_parquet_atomic
from shopflow.settings import Settings
from shopflow.transform.jobs import run_hourly_etl
from tests.transform.builders import DAY, T0

HOUR = timedelta(hours=1)


def _event(event_id: str, offset: timedelta, **extra: Any) -> dict[str, Any]:
    ts = T0 + offset
    return {
        "event_id": event_id,
        "event_name": "view",
        "product_id": "p1",
        "user_id": "u1",
        "order_id": None,
        "price": 100.0,
        "event_ts": ts,
        "session_id": None,
        "message_id": f"m-{event_id}-{extra.get('ingest', 0)}",
        "publish_ts": ts,
        "ingest_ts": ts + timedelta(seconds=1 + extra.pop("ingest", 0)),
        **extra,
    }


def test_run_hourly_etl_writes_curated_partitions_and_is_idempotent(
    spark: SparkSession, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    batches = {
        "a": [_event("e1", timedelta(0)), _event("e2", timedelta(minutes=10))],
        # e2 redelivered in a later file; an order in the next hour.
        "b": [
            _event("e2", timedelta(minutes=10), ingest=300),
            _event("e3", HOUR, event_name="order", order_id="o1", price=200.0),
        ],
    }
    for name, rows in batches.items():
        for hour_offset in {r["event_ts"] - T0 >= HOUR for r in rows}:
            part = [r for r in rows if (r["event_ts"] - T0 >= HOUR) == hour_offset]
            first = part[0]["event_ts"]
            url = layout.event_batch_file_in(
                DAY, first.hour, first, [f"{name}{r['message_id']}" for r in part]
            )
            write_parquet_atomic(pa.Table.from_pylist(part, RAW_EVENT_SCHEMA), url)
    product = {
        "product_id": "p1",
        "product_name": "Shirt",
        "category": None,
        "category_path": '["Clothing >> Shirts"]',
        "brand": "Acme",
        "price": 100.0,
        "retail_price_inr": 120.0,
        "date": DAY,
        "updated_at": T0,
        "ingest_ts": T0,
    }
    write_parquet_atomic(
        pa.Table.from_pylist([product], RAW_PRODUCT_SCHEMA),
        layout.pull_file("products", None, T0),
    )
    order = {
        "order_id": "o1",
        "product_id": "p1",
        "user_id": "u1",
        "date": DAY,
        "order_ts": T0 + HOUR,
        "quantity": 2,
        "unit_price_inr": 100.0,
        "status": "placed",
        "updated_at": T0 + HOUR,
        "ingest_ts": T0 + HOUR,
    }
    write_parquet_atomic(
        pa.Table.from_pylist([order], RAW_ORDER_SCHEMA),
        layout.pull_file("orders", None, T0 + HOUR),
    )

    first = run_hourly_etl(spark, settings, [T0 + HOUR])
    second = run_hourly_etl(spark, settings, [T0 + HOUR])
    assert first == second
    assert first.dates == (DAY,)
    assert len(first.partitions["events_clean"]) == 2  # both hours of the date

    events_table = read_dataset(layout.curated_root("events_clean"))
    assert events_table.schema.field("event_ts").type == pa.timestamp("us", tz="UTC")
    events = events_table.to_pylist()
    assert sorted(e["event_id"] for e in events) == ["e1", "e2", "e3"]
    assert {(e["date"], e["hour"]) for e in events} == {(DAY, 10), (DAY, 11)}
    behavior = read_dataset(layout.curated_root("user_behavior")).to_pylist()
    assert {b["product_name"] for b in behavior} == {"Shirt"}
    [recon] = read_dataset(layout.curated_root("order_reconciliation")).to_pylist()
    assert (recon["matched_orders"], recon["amount_mismatches"]) == (1, 0)
    hourly = read_dataset(layout.curated_root("traffic_hourly")).to_pylist()
    assert sorted((h["hour"], h["events"]) for h in hourly) == [(10, 2), (11, 1)]
