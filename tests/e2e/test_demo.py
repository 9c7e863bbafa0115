"""`shopflow demo` end to end, as a user runs it, against the real services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import TEST_PG_ADMIN_URL
from tests.service_fixtures import free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EVENTS = 3000


def shopflow(
    env: dict[str, str], *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def demo_env(tmp_path: Path, pubsub_emulator: str) -> Iterator[dict[str, str]]:
    """The environment of a user running the demo from an empty home, isolated from other tests."""
    dbname = f"shopflow_demo_{uuid.uuid4().hex[:10]}"
    topic = f"demo-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update(
        {
            "SHOPFLOW_HOME": str(tmp_path / "home"),
            "SHOPFLOW_SOURCE_DB_URL": f"postgresql://postgres@127.0.0.1:5432/{dbname}",
            "SHOPFLOW_ORDERS_API_PORT": str(free_port()),
            "SHOPFLOW_PUBSUB_EMULATOR_HOST": pubsub_emulator,
            "SHOPFLOW_EVENTS_TOPIC": topic,
            "SHOPFLOW_EVENTS_SUBSCRIPTION": f"{topic}-landing",
            "SHOPFLOW_ETL_ENGINE": os.environ.get("SHOPFLOW_TEST_DEMO_ENGINE", "duckdb"),
        }
    )
    yield env
    shopflow(env, "services", "down", "orders-api", timeout=60)
    with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def _normalised(metrics: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {
        name: sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)
        for name, rows in metrics.items()
    }


def test_demo_from_nothing_to_metrics(demo_env: dict[str, str]) -> None:
    result = shopflow(demo_env, "demo", "--events", str(EVENTS), "--seed", "7", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)

    dirt = report["dirt"]
    assert dirt["distinct_events"] == EVENTS
    assert dirt["duplicates_published"] > 0
    assert dirt["duplicates_removed"] >= dirt["duplicates_published"]
    assert dirt["late_published"] > 0 and dirt["events_outside_their_hour"] == 0
    assert dirt["malformed_published"] > 0
    assert dirt["dead_lettered"] >= dirt["malformed_published"]

    # What the demo printed is what the warehouse's views say.
    metrics = shopflow(demo_env, "metrics", "--json", timeout=120)
    assert metrics.returncode == 0, metrics.stderr
    assert _normalised(report["metrics"]) == _normalised(json.loads(metrics.stdout))
    traffic = report["metrics"]["metric_daily_traffic"]
    assert sum(row["events"] for row in traffic) == EVENTS


def test_demo_rejects_bad_options_in_one_line(demo_env: dict[str, str]) -> None:
    result = shopflow(demo_env, "demo", "--events", "5", timeout=60)
    assert result.returncode == 2
    assert "--events" in result.stderr
