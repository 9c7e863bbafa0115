"""Running the checks, recording their results, and the gate in front of every load."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime

from shopflow.lake import LakeLayout, list_partitions
from shopflow.metrics import load_warehouse
from shopflow.quality.curated import event_partitions, open_curated
from shopflow.quality.reconciliation import reconciliation
from shopflow.quality.results import CheckResult, QualityGateError, QualityReport, Severity
from shopflow.quality.table_checks import (
    accepted_values,
    not_null,
    relationships,
    row_counts_match,
    unique_keys,
)
from shopflow.quality.timeliness import freshness, volume
from shopflow.settings import Settings
from shopflow.warehouse import LoadReport, Warehouse, append_history

#: The dated curated tables whose dates `curated_dates` lists.
_DATED_TABLES = ("events_clean", "user_behavior", "orders_enriched", "order_reconciliation")


def curated_dates(settings: Settings) -> list[date]:
    """Every date the curated zone has a partition of (what a load of everything loads)."""
    layout = LakeLayout.from_settings(settings)
    found = {
        p.date
        for table in _DATED_TABLES
        for p in list_partitions(layout.curated_root(table))
        if p.date is not None
    }
    return sorted(found)


def accept_volume_drops(
    results: Iterable[CheckResult], accepted: Collection[date]
) -> list[CheckResult]:
    """`results` with each failed `volume` check of an `accepted` date made `overridden`: a
    deliberate deletion or backfill shrank that date, and the operator said so for this run."""
    out = []
    for result in results:
        if result.check_name == "volume" and not result.passed and result.partition in accepted:
            result = replace(
                result,
                severity=Severity.OVERRIDDEN,
                detail=f"accepted by --accept-volume-drop (an error otherwise): {result.detail}",
            )
        out.append(result)
    return out


def run_checks(
    settings: Settings,
    dates: Iterable[date],
    *,
    now: datetime | None = None,
    accept_volume_drop: Collection[date] = (),
) -> QualityReport:
    """Every check over the curated partitions of `dates` (and the snapshot tables); reads the
    lake only. No date: nothing is checked. A failed volume check of a date in
    `accept_volume_drop` is recorded as `overridden` and stops nothing."""
    days = tuple(sorted(set(dates)))
    run_ts = (now or datetime.now(UTC)).astimezone(UTC)
    if not days:
        return QualityReport(run_ts, days, ())
    layout = LakeLayout.from_settings(settings)
    partitions = event_partitions(layout)
    with open_curated(layout, days) as data:
        results = [
            *unique_keys(data),
            *not_null(data),
            *accepted_values(data),
            *row_counts_match(data),
            *relationships(data, settings.quality_max_unknown_share),
            *reconciliation(data, settings.quality_reconciliation_tolerance),
        ]
    results.append(freshness(partitions, run_ts, settings.quality_freshness_max_age_seconds))
    results.extend(
        volume(
            partitions,
            days,
            settings.quality_volume_min_ratio,
            settings.quality_volume_history_days,
            settings.quality_volume_min_median_events,
        )
    )
    return QualityReport(run_ts, days, tuple(accept_volume_drops(results, accept_volume_drop)))


def record_results(
    settings: Settings, report: QualityReport, *, warehouse: Warehouse | None = None
) -> int:
    """Append the report's results to `quality_results` in the warehouse; rows appended."""
    if not report.results:
        return 0
    return append_history(settings, "quality_results", report.to_arrow(), warehouse=warehouse)


def check_and_record(
    settings: Settings,
    dates: Iterable[date],
    *,
    now: datetime | None = None,
    warehouse: Warehouse | None = None,
    accept_volume_drop: Collection[date] = (),
) -> QualityReport:
    """Run the checks and record their results; raise `QualityGateError` (one line naming the
    first failed error check and its count) when an error-severity check failed. The results are
    recorded either way. `accept_volume_drop`: see `run_checks`."""
    report = run_checks(settings, dates, now=now, accept_volume_drop=accept_volume_drop)
    record_results(settings, report, warehouse=warehouse)
    if report.errors:
        raise QualityGateError(report.failure_message())
    return report


def gated_load(
    settings: Settings,
    dates: Sequence[date] | None = None,
    tables: Sequence[str] | None = None,
    *,
    warehouse: Warehouse | None = None,
    load_id: str | None = None,
    accept_volume_drop: Collection[date] = (),
) -> tuple[QualityReport, LoadReport]:
    """The checks over `dates` (default: every curated date), then, if no error check failed,
    `load_warehouse` of those dates. Both under the lake's writer lock, so what was checked is
    what is loaded. A failed gate raises `QualityGateError` and loads nothing. A volume drop on
    a date of `accept_volume_drop` (a deliberate deletion or backfill) is recorded as
    `overridden` instead of stopping the load."""
    reports: list[QualityReport] = []

    def gate() -> None:
        days = list(dates) if dates is not None else curated_dates(settings)
        reports.append(
            check_and_record(
                settings, days, warehouse=warehouse, accept_volume_drop=accept_volume_drop
            )
        )

    loaded = load_warehouse(
        settings, tables, dates, warehouse=warehouse, load_id=load_id, before_load=gate
    )
    return reports[0], loaded
