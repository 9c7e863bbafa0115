"""Simulator -> real sources -> landing -> ETL, checked against the simulator's ground truth."""

from __future__ import annotations

import time
from collections import Counter

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from shopflow.ingest.catalog import ingest_catalog
from shopflow.ingest.events import LandingLimits, land_events
from shopflow.ingest.orders import ingest_orders
from shopflow.lake import LakeLayout, read_dataset
from shopflow.settings import Settings
from shopflow.simulator import SimulationConfig
from shopflow.simulator.publish import publish_simulation
from shopflow.sources.bus.factory import make_consumer
from shopflow.transform.jobs import (
    CURATED_TABLES,
    EtlRequest,
    backfill_request,
    etl_request,
    run_etl,
)

pytestmark = pytest.mark.integration

EVENTS = 100_000


def curated(layout: LakeLayout) -> dict[str, pa.Table]:
    """Every curated table with its rows sorted, for row-for-row comparison."""
    tables = {}
    for name in CURATED_TABLES:
        table = read_dataset(layout.curated_root(name))
        tables[name] = table.sort_by([(c, "ascending") for c in table.column_names])
    return tables


def test_simulated_shop_through_landing_and_etl_is_exact_and_idempotent(
    spark: SparkSession, shop_settings: Settings
) -> None:
    settings = shop_settings
    layout = LakeLayout.from_settings(settings)
    # Default dirt: duplicates, late and malformed deliveries, catalogue churn.
    published = publish_simulation(
        settings, SimulationConfig(seed=11, events=EVENTS, initial_users=3000)
    )
    truth = published.truth
    assert truth.valid_events == EVENTS
    assert truth.duplicate_deliveries and truth.late_deliveries and truth.malformed_deliveries

    consumer = make_consumer(settings)
    try:
        landed = land_events(
            consumer,
            layout,
            LandingLimits(batch_max_messages=5000, batch_max_seconds=2.0, idle_stop_seconds=5.0),
        )
    finally:
        consumer.close()
    assert landed.read >= truth.deliveries
    assert ingest_orders(settings).written > 0
    assert all(report.written > 0 for report in ingest_catalog(spark, settings))

    started = time.monotonic()
    first = run_etl(spark, settings, EtlRequest())
    etl_seconds = time.monotonic() - started
    print(f"\nETL over {landed.written:,} landed events: {etl_seconds:.1f}s\n{first.summary()}")
    assert first.rejected_events == 0  # the landing consumer dead-letters the malformed ones

    before = curated(layout)
    behavior = before["user_behavior"]
    ids = behavior.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == EVENTS
    assert set(ids) == set(truth.valid_event_ids())
    assert Counter(behavior.column("event_name").to_pylist()) == truth.events_by_name
    assert before["events_clean"].num_rows == EVENTS
    assert behavior.column("product_name").null_count == 0
    assert behavior.column("user_name").null_count == 0
    traffic = before["traffic_daily"]
    assert sum(traffic.column("events").to_pylist()) == EVENTS
    recon = before["order_reconciliation"]
    assert sum(recon.column("api_orders").to_pylist()) == truth.orders
    assert sum(recon.column("orders_without_event").to_pylist()) == 0
    assert sum(recon.column("events_without_order").to_pylist()) == 0
    assert sum(recon.column("amount_mismatches").to_pylist()) == 0

    # The busiest hour again, then a whole-day backfill of its date: nothing changes.
    hourly = before["traffic_hourly"].to_pylist()
    busiest = max(hourly, key=lambda row: row["events"])
    hour = f"{busiest['date'].isoformat()}T{busiest['hour']:02d}"
    again = run_etl(spark, settings, etl_request(hour=hour))
    assert busiest["date"] in again.dates
    day = busiest["date"].isoformat()
    backfill = run_etl(spark, settings, backfill_request(day, day))
    assert backfill.dates == (busiest["date"],)
    after = curated(layout)
    for name in CURATED_TABLES:
        assert after[name].num_rows == before[name].num_rows, name
        assert after[name].equals(before[name]), name
