"""The one Spark session the whole test run shares (Spark takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from shopflow.settings import load_settings
from shopflow.transform.session import build_spark_session


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """A local[2] Spark session shared by every test; its settings point at a temporary home."""
    home: Path = tmp_path_factory.mktemp("spark-home")
    settings = load_settings(home=home, spark_master="local[2]", spark_driver_memory="1g")
    session = build_spark_session(settings, app_name="shopflow-tests")
    yield session
    session.stop()


@pytest.fixture
def duckdb_session() -> Any:
    """The process's SQLFrame DuckDB session (in-memory, UTC), for the duckdb-engine tests.

    Asked for per test: code run in-process (an Airflow step, the demo) stops the session when
    its ETL ends (`shopflow.transform.engine.stopping`), and the next test needs a live one."""
    from shopflow.transform.engine import open_duckdb_session

    return open_duckdb_session()
