"""The gcp profile's jobs, named so that a retry finds the job it already started.

Every id derives from the DAG, the task and the data interval only: a retried task (or a re-run
of the same interval) submits the same Dataproc batch id and request id, which Dataproc answers
with the existing batch (the operator then waits on it) instead of starting a second one; the
BigQuery load of an interval runs under one load id, whose job ids are then deterministic too
(`BigQueryWarehouse(load_id=...)`). Two intervals never share an id.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from shopflow.settings import Settings

_NOT_ID = re.compile(r"[^a-z0-9-]+")


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dt%H%M")


def interval_key(dag_id: str, task_id: str, start: datetime, end: datetime) -> str:
    """A stable digest of (DAG, task, data interval)."""
    return _key(dag_id, task_id, start.astimezone(UTC).isoformat(), end.astimezone(UTC).isoformat())


def dataproc_batch_id(dag_id: str, task_id: str, start: datetime, end: datetime) -> str:
    """Dataproc Serverless batch id (4-63 of `[a-z0-9-]`, starting with a letter)."""
    readable = _NOT_ID.sub("-", f"shopflow-{task_id}-{_stamp(start)}".lower()).strip("-")
    return f"{readable[:50]}-{interval_key(dag_id, task_id, start, end)[:12]}"


def dataproc_request_id(dag_id: str, task_id: str, start: datetime, end: datetime) -> str:
    """The create request's id (at most 40 characters): a repeated request is a no-op."""
    return interval_key(dag_id, task_id, start, end)[:40]


def bigquery_load_id(dag_id: str, task_id: str, start: datetime, end: datetime) -> str:
    """The load id of an interval's warehouse load (its BigQuery job ids derive from it)."""
    return f"{dag_id}-{task_id}-{interval_key(dag_id, task_id, start, end)[:24]}"


def dataproc_batch(settings: Settings, start: datetime, end: datetime) -> dict[str, Any]:
    """The Dataproc Serverless batch that runs the ETL for [start, end) on Spark: the package's
    entry point with `--since/--until`, resources and artefacts from settings."""
    since, until = start.astimezone(UTC).isoformat(), end.astimezone(UTC).isoformat()
    environment = {
        "SHOPFLOW_PROFILE": "gcp",
        "SHOPFLOW_LAKE_ROOT": settings.lake_url,
        "SHOPFLOW_GCP_PROJECT": settings.gcp_project,
    }
    properties = {
        "spark.executor.cores": str(settings.dataproc_executor_cores),
        "spark.executor.memory": settings.dataproc_executor_memory,
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.dynamicAllocation.maxExecutors": str(settings.dataproc_max_executors),
        **{f"spark.dataproc.driverEnv.{k}": v for k, v in environment.items()},
        **{f"spark.executorEnv.{k}": v for k, v in environment.items()},
    }
    artefacts = (settings.dataproc_artifacts_uri or f"gs://{settings.gcs_bucket}/artifacts").rstrip(
        "/"
    )
    batch: dict[str, Any] = {
        "pyspark_batch": {
            "main_python_file_uri": f"{artefacts}/entrypoint.py",
            "python_file_uris": [f"{artefacts}/shopflow.zip"],
            "args": ["--since", since, "--until", until],
        },
        "runtime_config": {"version": settings.dataproc_runtime_version, "properties": properties},
        "labels": {"app": "shopflow", "interval": _stamp(start)},
    }
    if settings.dataproc_service_account:
        batch["environment_config"] = {
            "execution_config": {"service_account": settings.dataproc_service_account}
        }
    return batch
