"""A curated lake made by the project's simulator and ETL (two days), copied per test; and the
BigQuery emulator fixtures of the warehouse tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bench.etl_engines import write_raw_zone

from shopflow.settings import Settings, load_settings
from shopflow.transform.engine import open_etl_session
from shopflow.transform.jobs import backfill_request, run_etl
from tests.warehouse.fixtures import bq_emulator, bq_warehouse

__all__ = ["bq_emulator", "bq_warehouse"]


@pytest.fixture(scope="session")
def curated_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 simulated events over 2026-11-01 and 02, landed and ETL'd (raw and curated zones)."""
    home = tmp_path_factory.mktemp("quality-template")
    write_raw_zone(home / "lake", 3000, seed=13, days=2, initial_users=150)
    settings = load_settings(home=home)
    run_etl(open_etl_session(settings), settings, backfill_request("2026-11-01", "2026-11-02"))
    return home / "lake"


@pytest.fixture
def lake_settings(curated_lake: Path, settings: Settings) -> Settings:
    """The test's settings with a private copy of the curated lake under its home."""
    shutil.copytree(curated_lake, settings.home / "lake")
    return settings
