"""`shopflow_hourly` end to end with `dag.test()` on simulator data, and its alerts."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from bench._faults.common import warehouse_tables
from bench.etl_engines import RawZone, write_raw_zone

from shopflow.orchestration.history import record_run
from shopflow.settings import Settings
from tests.orchestration.conftest import DAGS
from tests.orchestration.receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

#: An hour inside the simulated raw zone (which starts 2026-11-01 and spans two days).
HOUR = datetime(2026, 11, 1, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def raw_zone(tmp_path_factory: pytest.TempPathFactory) -> RawZone:
    lake = tmp_path_factory.mktemp("hourly-raw") / "lake"
    return write_raw_zone(lake, 6000, seed=11, days=2, initial_users=200)


@pytest.fixture
def home(
    raw_zone: RawZone, settings: Settings, monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> Path:
    """SHOPFLOW_HOME for the tasks (they read settings from the environment) with the raw zone."""
    shutil.copytree(raw_zone.lake, settings.home / "lake")
    monkeypatch.setenv("SHOPFLOW_HOME", str(settings.home))
    return settings.home


def hourly_dag() -> Any:
    dag = DagBag(dag_folder=str(DAGS / "shopflow_hourly.py")).dags.get("shopflow_hourly")
    assert dag is not None and dag.deadline
    # Airflow 3.3.2's dag.test() cannot finish a run of a DAG with a Deadline Alert (it looks
    # the alert up by a dict where the serialized DAG has its id); the scheduler handles it.
    dag.deadline = None
    return dag


def states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_the_hourly_dag_twice_for_one_hour_gives_the_same_warehouse(home: Path) -> None:
    dag = hourly_dag()
    first = dag.test(logical_date=HOUR)
    assert str(first.state) == "success", states(first)
    loaded = warehouse_tables(home)
    assert loaded["user_behavior"].num_rows > 0
    second = dag.test(logical_date=HOUR, run_after=HOUR + timedelta(minutes=1))
    assert str(second.state) == "success", states(second)
    again = warehouse_tables(home)
    assert again.keys() == loaded.keys()
    for name, table in loaded.items():
        assert again[name].equals(table), name
    history = sorted((home / "lake" / "_state" / "run_history" / "shopflow_hourly").iterdir())
    assert [p.name for p in history] == sorted(
        ["check_metric_views", "etl", "load", "quality_gate"]
    )


def test_a_failure_and_a_slowdown_each_send_exactly_one_alert(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("SHOPFLOW_ALERT_WEBHOOK_URL", receiver.url)
        dag = hourly_dag()
        # Slowdown: a history in which this hour's ETL took a fifth of what it takes now.
        for n in range(5):
            record_run_for(home, "etl", HOUR - timedelta(hours=n + 1), 0.001)
        slow = dag.test(logical_date=HOUR)
        assert str(slow.state) == "success", states(slow)
        kinds = [a["text"].split("]")[0] for a in receiver.received]
        assert kinds == ["[shopflow slowness"], receiver.received
        # Failure: the warehouse cannot be written (a directory where its file should be); the
        # first task to write it is the quality gate (its results), so the load never runs.
        receiver.received.clear()
        for task in dag.tasks:  # the DAG's own retries, seconds apart instead of minutes
            task.retry_delay = timedelta(seconds=1)
            task.max_retry_delay = timedelta(seconds=2)
        (home / "warehouse.duckdb").unlink()
        (home / "warehouse.duckdb").mkdir()
        failed = dag.test(
            logical_date=HOUR + timedelta(hours=1), run_after=HOUR + timedelta(hours=1)
        )
        assert str(failed.state) == "failed", states(failed)
        assert states(failed)["quality_gate"] == "failed"
        assert states(failed)["load"] == "upstream_failed"
        failures = [a for a in receiver.received if a["text"].startswith("[shopflow failure]")]
        assert len(failures) == 1, receiver.received
        text = failures[0]["text"]
        # A manual run at 11:00 covers the hour that just ended.
        assert "shopflow_hourly.quality_gate failed" in text
        assert "interval: 2026-11-01T10:00:00" in text
        assert "try: 4" in text  # after its three retries, which alerted nothing
        assert "error: cannot read the warehouse" in text and "log: http" in text


def record_run_for(home: Path, task: str, interval_start: datetime, seconds: float) -> None:
    from shopflow.settings import load_settings

    record_run(load_settings(home=home), "shopflow_hourly", task, interval_start, seconds, {})
