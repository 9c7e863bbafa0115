"""The gcp profile's hourly ETL task: a Dataproc Serverless batch per data interval.

Imported only under the gcp profile (Cloud Composer ships the Google provider; the local
environment does not install it). The batch, its id and its request id are computed from the
interval when the task runs (`shopflow.orchestration.cloud`), so a retry of the task asks Dataproc
for the batch it already created: the operator finds it (409) and waits on it instead of running
the ETL a second time.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.google.cloud.operators.dataproc import DataprocCreateBatchOperator

from shopflow.orchestration.cloud import dataproc_batch, dataproc_batch_id, dataproc_request_id
from shopflow.settings import load_settings


class DataprocIntervalEtl(DataprocCreateBatchOperator):  # type: ignore[misc]
    """`DataprocCreateBatchOperator` with the batch and ids of the run's data interval."""

    def execute(self, context: Any) -> Any:
        start = context["data_interval_start"]
        end = context["data_interval_end"]
        dag_id, task_id = context["ti"].dag_id, context["ti"].task_id
        self.batch = dataproc_batch(load_settings(), start, end)
        self.batch_id = dataproc_batch_id(dag_id, task_id, start, end)
        self.request_id = dataproc_request_id(dag_id, task_id, start, end)
        return super().execute(context)
