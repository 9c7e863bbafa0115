"""The dashboard's "last minutes" panel data: events per minute by type from the live path.

The stream writes `curated/user_behavior_live/date=YYYY-MM-DD/hour=HH/*.parquet` (the
`user_behavior` columns, `event_ts` in UTC). This module reads those files with an in-memory
DuckDB connection and never opens the warehouse file: another process (the load) writes it, and
DuckDB lets no other process open a file a writer holds. Only the hour partitions that cover the
window (and the newest one, for the newest event's age) are read, so the cost stays that of a few
files however long the stream has run. On the gcp profile the panel reads BigQuery's live table
instead, which the stream streams into (`shopflow.warehouse.bigquery_live`). A local profile with
a lake DuckDB cannot list (`gs://` would need its httpfs) gives an empty panel that says why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from shopflow.lake import LakeLayout
from shopflow.lake.io import is_hidden
from shopflow.lake.quarantine import unreadable_reason
from shopflow.settings import Profile, Settings
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.live import LIVE_TABLE, live_file_schema

#: How often the panel re-queries the live files.
REFRESH_SECONDS: Final = 5
#: The panel's default window.
LIVE_MINUTES: Final = 15

_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_HOUR = re.compile(r"^hour=(\d{2})$")


@dataclass(frozen=True, slots=True)
class LiveActivity:
    """Events of the last `minutes` minutes in the live files, counted per minute and type."""

    now: datetime  # the moment the window ends (UTC)
    minutes: int
    # One row per (minute, event_name) with events > 0: {"minute": datetime UTC, ...}.
    per_minute: list[dict[str, Any]] = field(default_factory=list)
    newest_event_ts: datetime | None = None  # newest event in any live file read
    files: int = 0  # live files read
    note: str = ""  # why the panel is empty, when it cannot read the live path
    damaged: tuple[str, ...] = ()  # live files that could not be read, left out
    source: str = "the stream's live files"  # what the panel read, for its caption

    @property
    def events(self) -> int:
        """Events in the window."""
        return sum(int(r["events"]) for r in self.per_minute)

    @property
    def newest_age_seconds(self) -> float | None:
        """How old the newest live event is at `now`."""
        if self.newest_event_ts is None:
            return None
        return (self.now - self.newest_event_ts).total_seconds()


def live_root(settings: Settings) -> str:
    """Where the live table's partitions are."""
    return LakeLayout.from_settings(settings).curated_root(LIVE_TABLE)


def _hour_dirs(root: Path) -> dict[datetime, Path]:
    """Every `date=D/hour=HH` directory of the live table, by the hour it starts (UTC)."""
    found: dict[datetime, Path] = {}
    for day_dir in root.iterdir() if root.is_dir() else ():
        day = _PARTITION.match(day_dir.name)
        if not day or not day_dir.is_dir():
            continue
        for hour_dir in day_dir.iterdir():
            hour = _HOUR.match(hour_dir.name)
            if hour and hour_dir.is_dir():
                start = datetime.combine(date.fromisoformat(day.group(1)), datetime.min.time())
                found[start.replace(tzinfo=UTC) + timedelta(hours=int(hour.group(1)))] = hour_dir
    return found


def _files_to_read(root: Path, since: datetime) -> list[str]:
    """Data files of the hours from `since` on, plus of the newest hour present."""
    hours = _hour_dirs(root)
    if not hours:
        return []
    first = since.replace(minute=0, second=0, microsecond=0)
    wanted = {h for h in hours if h >= first} | {max(hours)}
    return sorted(
        str(f)
        for h in wanted
        for f in hours[h].glob("*.parquet")
        if not is_hidden(f.name) and f.is_file()
    )


_QUERY: Final = """
WITH live AS (
  SELECT DISTINCT event_id, event_name, CAST(event_ts AS TIMESTAMPTZ) AS event_ts
  FROM read_parquet($files, union_by_name = true)
)
SELECT 'minute' AS kind, date_trunc('minute', event_ts) AS minute, event_name,
       COUNT(*) AS events
FROM live WHERE event_ts >= $since AND event_ts <= $now
GROUP BY ALL
UNION ALL
SELECT 'newest', MAX(event_ts), NULL, COUNT(*) FROM live
ORDER BY kind, minute, event_name
"""


def recent_live_activity(
    settings: Settings, minutes: int = LIVE_MINUTES, now: datetime | None = None
) -> LiveActivity:
    """Events per minute by type over the last `minutes` (to `now`, default the clock) and the
    newest live event, read from the live Parquet with an in-memory DuckDB; empty when there are
    no live files."""
    import duckdb

    end = (now or datetime.now(UTC)).astimezone(UTC)
    since = end - timedelta(minutes=minutes)
    if settings.profile is Profile.GCP:
        return _bigquery_activity(settings, minutes, since, end)
    root = live_root(settings)
    if "://" in root and not root.startswith("file://"):
        return LiveActivity(end, minutes, note=f"the live panel reads local lakes only ({root})")
    local = Path(root.removeprefix("file://"))
    skipped: list[str] = []
    for attempt in range(3):
        files = [f for f in _files_to_read(local, since) if f not in skipped]
        if not files:
            return LiveActivity(end, minutes, damaged=tuple(skipped))
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            rows = con.execute(_QUERY, {"files": files, "since": since, "now": end}).fetchall()
            break
        except duckdb.Error as exc:
            # A damaged file (the stream quarantines it at its next check): read without it.
            # Else a slice replaced between listing and reading: list again.
            damaged = [f for f in files if unreadable_reason(f, live_file_schema()) is not None]
            skipped += damaged
            if attempt == 2 or not (damaged or isinstance(exc, duckdb.IOException)):
                raise
        finally:
            con.close()
    return _activity(rows, end, minutes, files=len(files), damaged=tuple(skipped))


def _activity(
    rows: Sequence[tuple[str, datetime | None, str | None, int]],
    end: datetime,
    minutes: int,
    **extra: Any,
) -> LiveActivity:
    """The panel's data from (kind, minute, event_name, events) rows."""
    per_minute = [
        {"minute": minute.astimezone(UTC), "event_name": name, "events": int(events)}
        for kind, minute, name, events in rows
        if kind == "minute" and minute is not None
    ]
    newest = next((minute for kind, minute, _, _ in rows if kind == "newest"), None)
    return LiveActivity(
        end,
        minutes,
        per_minute=per_minute,
        newest_event_ts=newest.astimezone(UTC) if newest is not None else None,
        **extra,
    )


def _bigquery_activity(
    settings: Settings, minutes: int, since: datetime, end: datetime
) -> LiveActivity:
    """The panel's data from BigQuery's live table (profile gcp), which the stream streams into; a
    table BigQuery cannot read (or that does not answer in time) is the panel's note."""
    from shopflow.warehouse.bigquery_live import live_activity_rows
    from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse
    from shopflow.warehouse.load import open_warehouse

    warehouse = open_warehouse(settings, must_exist=True)
    try:
        if not isinstance(warehouse, BigQueryWarehouse):
            raise TypeError(f"profile gcp opened a {type(warehouse).__name__}, not BigQuery")
        rows = live_activity_rows(warehouse, since, end)
        return _activity(rows, end, minutes, source="BigQuery's live table")
    except WarehouseError as exc:  # the panel says why; the rest of the page still draws
        return LiveActivity(end, minutes, note=str(exc))
    finally:
        warehouse.close()
