"""Checks over time: how fresh the newest event is, and whether an hour's volume dropped."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from shopflow.lake import Partition, read_dataset
from shopflow.quality.curated import hourly_event_counts
from shopflow.quality.results import CheckResult, Severity


def freshness(
    partitions: Sequence[Partition], now: datetime, max_age_seconds: float
) -> CheckResult:
    """`freshness`: the newest curated event against `now` (warn beyond `max_age_seconds`).

    A warning, not an error: a backfill of old dates must still load, and the events-health DAG
    alerts on a stalled landing already.
    """
    if not partitions:
        return CheckResult(
            "freshness",
            "events_clean",
            None,
            Severity.WARN,
            None,
            max_age_seconds,
            False,
            "no curated events at all",
        )
    newest_partition = partitions[-1]
    table = read_dataset([newest_partition.url], columns=["event_ts"])
    values = [v for v in table.column("event_ts").to_pylist() if v is not None]
    newest: datetime | None = max(values) if values else None
    if newest is None:
        age = None
        detail = f"the newest partition {newest_partition.url} has no event_ts"
    else:
        age = (now.astimezone(UTC) - newest.astimezone(UTC)).total_seconds()
        detail = f"newest event {newest.astimezone(UTC).isoformat()}, {age:,.0f} s before the check"
    return CheckResult(
        "freshness",
        "events_clean",
        newest_partition.date,
        Severity.WARN,
        age,
        max_age_seconds,
        age is not None and age <= max_age_seconds,
        detail,
    )


def _history_dates(known: Sequence[date], day: date, history_days: int) -> list[date]:
    return [d for d in known if d < day][-history_days:]


def volume(
    partitions: Sequence[Partition],
    dates: Sequence[date],
    min_ratio: float,
    history_days: int,
    min_median_events: int = 1,
) -> list[CheckResult]:
    """`volume`, per checked date: each hour's events against the median of the same hour over
    the last `history_days` earlier dates of the lake (error below `min_ratio` of it).

    The same hour of earlier days, not the hours just before: traffic has a daily cycle. The
    lake's newest hour is not judged (it is still filling), nor an hour before the lake's first
    event, nor an hour whose median is under `min_median_events` (too few events to tell a drop
    from noise). An hour missing from a date counts 0 events. The
    result's `observed` is the date's worst hour's share of its median.
    """
    if not partitions:
        return []
    known = sorted({p.date for p in partitions if p.date is not None})
    first = (partitions[0].date or date.min, partitions[0].hour or 0)
    newest = (partitions[-1].date or date.max, partitions[-1].hour or 0)
    wanted = set(dates)
    for day in dates:
        wanted.update(_history_dates(known, day, history_days))
    counts = hourly_event_counts(partitions, sorted(wanted))
    results = []
    for day in dates:
        history = _history_dates(known, day, history_days)
        worst: tuple[float, int, int, float] | None = None  # share, hour, events, median
        for hour in range(24):
            if not first <= (day, hour) < newest or not history:
                continue
            median = statistics.median(counts.get((d, hour), 0) for d in history)
            if median < max(min_median_events, 1):
                continue
            events = counts.get((day, hour), 0)
            share = events / median
            if worst is None or share < worst[0]:
                worst = (share, hour, events, float(median))
        results.append(_volume_result(day, worst, min_ratio, len(history)))
    return results


def _volume_result(
    day: date, worst: tuple[float, int, int, float] | None, min_ratio: float, history: int
) -> CheckResult:
    if worst is None:
        fields: dict[str, Any] = {
            "observed": None,
            "passed": True,
            "detail": "no complete hour with enough history to compare with",
        }
    else:
        share, hour, events, median = worst
        fields = {
            "observed": round(share, 6),
            "passed": share >= min_ratio,
            "detail": (
                f"{hour:02d}h has {events:,} events, {share:.0%} of the median {median:,.1f} "
                f"of that hour over {history} earlier date(s) (minimum {min_ratio:.0%})"
            ),
        }
    return CheckResult(
        check_name="volume",
        table_name="events_clean",
        partition=day,
        severity=Severity.ERROR,
        threshold=min_ratio,
        **fields,
    )
