"""gcp mode without a cloud: the Dataproc batch and the BigQuery load ids of an interval are the
same for a retry and differ between intervals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shopflow.orchestration.cloud import (
    bigquery_load_id,
    dataproc_batch,
    dataproc_batch_id,
    dataproc_request_id,
)
from shopflow.settings import Settings, load_settings

START = datetime(2026, 11, 25, 10, tzinfo=UTC)
END = START + timedelta(hours=1)


@pytest.fixture
def gcp(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SHOPFLOW_ORDERS_API_TOKEN", "not-the-default")
    return load_settings(
        profile="gcp",
        gcs_bucket="shop-lake",
        gcp_project="shop-prod-1",
        dataproc_service_account="etl@shop-prod-1.iam.gserviceaccount.com",
        dataproc_executor_cores=8,
        dataproc_max_executors=20,
    )


def ids(start: datetime, end: datetime) -> tuple[str, str, str]:
    args = ("shopflow_hourly", "etl", start, end)
    return (
        dataproc_batch_id(*args),
        dataproc_request_id(*args),
        bigquery_load_id("shopflow_hourly", "load", start, end),
    )


def test_a_retry_gets_the_same_ids_and_another_interval_other_ids() -> None:
    first = ids(START, END)
    assert ids(START, END) == first  # the retry of the same task and interval
    # The same hour written in another zone is the same interval.
    assert ids(START.astimezone(timezone(timedelta(hours=5, minutes=30))), END) == first
    later = ids(END, END + timedelta(hours=1))
    assert all(a != b for a, b in zip(first, later, strict=True))
    batch_id, request_id, _ = first
    assert re.fullmatch(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", batch_id), batch_id
    assert batch_id.startswith("shopflow-etl-20261125t1000-")
    assert len(request_id) <= 40


def test_the_rendered_batch_is_the_same_for_a_retry_and_names_its_interval(gcp: Settings) -> None:
    batch = dataproc_batch(gcp, START, END)
    assert dataproc_batch(gcp, START, END) == batch
    assert batch["pyspark_batch"]["args"] == [
        "--since",
        "2026-11-25T10:00:00+00:00",
        "--until",
        "2026-11-25T11:00:00+00:00",
    ]
    assert (
        batch["pyspark_batch"]["main_python_file_uri"] == "gs://shop-lake/artifacts/entrypoint.py"
    )
    # What `make dataproc-artifact` builds: Dataproc takes .py, .egg and .zip Python files.
    assert batch["pyspark_batch"]["python_file_uris"] == ["gs://shop-lake/artifacts/shopflow.zip"]
    properties = batch["runtime_config"]["properties"]
    assert properties["spark.executor.cores"] == "8"
    assert properties["spark.dynamicAllocation.maxExecutors"] == "20"
    assert properties["spark.dataproc.driverEnv.SHOPFLOW_LAKE_ROOT"] == "gs://shop-lake/lake"
    assert batch["environment_config"]["execution_config"]["service_account"].startswith("etl@")
    other = dataproc_batch(gcp, END, END + timedelta(hours=1))
    assert other["pyspark_batch"]["args"] != batch["pyspark_batch"]["args"]


def test_gcp_with_the_duckdb_engine_runs_the_etl_in_process_not_on_dataproc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.standard.operators.python import PythonOperator

    from shopflow.orchestration.airflow_tasks import etl_task

    monkeypatch.setenv("SHOPFLOW_ORDERS_API_TOKEN", "not-the-default")
    monkeypatch.setenv("SHOPFLOW_PROFILE", "gcp")
    monkeypatch.setenv("SHOPFLOW_GCS_BUCKET", "shop-lake")
    monkeypatch.setenv("SHOPFLOW_ETL_ENGINE", "duckdb")
    task = etl_task(timeout=timedelta(minutes=45))
    assert isinstance(task, PythonOperator)
    assert task.op_kwargs == {"step": "etl"}
