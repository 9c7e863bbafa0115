"""The live path on the gcp profile's warehouse, as real processes: landing consumer + `shopflow
stream` on the Pub/Sub emulator, the stream's rows streamed into the BigQuery emulator and
visible in its `user_behavior_current`, a kill -9 of the stream mid-batch, then `shopflow etl` +
`shopflow load` superseding the live rows.

The lake is a local folder: Spark's file source here has no GCS connector (Dataproc brings one),
so this covers everything of the gcp live path but the lake's `gs://`. Bounds as in
`test_live_path`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shopflow.settings import Settings
from shopflow.sources.bus.factory import ensure_event_topic
from shopflow.transform.streaming import checkpoint_location
from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse, make_client
from shopflow.warehouse.bq_emulator import BigQueryEmulator
from shopflow.warehouse.live import CURRENT_VIEW, LIVE_TABLE
from tests.integration.live_processes import (
    Processes,
    batch_files,
    event,
    kill_mid_batch,
    publish,
    run_hourly_batch,
    wait_committed,
)
from tests.warehouse.fixtures import bq_emulator, gcp_profile

__all__ = ["bq_emulator"]

pytestmark = pytest.mark.integration

FIRST_BURST_BOUND_S = 300.0


@pytest.fixture
def gcp_settings(
    pubsub_settings: Settings, bq_emulator: BigQueryEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Profile gcp on the emulators, with a local lake and a dataset of this test."""
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    with gcp_profile(pubsub_settings, bq_emulator, etl_engine="duckdb") as settings:
        yield settings


def _warehouse(settings: Settings) -> BigQueryWarehouse:
    return BigQueryWarehouse(
        make_client(settings.gcp_project, settings.bigquery_api_endpoint),
        settings.bigquery_dataset,
    )


def _view_ids(warehouse: BigQueryWarehouse) -> list[str]:
    """Event ids in BigQuery's `user_behavior_current`, one per row (empty before it exists)."""
    tables = {t.table_id for t in warehouse.client.list_tables(warehouse.dataset_ref)}
    if CURRENT_VIEW not in tables:
        return []
    rows = warehouse.query(f"SELECT event_id FROM `{warehouse.dataset_ref}.{CURRENT_VIEW}`")
    return [r["event_id"] for r in rows]


def _wait_visible(
    warehouse: BigQueryWarehouse, ids: set[str], published: float, bound_s: float
) -> None:
    while time.monotonic() - published < bound_s:
        if ids <= set(_view_ids(warehouse)):
            return
        time.sleep(0.5)
    missing = ids - set(_view_ids(warehouse))
    raise AssertionError(f"not in BigQuery's {CURRENT_VIEW} within {bound_s} s: {sorted(missing)}")


def test_live_rows_reach_bigquery_survive_a_kill_and_yield_to_the_batch(
    gcp_settings: Settings,
) -> None:
    settings = gcp_settings
    ensure_event_topic(settings)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    checkpoint = Path(checkpoint_location(settings))
    procs = Processes(settings)
    warehouse = _warehouse(settings)
    procs.start("landing", "ingest", "events")
    stream_args = ("stream", "--trigger-seconds", "2")
    stream = procs.start("stream", *stream_args)
    try:
        # Burst 1, with a duplicate.
        burst1 = [event(f"b1-{i}", f"u{i % 3}", now + timedelta(seconds=i)) for i in range(6)]
        published = publish(settings, [*burst1, burst1[0]])
        ids1 = {e["event_id"] for e in burst1}
        _wait_visible(warehouse, ids1, published, FIRST_BURST_BOUND_S)
        assert f"BigQuery {settings.bigquery_dataset}.{LIVE_TABLE}" in procs.log("stream")

        # Burst 2, of the same users (their sessions are re-computed): kill -9 the stream while
        # its micro-batch is written but not committed, and restart it.
        committed = max(batch_files(checkpoint, "commits"))
        burst2 = [
            event(f"b2-{i}", f"u{i % 3}", now + timedelta(minutes=1, seconds=i)) for i in range(5)
        ]
        publish(settings, burst2)
        killed = kill_mid_batch(stream, checkpoint, committed)
        procs.start("stream", *stream_args)
        ids2 = {e["event_id"] for e in burst2}
        _wait_visible(warehouse, ids2, time.monotonic(), FIRST_BURST_BOUND_S)
        wait_committed(checkpoint, killed, procs)
        live = _view_ids(warehouse)
        assert sorted(live) == sorted(ids1 | ids2)  # none lost, none doubled
    finally:
        procs.stop_all()

    # The hourly batch into BigQuery: it supersedes every live row.
    run_hourly_batch(procs)
    try:
        assert sorted(_view_ids(warehouse)) == sorted(ids1 | ids2)
        batch = warehouse.query(f"SELECT event_id FROM `{warehouse.dataset_ref}.user_behavior`")
        assert {r["event_id"] for r in batch} == ids1 | ids2
        streamed = warehouse.query(f"SELECT event_id FROM `{warehouse.dataset_ref}.{LIVE_TABLE}`")
        assert {r["event_id"] for r in streamed} >= ids1 | ids2  # the live rows are still there
    finally:
        warehouse.close()
