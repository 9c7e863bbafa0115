"""shopflow_catalog: pull products and users from the shop database every 30 minutes."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset

from shopflow.orchestration.airflow_tasks import dag_settings, step_task

with DAG(
    dag_id="shopflow_catalog",
    schedule="*/30 * * * *",
    **dag_settings(timeout=timedelta(minutes=20)),
    tags=["shopflow", "ingest"],
    doc_md="""
### Products and users from the shop's PostgreSQL, every 30 minutes

One task, `pull_catalog`: the rows of `products` and `users` (and tombstones of deleted ones)
written by transactions at or above each table's transaction-id watermark, into `raw/products/`
and `raw/users/`; then each watermark rises to the oldest transaction still open during the pull,
so a long transaction's rows arrive in the pull after it commits. A retry re-reads from the same
watermark and skips rows already landed; the ETL keeps one row per key.

* `max_active_runs=1`: one writer per watermark.
* No catch-up: each pull covers everything since the previous one.
* Timeout 20 min; 3 retries, exponential backoff.
""",
):
    step_task(
        "pull_catalog",
        timeout=timedelta(minutes=20),
        outlets=[Asset("shopflow_raw_catalog")],
        doc_md="`shopflow ingest catalog`",
    )
