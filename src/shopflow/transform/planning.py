"""Which event dates an ETL run recomputes, and which raw files it must quarantine first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shopflow.contracts import (
    RAW_EVENT_SCHEMA,
)
from shopflow.errors import ShopflowError
from shopflow.lake import LakeLayout, StateStore, list_data_files
from shopflow.lake.quarantine import Quarantined, screen_files
from shopflow.settings import Settings
from shopflow.transform.changes import (
    adopt_uncommitted_lake,
    fold_into_manifests,
    has_manifest,
    raw_event_files,
    read_pending,
)
from shopflow.transform.curated_tables import PULL_SCHEMAS, STATE_NAME
from shopflow.transform.requests import EtlRequest


@dataclass(frozen=True, slots=True)
class _Plan:
    dates: tuple[date, ...]
    #: Per raw source, the last commit record this run covers (stored when it succeeds).
    cursors: dict[str, int]
    new_pulls: bool
    #: Committed raw files left alone: their date is not a date, or is outside the accepted range.
    skipped: tuple[str, ...] = ()
    #: Commit records missing below the end of their log (deleted by hand).
    missing_records: tuple[str, ...] = ()
    #: Raw files of a lake older than the commit logs, registered by this run.
    adopted: int = 0


def accepted_event_dates(settings: Settings) -> tuple[date, date]:
    """The first and last event date landing can accept (`Settings.event_min_ts`, ...)."""
    latest = datetime.now(UTC) + timedelta(seconds=settings.event_max_future_seconds)
    return settings.event_min_ts.astimezone(UTC).date(), latest.date()


def _curated_dates(layout: LakeLayout, dates: Iterable[date]) -> set[date]:
    """Those of `dates` that have a curated `events_clean` partition."""
    root = layout.curated_root("events_clean")
    return {d for d in dates if list_data_files(f"{root}/date={d.isoformat()}")}


def plan_run(
    layout: LakeLayout,
    state: StateStore,
    request: EtlRequest,
    accepted: tuple[date, date],
) -> _Plan:
    """The event dates to recompute, from the request and (incremental) the commit logs.

    Every commit record after the previous run's cursors is read and its event files folded into
    their dates' manifests (`shopflow.transform.changes`); an incremental run adds the dates of
    those files (and the next date of each: a late event before midnight can move the start of a
    session that crosses into it). Committed files whose date is not a date, or is outside
    `accepted`, are skipped and reported, never read. A requested date with no committed raw
    events left but with curated rows is recomputed too, to empty: its curated partitions go.
    """
    first, last = accepted
    record = state.get(STATE_NAME)
    cursors = {str(k): int(v) for k, v in ((record or {}).get("commits") or {}).items()}
    adopted = adopt_uncommitted_lake(layout)
    pending = read_pending(layout, cursors)
    fold_into_manifests(layout, pending.event_files)
    skipped = [f"{layout.root}/{path}" for path in pending.undated]
    changed: set[date] = set()
    for day, files in pending.event_files.items():
        if first <= day <= last:
            changed.add(day)
        else:
            skipped += sorted(f"{layout.root}/{path}" for path in files)
    if not pending.cursors.get("events"):
        raise ShopflowError(
            f"the lake at {layout.root} has no raw events yet: land some with "
            "`shopflow ingest events` (or run `shopflow demo`)"
        )
    wanted = {d for d in request.dates if first <= d <= last}
    new_pulls = False
    if request.incremental:
        wanted |= changed | {d + timedelta(days=1) for d in changed}
        new_pulls = pending.new_pulls
    with_events = {d for d in wanted if has_manifest(layout, d)}
    # A date whose raw events are all gone, or a next date without events, but with curated rows,
    # is recomputed to empty; one whose folder still holds files nobody committed (or whose
    # manifest was lost) is left alone, its files reported: never emptied for a missing record.
    emptied = {
        d
        for d in _curated_dates(layout, wanted - with_events)
        if not raw_event_files(layout, [d]).uncommitted
    }
    dates = wanted & with_events | emptied
    if not request.incremental and not dates:
        days = _date_span(request.dates)
        stray = raw_event_files(layout, wanted).uncommitted
        if stray:
            folder = stray[0].rsplit("/", 2)[0]
            raise ShopflowError(
                f"raw events of {days} are {len(stray)} files no commit record names (e.g. in "
                f"{folder}): register them with `shopflow lake register {folder}`, then backfill"
            )
        raise ShopflowError(f"no raw events on {days}: nothing to backfill in {layout.root}")
    # A backfill leaves the cursors where they were: the next incremental run still covers the
    # records read here (recomputing their dates again is harmless).
    kept = pending.cursors if request.incremental else cursors
    return _Plan(
        tuple(sorted(dates)),
        kept,
        new_pulls,
        tuple(skipped),
        tuple(pending.missing_records),
        adopted,
    )


def _date_span(dates: Sequence[date]) -> str:
    ordered = sorted(dates)
    if len(ordered) > 3:
        return f"{ordered[0]} to {ordered[-1]}"
    return ", ".join(d.isoformat() for d in ordered)


def screen_raw_events(
    layout: LakeLayout, urls: Sequence[str], *, deep: bool = False
) -> list[Quarantined]:
    """Quarantine those raw event files that cannot be read, or that lie outside a
    `date=/hour=` folder (`shopflow.lake.quarantine`); `deep` decodes every page too."""
    return screen_files(
        layout, list(urls), RAW_EVENT_SCHEMA, partition_keys=("date", "hour"), deep=deep
    )


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
