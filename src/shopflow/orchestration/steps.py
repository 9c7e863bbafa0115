"""The pipeline's scheduled steps as plain functions: what the Airflow DAGs' tasks call.

Each step takes the settings (and the run's data interval where it has one), does one thing
through the package's own functions, and returns a small JSON-able record of what it did (rows in
and out) for the run history. Nothing here imports Airflow, so every step runs and is tested
without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.compute as pc

from shopflow.errors import ShopflowError
from shopflow.lake import LakeLayout, list_data_files, read_dataset
from shopflow.quality.results import QualityGateError as QualityGateError  # the gate's error
from shopflow.settings import Settings


class InputsNotReadyError(ShopflowError):
    """The landing has not yet landed what an interval needs."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did: rows read and written, and the event dates it touched."""

    rows_in: int = 0
    rows_out: int = 0
    dates: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form (Airflow XCom, run history)."""
        return asdict(self) | {"dates": list(self.dates)}


def interval_dates(start: datetime, end: datetime) -> tuple[date, ...]:
    """The UTC event dates that the hours of [start, end) fall on."""
    first = start.astimezone(UTC)
    last = (end.astimezone(UTC) - timedelta(microseconds=1)) if end > start else first
    days = (last.date() - first.date()).days
    return tuple(first.date() + timedelta(days=n) for n in range(days + 1))


def pull_orders(settings: Settings) -> StepResult:
    """Pull order lines changed since the watermark from the orders API into the raw zone."""
    from shopflow.ingest.orders import ingest_orders

    report = ingest_orders(settings)
    return StepResult(
        rows_in=report.read, rows_out=report.written, detail={"summary": report.summary()}
    )


def pull_catalog(settings: Settings) -> StepResult:
    """Pull changed products and users from the shop database into the raw zone."""
    from shopflow.ingest.catalog import ingest_catalog

    reports = ingest_catalog(None, settings)
    return StepResult(
        rows_in=sum(r.read for r in reports),
        rows_out=sum(r.written for r in reports),
        detail={r.source: r.summary() for r in reports},
    )


def landed_through(settings: Settings) -> datetime | None:
    """When the landing last wrote a batch: the newest `ingest_ts` in the newest raw event file.

    The newest file, not the newest event hour: late events land in older hours.
    """
    layout = LakeLayout.from_settings(settings)
    files = list_data_files(layout.events_root())
    if not files:
        return None
    newest = max(files, key=lambda f: f.mtime)
    table = read_dataset([newest.url.rsplit("/", 1)[0]], columns=["ingest_ts"])
    value = pc.max(table.column("ingest_ts")).as_py() if table.num_rows else None
    return None if value is None else value.astimezone(UTC)


def check_inputs_landed(settings: Settings, interval_end: datetime) -> StepResult:
    """Succeed once the landing has written a batch at or after `interval_end`: the events of
    the interval that were on the bus by then are in the raw zone."""
    through = landed_through(settings)
    if through is None or through < interval_end.astimezone(UTC):
        seen = through.isoformat() if through else "nothing landed yet"
        raise InputsNotReadyError(
            f"events landed through {seen}, not yet {interval_end.astimezone(UTC).isoformat()}"
        )
    return StepResult(detail={"landed_through": through.isoformat()})


def run_interval_etl(
    settings: Settings, start: datetime, end: datetime, *, catch_up_new_data: bool = True
) -> StepResult:
    """Recompute the event dates of [start, end) whole, plus (scheduled runs) any date that got
    new raw data since the last run; a backfill run recomputes only its own dates, like
    `shopflow backfill`."""
    from shopflow.transform.engine import open_etl_session, stopping
    from shopflow.transform.jobs import EtlRequest, run_etl

    dates = interval_dates(start, end)
    label = f"{start.astimezone(UTC):%Y-%m-%dT%H} to {end.astimezone(UTC):%Y-%m-%dT%H}"
    request = EtlRequest(dates, incremental=catch_up_new_data, label=label)
    with stopping(open_etl_session(settings, app_name="shopflow-airflow")) as session:
        run = run_etl(session, settings, request)
    return StepResult(
        rows_in=run.rows.get("events_clean", 0) + run.rejected_events,
        rows_out=sum(run.rows.values()),
        dates=tuple(d.isoformat() for d in run.dates),
        detail={"quarantined": len(run.quarantined), "rejected_events": run.rejected_events},
    )


def quality_gate(settings: Settings, dates: Sequence[str]) -> StepResult:
    """Run the data-quality checks (`shopflow.quality`) over what the ETL wrote for `dates`,
    append their results to `quality_results`, and raise `QualityGateError` (one line naming the
    first failed error check and its count) when an error-severity check failed: then the load
    task does not run."""
    from shopflow.quality import check_and_record

    days = [date.fromisoformat(d) for d in dates]
    if not days:
        return StepResult(detail={"checked": []})
    report = check_and_record(settings, days)
    return StepResult(
        rows_in=len(report.results),
        dates=tuple(dates),
        detail={
            "checked": sorted({r.check_name for r in report.results}),
            "warnings": [r.line() for r in report.warnings],
        },
    )


def load_dates(
    settings: Settings, dates: Sequence[str], *, load_id: str | None = None
) -> StepResult:
    """Load the curated partitions of `dates` (and the whole snapshot tables) into the warehouse;
    this also re-creates the metric views. `load_id`: see `load_warehouse`."""
    from shopflow.metrics import load_warehouse

    days = [date.fromisoformat(d) for d in dates]
    if not days:
        return StepResult(detail={"loaded": "nothing: the ETL touched no date"})
    report = load_warehouse(settings, dates=days, load_id=load_id, recomputed=True)
    return StepResult(
        rows_in=report.rows,
        rows_out=report.rows,
        dates=tuple(dates),
        detail={t.table: t.rows for t in report.tables},
    )


def check_metric_views(settings: Settings) -> StepResult:
    """Read every metric view back from the warehouse (they must compute after a load)."""
    from shopflow.metrics.results import fetch_metrics

    metrics = fetch_metrics(settings)
    rows = sum(len(r) for r in metrics.values())
    return StepResult(rows_out=rows, detail={name: len(r) for name, r in metrics.items()})


def events_freshness(
    settings: Settings, now: datetime | None = None, *, with_backlog: bool = True
) -> StepResult:
    """How long ago the landing last wrote a batch, against `events_stale_after_seconds`, and how
    many events wait on the bus (where it says), against `events_max_backlog`.

    Raises `InputsNotReadyError` when either is over its threshold (the caller alerts).
    """
    from shopflow.sources.bus.factory import landing_backlog

    now = now or datetime.now(UTC)
    through = landed_through(settings)
    age = None if through is None else (now - through).total_seconds()
    backlog = landing_backlog(settings) if with_backlog else None
    detail = {
        "landed_through": through.isoformat() if through else None,
        "age_seconds": age,
        "backlog": backlog,
    }
    if backlog is not None and backlog > settings.events_max_backlog:
        raise InputsNotReadyError(
            f"events are backing up: {backlog:,} wait on the bus for the landing consumer "
            f"(threshold SHOPFLOW_EVENTS_MAX_BACKLOG={settings.events_max_backlog:,})"
        )
    if age is None or age > settings.events_stale_after_seconds:
        what = "nothing has landed yet" if age is None else f"nothing landed for {age:,.0f} s"
        raise InputsNotReadyError(
            f"events are stale: {what} (threshold SHOPFLOW_EVENTS_STALE_AFTER_SECONDS="
            f"{settings.events_stale_after_seconds:g})"
        )
    return StepResult(detail=detail)
