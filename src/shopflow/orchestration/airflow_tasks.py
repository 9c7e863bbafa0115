"""What the DAG files in `dags/` are made of: the tasks that run a step, the failure notifier,
the deadline callback and the shared defaults. Only this module (and `dags/`) imports Airflow.

Every task runs one function of `shopflow.orchestration.steps`, records its duration and rows in
the run history, alerts once when it was slow, and returns the step's record (XCom). A task that
fails for good sends one failure alert (`on_failure_callback`; retries before that stay quiet).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import BaseNotifier, BaseOperator

from shopflow.settings import Profile, Settings, load_settings

if TYPE_CHECKING:
    from shopflow.orchestration.steps import StepResult

# The steps, alerts and history (pyarrow, the lake, the engines) are imported when a task runs,
# not when a DAG file is parsed: the DAG processor parses every file every few seconds.

log = logging.getLogger("shopflow.orchestration")

#: The pool of tasks that write the lake or the warehouse: one slot, so two DAG runs queue
#: instead of one of them failing on the writer lock and burning a retry.
WRITER_POOL: Final = "shopflow_lake_writer"
OWNER: Final = "shopflow"
#: The ETL's task id; the gate and the load read the dates it touched from its XCom.
ETL_TASK: Final = "etl"
STALE_EVENTS_INCIDENT: Final = "events stale"


def _interval(context: Any) -> tuple[datetime, datetime]:
    start = context.get("data_interval_start") or context["logical_date"]
    end = context.get("data_interval_end") or start
    return start.astimezone(UTC), end.astimezone(UTC)


def _etl_dates(context: Any) -> list[str]:
    record = context["ti"].xcom_pull(task_ids=ETL_TASK) or {}
    return list(record.get("dates", []))


def _is_backfill(context: Any) -> bool:
    run = context.get("dag_run")
    return str(getattr(run, "run_type", "")).lower().endswith("backfill")


#: The steps a task can run (`run_step`'s `step`).
STEPS: Final = (
    "pull_orders",
    "pull_catalog",
    "etl",
    "quality_gate",
    "load",
    "check_metric_views",
    "events_freshness",
)


def _run(step: str, settings: Settings, context: Any) -> StepResult:
    from shopflow.orchestration import steps
    from shopflow.orchestration.alerts import resolve_incident

    if step == "pull_orders":
        return steps.pull_orders(settings)
    if step == "pull_catalog":
        return steps.pull_catalog(settings)
    if step == "etl":
        start, end = _interval(context)
        return steps.run_interval_etl(
            settings, start, end, catch_up_new_data=not _is_backfill(context)
        )
    if step == "quality_gate":
        return steps.quality_gate(settings, _etl_dates(context))
    if step == "load":
        from shopflow.orchestration.cloud import bigquery_load_id

        ti = context["ti"]
        load_id = bigquery_load_id(ti.dag_id, ti.task_id, *_interval(context))
        return steps.load_dates(settings, _etl_dates(context), load_id=load_id)
    if step == "check_metric_views":
        return steps.check_metric_views(settings)
    if step == "events_freshness":
        result = steps.events_freshness(settings)  # raises when stale: the failure alert says so
        resolve_incident(settings, STALE_EVENTS_INCIDENT)
        return result
    raise ValueError(f"unknown step {step!r}; known: {', '.join(STEPS)}")


def run_step(step: str, **context: Any) -> dict[str, Any]:
    """Run `step` for the task's interval; record it; alert once if it was slow."""
    from shopflow.orchestration.alerts import Alert, send_alert
    from shopflow.orchestration.history import check_slowness, record_run

    settings = load_settings()
    started = time.monotonic()
    result = _run(step, settings, context).as_dict()
    seconds = time.monotonic() - started
    ti = context["ti"]
    interval_start, _ = _interval(context)
    slow = check_slowness(settings, ti.dag_id, ti.task_id, interval_start, seconds)
    record_run(settings, ti.dag_id, ti.task_id, interval_start, seconds, result)
    if slow is not None:
        send_alert(
            settings,
            Alert(
                kind="slowness",
                title=f"{ti.dag_id}.{ti.task_id} took {slow.seconds:,.1f} s, "
                f"{slow.seconds / max(slow.median_seconds, 0.001):,.1f}x its median",
                incident=f"slow {ti.dag_id} {ti.task_id} {context['run_id']}",
                fields={
                    "interval": _interval_text(context),
                    "median of last runs": f"{slow.median_seconds:,.1f} s over {slow.runs} runs",
                    "threshold": f"{slow.factor:g}x median",
                },
                link=getattr(ti, "log_url", None),
            ),
        )
    return result | {"seconds": round(seconds, 3)}


def _interval_text(context: Any) -> str:
    start, end = _interval(context)
    # Trigger timetables (the 10-, 30- and 5-minute DAGs) have no interval, only a time.
    return start.isoformat() if start == end else f"{start.isoformat()} to {end.isoformat()}"


def inputs_landed(**context: Any) -> bool:
    """The hourly DAG's sensor: has the landing written past the end of the interval?"""
    from shopflow.orchestration import steps

    _, end = _interval(context)
    try:
        steps.check_inputs_landed(load_settings(), end)
    except steps.InputsNotReadyError as exc:
        log.info("%s", exc)
        return False
    return True


def _last_line(error: BaseException | str | None) -> str:
    text = str(error or "").strip()
    return text.splitlines()[-1][:500] if text else type(error).__name__


class FailureAlert(BaseNotifier):
    """Sends one alert when a task fails for good: DAG, task, interval, try, error, log link."""

    def notify(self, context: Any) -> None:
        from shopflow.orchestration.alerts import Alert, send_alert

        ti = context["ti"]
        settings = load_settings()
        stale = ti.task_id == "events_freshness"
        send_alert(
            settings,
            Alert(
                kind="stale events" if stale else "failure",
                title=f"{ti.dag_id}.{ti.task_id} failed",
                # A stall stays one incident across health checks until events flow again.
                incident=STALE_EVENTS_INCIDENT
                if stale
                else f"failure {ti.dag_id} {ti.task_id} {context['run_id']}",
                fields={
                    "dag": ti.dag_id,
                    "task": ti.task_id,
                    "interval": _interval_text(context),
                    "try": str(ti.try_number),
                    "error": _last_line(context.get("exception")),
                },
                link=getattr(ti, "log_url", None),
            ),
        )


def deadline_missed(context: Any = None, **kwargs: Any) -> None:
    """Deadline Alert callback: the whole DAG run did not finish in time."""
    from shopflow.orchestration.alerts import Alert, send_alert

    run = (context or {}).get("dag_run")
    dag_id = getattr(run, "dag_id", kwargs.get("dag_id", "?"))
    run_id = getattr(run, "run_id", "?")
    send_alert(
        load_settings(),
        Alert(
            kind="deadline missed",
            title=f"{dag_id} run {run_id} missed its deadline",
            incident=f"deadline {dag_id} {run_id}",
            fields={
                "dag": str(dag_id),
                "run": str(run_id),
                **{k: str(v) for k, v in kwargs.items()},
            },
        ),
    )


def dag_settings(*, timeout: timedelta, retries: int = 3) -> dict[str, Any]:
    """What every shopflow DAG shares: start date, no catch-up (a backfill is asked for
    explicitly), one active run, the owner and the task defaults."""
    return {
        "start_date": datetime(2026, 1, 1, tzinfo=UTC),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": default_args(timeout=timeout) | {"retries": retries},
        "owner_links": {OWNER: "https://github.com/shopflow/shopflow"},
    }


def default_args(*, timeout: timedelta) -> dict[str, Any]:
    """Task defaults: exponential retries, a timeout, the owner and the failure alert."""
    return {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timeout,
        "on_failure_callback": [FailureAlert()],
    }


def step_task(
    step: str, *, timeout: timedelta, pool: str | None = None, **kwargs: Any
) -> PythonOperator:
    """A task running `step` (a key of `STEPS`); its task id is the step's name."""
    extra: dict[str, Any] = {"pool": pool} if pool else {}
    return PythonOperator(
        task_id=step,
        python_callable=run_step,
        op_kwargs={"step": step},
        execution_timeout=timeout,
        **extra,
        **kwargs,
    )


def etl_task(*, timeout: timedelta) -> BaseOperator:
    """The hourly ETL: a Dataproc Serverless batch whose ids derive from the interval when the
    gcp profile runs Spark (Composer has the Google provider); otherwise in-process on the worker
    with the configured engine (the local profile, or gcp with `SHOPFLOW_ETL_ENGINE=duckdb`)."""
    settings = load_settings()
    if settings.profile is not Profile.GCP or settings.etl_engine != "spark":
        return step_task(ETL_TASK, timeout=timeout, pool=WRITER_POOL)
    from shopflow.orchestration.dataproc_etl import DataprocIntervalEtl

    return DataprocIntervalEtl(
        task_id=ETL_TASK,
        region=settings.dataproc_region,
        project_id=settings.gcp_project,
        execution_timeout=timeout,
        pool=WRITER_POOL,
    )


def inputs_sensor(*, timeout: timedelta) -> PythonSensor:
    """Waits (rescheduling, so it holds no worker slot) until the interval's events landed."""
    return PythonSensor(
        task_id="wait_for_landed_events",
        python_callable=inputs_landed,
        mode="reschedule",
        poke_interval=60,
        timeout=timeout.total_seconds(),
        execution_timeout=timeout,
    )
