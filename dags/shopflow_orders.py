"""shopflow_orders: pull the orders API every 10 minutes."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset

from shopflow.orchestration.airflow_tasks import dag_settings, step_task

with DAG(
    dag_id="shopflow_orders",
    schedule="*/10 * * * *",
    **dag_settings(timeout=timedelta(minutes=8)),
    tags=["shopflow", "ingest"],
    doc_md="""
### Orders from the orders API, every 10 minutes

One task, `pull_orders`: every order line changed since the watermark in `_state/`, read page by
page (retries with backoff on 5xx, 429 and timeouts), written to `raw/orders/` as one file; then
the watermark advances. Safe to retry or re-run: the pull re-reads from the watermark with an
overlap and the ETL keeps the latest version of each (order, product) line.

* `max_active_runs=1`: two pulls at once would both advance the same watermark.
* No catch-up: a pull always covers everything since the last one, whatever the interval.
* Timeout 8 min (under the 10-min cadence); 3 retries, exponential backoff.
""",
):
    step_task(
        "pull_orders",
        timeout=timedelta(minutes=8),
        outlets=[Asset("shopflow_raw_orders")],
        doc_md="`shopflow ingest orders`",
    )
