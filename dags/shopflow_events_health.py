"""shopflow_events_health: alert when the landing consumer stops landing events."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from shopflow.orchestration.airflow_tasks import dag_settings, step_task

with DAG(
    dag_id="shopflow_events_health",
    schedule="*/5 * * * *",
    **dag_settings(timeout=timedelta(minutes=2), retries=2),
    tags=["shopflow", "monitoring"],
    doc_md="""
### Are events still arriving? Every 5 minutes

`events_freshness` reads when the landing consumer last wrote a batch (the newest `ingest_ts` in
`raw/events/`) and fails when that is older than `SHOPFLOW_EVENTS_STALE_AFTER_SECONDS` (default
15 min), or when the landing consumer group's lag on Kafka exceeds
`SHOPFLOW_EVENTS_MAX_BACKLOG`. The failure sends one "stale events" alert per stall: later checks of the same stall stay
quiet, and the first fresh check closes the incident so the next stall alerts again.

* Retries 2 (a check is cheap); timeout 2 min; no catch-up (only now matters).
""",
):
    step_task("events_freshness", timeout=timedelta(minutes=2))
