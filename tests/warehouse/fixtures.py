"""Fixtures the warehouse and metrics tests share: the tiny lake, the BigQuery emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shopflow.lake import LakeLayout
from shopflow.settings import Profile, Settings, load_settings
from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse, make_client
from shopflow.warehouse.bq_emulator import BigQueryEmulator
from tests.warehouse.tiny_lake import curated_tables, write_curated


@pytest.fixture
def tiny_lake(settings: Settings) -> LakeLayout:
    """The hand-computed tiny dataset in the curated zone of the test's lake."""
    layout = LakeLayout.from_settings(settings)
    write_curated(layout, curated_tables())
    return layout


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """One BigQuery emulator for the test session (each test uses its own dataset)."""
    log = tmp_path_factory.mktemp("bqemulator") / "bqemulator.log"
    with BigQueryEmulator(project="shopflow-test", log_path=log) as emulator:
        yield emulator


@pytest.fixture
def bq_warehouse(bq_emulator: BigQueryEmulator) -> Iterator[BigQueryWarehouse]:
    """A BigQuery warehouse in a fresh dataset of the emulator, tables created."""
    client = make_client(bq_emulator.project, bq_emulator.endpoint)
    warehouse = BigQueryWarehouse(client, f"t_{uuid.uuid4().hex[:10]}")
    warehouse.ensure_tables()
    try:
        yield warehouse
    finally:
        client.delete_dataset(warehouse.dataset_ref, delete_contents=True, not_found_ok=True)
        warehouse.close()


@contextmanager
def gcp_profile(base: Settings, emulator: BigQueryEmulator, **extra: object) -> Iterator[Settings]:
    """`base` on the gcp profile: its own lake folder kept local, the warehouse in a fresh dataset
    of the emulator (deleted after), the orders token not the local default the profile refuses."""
    values = {
        **base.model_dump(exclude_none=True),
        "profile": Profile.GCP,
        "lake_root": str(base.home / "lake"),
        "gcp_project": emulator.project,
        "bigquery_api_endpoint": emulator.endpoint,
        "bigquery_dataset": f"t_{uuid.uuid4().hex[:10]}",
        "orders_api_token": f"test-{uuid.uuid4().hex[:8]}",
        **extra,
    }
    settings = load_settings(**values)
    try:
        yield settings
    finally:
        client = make_client(emulator.project, emulator.endpoint)
        client.delete_dataset(
            f"{emulator.project}.{settings.bigquery_dataset}",
            delete_contents=True,
            not_found_ok=True,
        )
        client.close()  # type: ignore[no-untyped-call]
