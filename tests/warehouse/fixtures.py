"""Fixtures the warehouse and metrics tests share: the tiny lake, the BigQuery emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shopflow.lake import LakeLayout
from shopflow.settings import Settings
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
