"""DAG integrity: every DAG in dags/ imports cleanly and is set up as the README says."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag

from shopflow.settings import Settings
from tests.orchestration.conftest import DAGS

SCHEDULES = {
    "shopflow_orders": "*/10 * * * *",
    "shopflow_catalog": "*/30 * * * *",
    "shopflow_hourly": "0 * * * *",
    "shopflow_events_health": "*/5 * * * *",
}
HEAVY = ("pyarrow", "duckdb", "pyspark", "sqlframe", "pandas", "google.cloud", "streamlit")


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_every_dag_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(SCHEDULES)


@pytest.mark.parametrize("dag_id", sorted(SCHEDULES))
def test_schedule_retries_timeouts_tags_and_docs(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags.get(dag_id)
    assert dag is not None
    assert getattr(dag.timetable, "expression", None) == SCHEDULES[dag_id]
    if dag_id == "shopflow_hourly":  # each run owns one hour of data
        assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.max_active_runs == 1
    assert "shopflow" in dag.tags and len(dag.tags) >= 2
    assert dag.doc_md and len(dag.doc_md) > 200
    assert dag.owner == "shopflow"
    for task in dag.tasks:
        assert (task.retries or 0) >= 2, task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.execution_timeout <= timedelta(hours=1), task.task_id
        if task.task_id != "wait_for_landed_events":
            assert task.on_failure_callback, task.task_id
            assert task.retry_exponential_backoff, task.task_id


def test_hourly_runs_etl_then_gate_then_load_then_views(dagbag: DagBag) -> None:
    dag = dagbag.dags.get("shopflow_hourly")
    assert dag is not None
    order = [t.task_id for t in dag.topological_sort()]  # type: ignore[no-untyped-call]
    assert order == [
        "wait_for_landed_events",
        "etl",
        "quality_gate",
        "load",
        "check_metric_views",
    ]
    writers = {t.task_id for t in dag.tasks if t.pool == "shopflow_lake_writer"}
    assert writers == {"etl", "load"}
    assert dag.deadline, "no Deadline Alert on the hourly DAG"


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_parsing_a_dag_file_imports_nothing_heavy(dag_file: str) -> None:
    probe = (
        "import json, runpy, sys; "
        f"runpy.run_path({str(DAGS / dag_file)!r}); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_hourly_sensor_waits_while_events_have_not_landed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shopflow.orchestration.airflow_tasks import inputs_landed

    monkeypatch.setenv("SHOPFLOW_HOME", str(settings.home))
    hour = datetime(2026, 11, 5, 10, tzinfo=UTC)
    # An empty lake: not landed yet, so the sensor says "not yet" rather than failing the try.
    assert (
        inputs_landed(data_interval_start=hour, data_interval_end=hour + timedelta(hours=1))
        is False
    )
