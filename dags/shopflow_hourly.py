"""shopflow_hourly: ETL of the hour's dates, quality gate, warehouse load, metric views."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronDataIntervalTimetable, chain
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from shopflow.orchestration.airflow_tasks import (
    WRITER_POOL,
    dag_settings,
    etl_task,
    inputs_sensor,
    step_task,
)

with DAG(
    dag_id="shopflow_hourly",
    # A data-interval timetable: each run owns the hour [logical date, +1 h) (Airflow 3's cron
    # default has no interval).
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    **dag_settings(timeout=timedelta(minutes=45)),
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=55),
        callback=SyncCallback("shopflow.orchestration.airflow_tasks.deadline_missed"),
    ),
    tags=["shopflow", "etl", "warehouse"],
    doc_md="""
### The hourly batch: lake → curated zone → warehouse

For the run's data interval (one hour, UTC):

1. `wait_for_landed_events`: waits until the landing consumer has written a batch after the
   interval's end, so the hour's events on the bus are in the raw zone (reschedule mode: no worker
   slot held while waiting; gives up after 30 min and alerts).
2. `etl`: recomputes the event date(s) of the interval whole on the configured engine, plus any
   date with new raw data since the last run (late events). A backfill run
   (`airflow dags backfill`) recomputes only its own dates, as `shopflow backfill` does.
3. `quality_gate`: the data-quality checks (`shopflow.quality`, docs/quality.md: unique keys,
   required columns, accepted values, catalogue relationships, hourly volume, reconciliation,
   freshness) over the dates the ETL wrote; every result is appended to `quality_results`. A
   failed error check stops here, naming the check and its count: nothing is loaded.
4. `load`: those dates (and the snapshot tables) into the warehouse, in one transaction, and the
   metric views re-created.
5. `check_metric_views`: every metric view is read back.

* `max_active_runs=1` and the one-slot pool `shopflow_lake_writer` (ETL and load): the lake and
  the warehouse have one writer at a time (the writer lock refuses a second one anyway; the pool
  makes it wait instead of failing a try).
* Retries (3, exponential backoff) are safe: every step replaces whole partitions.
* Deadline Alert: a run not finished 55 min after it was queued alerts once.
""",
):
    chain(
        inputs_sensor(timeout=timedelta(minutes=30)),
        etl_task(timeout=timedelta(minutes=45)),
        step_task("quality_gate", timeout=timedelta(minutes=10)),
        step_task("load", timeout=timedelta(minutes=20), pool=WRITER_POOL),
        step_task("check_metric_views", timeout=timedelta(minutes=5)),
    )
