"""Which event dates an ETL run recomputes, and which raw files it must quarantine first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shopflow.contracts import (
    RAW_EVENT_SCHEMA,
)
from shopflow.errors import ShopflowError
from shopflow.lake import (
    LakeLayout,
    Partition,
    StateStore,
    list_data_files,
    list_partitions,
)
from shopflow.lake.quarantine import Quarantined, screen_files
from shopflow.settings import Settings
from shopflow.transform.curated_tables import LISTING_MARGIN, PULL_SCHEMAS, STATE_NAME
from shopflow.transform.requests import EtlRequest


@dataclass(frozen=True, slots=True)
class _Plan:
    dates: tuple[date, ...]
    listed_at: datetime
    since: datetime | None
    new_pulls: bool
    #: Raw partitions left alone: their date is not a date, or is outside the accepted range.
    skipped: tuple[str, ...] = ()


def accepted_event_dates(settings: Settings) -> tuple[date, date]:
    """The first and last event date landing can accept (`Settings.event_min_ts`, ...)."""
    latest = datetime.now(UTC) + timedelta(seconds=settings.event_max_future_seconds)
    return settings.event_min_ts.astimezone(UTC).date(), latest.date()


def _partition_date(partition: Partition) -> date | None:
    try:
        return partition.date
    except ValueError:
        return None


def plan_run(
    layout: LakeLayout,
    state: StateStore,
    request: EtlRequest,
    accepted: tuple[date, date],
) -> _Plan:
    """The event dates to recompute, from the request and (incremental) the lake listing.

    Raw partitions whose date is not a date, or is outside `accepted` (landed before landing
    bounded event times, or a range narrowed by settings since), are skipped and reported, never
    read: no date can push the run past the calendar, and no data is moved for a setting.
    """
    listed_at = datetime.now(UTC)
    first, last = accepted
    events = []
    skipped: list[str] = []
    for partition in list_partitions(layout.events_root()):
        day = _partition_date(partition)
        if day is not None and first <= day <= last:
            events.append(partition)
        else:
            skipped.append(partition.url)
    if not events:
        outside = (
            f" ({len(skipped)} partitions outside the accepted event dates {first} to {last})"
            if skipped
            else ""
        )
        raise ShopflowError(
            f"the lake at {layout.root} has no raw events yet{outside}: land some with "
            "`shopflow ingest events` (or run `shopflow demo`)"
        )
    with_events = {p.date for p in events if p.date is not None}
    wanted = {d for d in request.dates if first <= d <= last}
    since: datetime | None = None
    new_pulls = False
    if request.incremental:
        record = state.get(STATE_NAME)
        if record is not None and record.get("listed_at"):
            since = datetime.fromisoformat(str(record["listed_at"])) - LISTING_MARGIN
        changed = {p.date for p in events if p.date and (since is None or p.latest_mtime > since)}
        wanted |= changed | {d + timedelta(days=1) for d in changed}
        new_pulls = any(
            list_partitions(layout.pull_root(source), since=since)
            for source in ("orders", "products", "users")
        )
    elif not wanted & with_events:
        days = _date_span(request.dates)
        raise ShopflowError(f"no raw events on {days}: nothing to backfill in {layout.root}")
    return _Plan(tuple(sorted(wanted & with_events)), listed_at, since, new_pulls, tuple(skipped))


def _date_span(dates: Sequence[date]) -> str:
    ordered = sorted(dates)
    if len(ordered) > 3:
        return f"{ordered[0]} to {ordered[-1]}"
    return ", ".join(d.isoformat() for d in ordered)


def screen_raw_events(
    layout: LakeLayout, dates: Iterable[date], *, deep: bool = False
) -> list[Quarantined]:
    """Quarantine the raw event files of `dates` that cannot be read, or that lie outside a
    `date=/hour=` folder (`shopflow.lake.quarantine`); `deep` decodes every page too."""
    wanted = set(dates)
    urls = [
        f.url
        for p in list_partitions(layout.events_root())
        if _partition_date(p) in wanted
        for f in p.files
    ]
    return screen_files(layout, urls, RAW_EVENT_SCHEMA, partition_keys=("date", "hour"), deep=deep)


def screen_pulls(layout: LakeLayout) -> list[Quarantined]:
    """Quarantine the raw pull files (orders, products, users) that cannot be read; they are
    small, so every page is decoded."""
    moved: list[Quarantined] = []
    for source, schema in PULL_SCHEMAS.items():
        files = list_data_files(layout.pull_root(source))
        moved += screen_files(
            layout, [f.url for f in files], schema, partition_keys=("cursor_date",), deep=True
        )
    return moved
