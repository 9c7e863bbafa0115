"""Run history: each scheduled task's duration and rows in/out per data interval, and whether a
run was slow against the median of the task's recent successful runs.

Kept in the lake under `_state/run_history/<dag>/<task>/<interval>.json`, one small record per
run, written atomically: the same code on a local lake and on GCS, readable without Airflow, and
outside the DuckDB warehouse file, which has one writer at a time and is replaced whole by each
load. (Airflow 3 tasks cannot reach Airflow's metadata database, and Airflow's own durations do
not carry rows in and out.)
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from shopflow.lake import LakeLayout, list_data_files, resolve, write_json_atomic
from shopflow.settings import Settings

_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One successful run of a scheduled task."""

    dag_id: str
    task_id: str
    interval_start: str
    seconds: float
    rows_in: int
    rows_out: int
    finished_at: str


@dataclass(frozen=True, slots=True)
class Slowness:
    """A run slower than `factor` times the median of `runs` earlier successful runs."""

    seconds: float
    median_seconds: float
    factor: float
    runs: int


def _folder(settings: Settings, dag_id: str, task_id: str) -> str:
    root = LakeLayout.from_settings(settings).state_root()
    return f"{root}/run_history/{_NAME.sub('_', dag_id)}/{_NAME.sub('_', task_id)}"


def _token(interval_start: datetime) -> str:
    return interval_start.astimezone(UTC).strftime("%Y%m%dT%H%M%S")


def record_run(
    settings: Settings,
    dag_id: str,
    task_id: str,
    interval_start: datetime,
    seconds: float,
    result: dict[str, Any],
) -> TaskRun:
    """Record a successful run (a re-run of the same interval replaces its record)."""
    run = TaskRun(
        dag_id=dag_id,
        task_id=task_id,
        interval_start=interval_start.astimezone(UTC).isoformat(),
        seconds=round(seconds, 3),
        rows_in=int(result.get("rows_in", 0)),
        rows_out=int(result.get("rows_out", 0)),
        finished_at=datetime.now(UTC).isoformat(),
    )
    url = f"{_folder(settings, dag_id, task_id)}/{_token(interval_start)}.json"
    write_json_atomic(asdict(run), url)
    return run


def recent_runs(
    settings: Settings, dag_id: str, task_id: str, before: datetime, limit: int
) -> list[TaskRun]:
    """Up to `limit` recorded runs of the task for intervals before `before`, newest last."""
    cutoff = f"{_token(before)}.json"
    files = list_data_files(_folder(settings, dag_id, task_id), suffix=".json")
    chosen = [f for f in files if f.url.rsplit("/", 1)[-1] < cutoff][-limit:]
    runs = []
    for record in chosen:
        fs, path = resolve(record.url)
        with fs.open(path, "rb") as handle:
            runs.append(TaskRun(**json.loads(handle.read())))
    return runs


def check_slowness(
    settings: Settings, dag_id: str, task_id: str, interval_start: datetime, seconds: float
) -> Slowness | None:
    """A `Slowness` when this run took more than `alert_slowness_factor` times the median of the
    task's last `alert_slowness_history_runs` runs (at least three needed), else None."""
    runs = recent_runs(
        settings, dag_id, task_id, interval_start, settings.alert_slowness_history_runs
    )
    if len(runs) < 3:
        return None
    median = statistics.median(r.seconds for r in runs)
    if seconds <= settings.alert_slowness_factor * max(median, 0.001):
        return None
    return Slowness(seconds, median, settings.alert_slowness_factor, len(runs))
