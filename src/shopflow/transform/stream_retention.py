"""How long the stream's own tables keep a date.

`curated/events_clean_stream/` and `curated/user_behavior_live/` serve only the near-real-time
path: the hourly batch is the system of record, and the warehouse view takes a live row only until
the batch holds its event. Without a limit both tables would grow for as long as the stream runs,
so the stream deletes their dates older than the newest `keep_days` (counted back from the newest
date it has written, never from a date after today).

The stream needs less than that: it accepts events down to its watermark (newest event time minus
the late tolerance) and reads back each new event's date, the day after and the day before, so
it never reads a date older than `min_keep_days(late_tolerance)`. Dates beyond that are kept
only so that the warehouse shows live rows the hourly batch has not loaded yet (a batch stalled
for a day or more).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from shopflow.lake import LakeLayout, delete_partition, list_partitions, resolve
from shopflow.lake.io import is_local
from shopflow.warehouse.live import LIVE_TABLE, PLACEHOLDER_DATE

#: How often a running stream looks for expired dates.
CHECK_INTERVAL: Final = timedelta(hours=1)


def min_keep_days(late_tolerance: timedelta) -> int:
    """The fewest days the stream itself reads back: the dates its watermark still accepts, plus
    the day before the oldest of them (session context)."""
    return math.ceil(late_tolerance / timedelta(days=1)) + 2


def expired_dates(dates: Iterable[date], keep_days: int, today: date) -> list[date]:
    """The dates to delete: those before the newest `keep_days` dates, counted back from the
    newest date or from `today`, whichever is earlier."""
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    known = sorted(set(dates))
    if not known:
        return []
    # In ordinals: a huge `keep_days` would take a `date` below year 1 (OverflowError).
    first_kept = min(known[-1], today).toordinal() - (keep_days - 1)
    return [d for d in known if d.toordinal() < first_kept]


def delete_expired_stream_dates(
    layout: LakeLayout,
    tables: Sequence[str],
    keep_days: int,
    today: date | None = None,
    *,
    index_roots: Sequence[str] = (),
) -> list[str]:
    """Delete the expired dates (`expired_dates`, over the dates of all `tables` and
    `index_roots`) of each curated table of `tables` and of each date-partitioned folder of
    `index_roots` (the stream table's key index); return the partition URLs deleted. The live
    table's placeholder stays.

    Over all of them: a run killed between two deletions leaves a date in the later ones only, and
    the next run must still see it expire."""
    roots = [layout.curated_root(name) for name in tables] + list(index_roots)
    placeholder_root = layout.curated_root(LIVE_TABLE)
    partitions = {root: list_partitions(root) for root in roots}
    written = [
        d
        for root in roots
        for p in partitions[root]
        if (d := _date_of(p.values)) is not None and not _is_placeholder(root, placeholder_root, d)
    ]
    now = today or datetime.now(UTC).date()
    expired = set(expired_dates(written, keep_days, now))
    deleted = []
    for root in roots:
        for partition in partitions[root]:
            day = _date_of(partition.values)
            if day in expired and not _is_placeholder(root, placeholder_root, day):
                delete_partition(partition.url)
                _remove_empty_folder(partition.url.rsplit("/", 1)[0])
                deleted.append(partition.url)
    return deleted


def _is_placeholder(root: str, placeholder_root: str, day: date) -> bool:
    return root == placeholder_root and day.isoformat() == PLACEHOLDER_DATE


def _date_of(values: dict[str, str]) -> date | None:
    try:
        return date.fromisoformat(values["date"])
    except (KeyError, ValueError):
        return None  # not a date partition: never deleted


def _remove_empty_folder(url: str) -> None:
    # A deleted hour leaves its `date=` folder; on object stores a folder is only a prefix.
    fs, path = resolve(url)
    if is_local(fs):
        with contextlib.suppress(OSError):  # not empty: other hours, or a writer's temp file
            Path(path).rmdir()
