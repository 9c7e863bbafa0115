"""The gcp profile end to end on emulators: the same seeded pipeline under `local` and under `gcp`
(lake on fake-gcs-server, events on the Pub/Sub emulator, warehouse on the BigQuery emulator, ETL on
DuckDB over `gs://`) gives exactly the same metrics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from shopflow.ingest.catalog import ingest_catalog
from shopflow.ingest.events import ingest_events
from shopflow.ingest.orders import ingest_orders
from shopflow.lake import LakeLayout, list_data_files
from shopflow.lake.io import resolve
from shopflow.metrics import load_warehouse
from shopflow.metrics.results import fetch_metrics
from shopflow.settings import Profile, Settings, load_settings
from shopflow.simulator.config import SimulationConfig
from shopflow.simulator.publish import publish_simulation
from shopflow.transform.engine import open_etl_session
from shopflow.transform.jobs import EtlRequest, run_etl
from shopflow.warehouse.bq_emulator import BigQueryEmulator
from tests.conftest import TEST_PG_ADMIN_URL
from tests.gcs_fixtures import fake_gcs_endpoint
from tests.sources.orders_api.conftest import StartOrdersApi, start_orders_api
from tests.warehouse.fixtures import bq_emulator

__all__ = ["bq_emulator", "fake_gcs_endpoint", "start_orders_api"]

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EVENTS = 2000
SEED = 5
#: As in `shopflow demo`: an empty bus for this long ends the landing.
LANDING_IDLE_SECONDS = 4.0


def run_pipeline(settings: Settings) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """simulate -> land events -> orders -> catalogue -> ETL -> load -> metrics, as the demo runs
    them; returns the metrics and each step's seconds."""
    steps: dict[str, float] = {}
    started = time.monotonic()

    def step(name: str) -> None:
        nonlocal started
        steps[name] = round(time.monotonic() - started, 1)
        started = time.monotonic()

    publish_simulation(settings, SimulationConfig(seed=SEED, events=EVENTS))
    step("publish")
    ingest_events(settings, idle_stop_seconds=LANDING_IDLE_SECONDS)
    step("land events")
    ingest_orders(settings)
    step("orders")
    ingest_catalog(None, settings)
    step("catalogue")
    run_etl(open_etl_session(settings), settings, EtlRequest())
    step("etl")
    load_warehouse(settings)
    step("load")
    metrics = fetch_metrics(settings)
    step("metrics")
    return metrics, steps


@pytest.fixture
def profiles(
    settings: Settings,
    start_orders_api: StartOrdersApi,
    pubsub_emulator: str,
    fake_gcs_endpoint: str,
    bq_emulator: BigQueryEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Settings]]:
    """A local and a gcp configuration, each with its own shop database, orders API and topic."""
    # How gcsfs (and so the lake) is pointed at a GCS emulator; nothing in the local profile reads it.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_endpoint)
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    bucket = f"shopflow-{uuid.uuid4().hex[:10]}"
    resolve(f"gs://{bucket}")[0].mkdir(bucket)
    chosen: dict[str, Settings] = {}
    dbnames: list[str] = []
    for profile in Profile:
        api = start_orders_api().settings
        topic = f"{profile.value}-{uuid.uuid4().hex[:10]}"
        dbnames.append(f"shopflow_e2e_{topic.replace('-', '_')}")
        values: dict[str, object] = {
            "profile": profile,
            "home": settings.home / profile.value,
            "source_db_url": make_conninfo(TEST_PG_ADMIN_URL, dbname=dbnames[-1]),
            "orders_api_port": api.orders_api_port,
            "orders_api_token": api.orders_api_token,
            "pubsub_emulator_host": pubsub_emulator,
            "events_topic": topic,
            "events_subscription": f"{topic}-landing",
            "etl_engine": "duckdb",
        }
        if profile is Profile.GCP:
            values |= {
                "gcs_bucket": bucket,
                "gcp_project": bq_emulator.project,
                "bigquery_api_endpoint": bq_emulator.endpoint,
                "bigquery_dataset": f"e2e_{uuid.uuid4().hex[:10]}",
            }
        chosen[profile.value] = load_settings(**values)
    yield chosen
    for dbname in dbnames:
        with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def _normalised(metrics: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {
        name: sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)
        for name, rows in metrics.items()
    }


def test_gcp_profile_on_emulators_gives_the_local_metrics(profiles: dict[str, Settings]) -> None:
    local, gcp = profiles["local"], profiles["gcp"]
    assert gcp.lake_url.startswith("gs://") and gcp.etl_engine == "duckdb"

    local_metrics, local_steps = run_pipeline(local)
    gcp_metrics, gcp_steps = run_pipeline(gcp)
    print(f"\nseconds per step: local {local_steps}\n                  gcp   {gcp_steps}")

    # The gcp run went through the emulators: lake objects in the bucket, nothing under home.
    layout = LakeLayout.from_settings(gcp)
    assert list_data_files(layout.events_root())
    assert list_data_files(f"{layout.root}/curated")
    assert not (gcp.home / "lake").exists() and not (gcp.home / "warehouse.duckdb").exists()

    assert local_metrics and all(rows for rows in local_metrics.values()), local_metrics
    assert _normalised(gcp_metrics) == _normalised(local_metrics)
    traffic = gcp_metrics["metric_daily_traffic"]
    assert sum(row["events"] for row in traffic) == EVENTS
