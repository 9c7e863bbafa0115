"""What an ETL run is asked to recompute (`EtlRequest`, from `shopflow etl|backfill` options)
and what it did (`EtlRun`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from shopflow.errors import ShopflowError
from shopflow.lake.quarantine import Quarantined
from shopflow.transform.curated_tables import CURATED_TABLES, REJECTS_SOURCE


@dataclass(frozen=True, slots=True)
class EtlRequest:
    """What to recompute: explicit event dates, and whether to add what is new since the last run.

    `incremental` runs read and advance the state record; a backfill (`incremental=False`) does
    neither.
    """

    dates: tuple[date, ...] = ()
    incremental: bool = True
    label: str = "new data"


@dataclass(slots=True)
class EtlRun:
    """What one ETL run did."""

    label: str
    dates: tuple[date, ...] = ()
    partitions: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    rejected_events: int = 0
    seconds: float = 0.0
    quarantined: list[Quarantined] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Raw event files of the dates read that no commit record names: reported, not read.
    uncommitted: list[str] = field(default_factory=list)
    #: Raw event files named by a commit record but gone (deleted, quarantined), and commit
    #: records missing from their log: reported.
    missing: list[str] = field(default_factory=list)
    #: Raw files of a lake older than the commit logs, registered by this run.
    adopted: int = 0

    @property
    def partitions_written(self) -> int:
        """How many curated (and dead-letter) files this run replaced."""
        return sum(len(urls) for urls in self.partitions.values())

    def summary(self) -> str:
        """A few lines for the command line."""
        moved = [f"  quarantined {q.url} -> {q.moved_to}: {q.reason}" for q in self.quarantined]
        if self.skipped:
            example = "/".join(self.skipped[0].rsplit("/", 2)[-2:])
            moved.append(
                f"  skipped {len(self.skipped)} raw files outside the accepted event dates "
                f"(SHOPFLOW_EVENT_MIN_TS, SHOPFLOW_EVENT_MAX_FUTURE_SECONDS), e.g. {example}"
            )
        if self.uncommitted:
            example = "/".join(self.uncommitted[0].rsplit("/", 3)[-3:])
            moved.append(
                f"  not read: {len(self.uncommitted)} raw event files no commit record names "
                f"(register them with `shopflow lake register` if they belong), e.g. {example}"
            )
        if self.adopted:
            moved.append(
                f"  registered {self.adopted:,} raw files landed before the commit log existed"
            )
        if self.missing:
            example = "/".join(self.missing[0].rsplit("/", 3)[-3:])
            moved.append(
                f"  missing: {len(self.missing)} committed raw files or commit records are gone "
                f"(deleted or quarantined), e.g. {example}"
            )
        if not self.dates and not self.partitions:
            return "\n".join(
                [
                    f"etl ({self.label}): nothing new in the raw zone; "
                    f"{len(self.quarantined)} files quarantined; {self.seconds:.1f}s",
                    *moved,
                ]
            )
        days = ", ".join(d.isoformat() for d in self.dates) or "none"
        lines = [
            f"etl ({self.label}): event dates {days}; {self.partitions_written} partitions "
            f"written; {self.rejected_events:,} rejected events; "
            f"{len(self.quarantined)} files quarantined; {self.seconds:.1f}s",
            *moved,
        ]
        for name in (*CURATED_TABLES, f"deadletter/{REJECTS_SOURCE}"):
            if name in self.partitions:
                lines.append(
                    f"  {name:<22} {self.rows.get(name, 0):>10,} rows "
                    f"in {len(self.partitions[name])} partitions"
                )
        return "\n".join(lines)


def _parse_ts(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError:
        raise ShopflowError(
            f"{option} {text!r} is not an ISO-8601 time, e.g. 2026-11-25T10 or 2026-11-25T10:00Z"
        ) from None
    except OverflowError:
        raise ShopflowError(f"{option} {text!r} is outside the calendar in UTC") from None


def parse_hour(text: str) -> datetime:
    """`YYYY-MM-DDTHH` (UTC) as the start of that hour."""
    try:
        value = datetime.strptime(text.strip(), "%Y-%m-%dT%H")
    except ValueError:
        raise ShopflowError(
            f"--hour {text!r} is not YYYY-MM-DDTHH (UTC), e.g. 2026-11-25T10"
        ) from None
    return value.replace(tzinfo=UTC)


def parse_date(text: str, option: str) -> date:
    """`YYYY-MM-DD` as a date."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ShopflowError(f"{option} {text!r} is not YYYY-MM-DD, e.g. 2026-11-25") from None


def date_range(start: date, end: date) -> tuple[date, ...]:
    """Every date from `start` to `end`, both included."""
    return tuple(start + timedelta(days=n) for n in range((end - start).days + 1))


def etl_request(
    hour: str | None = None, since: str | None = None, until: str | None = None
) -> EtlRequest:
    """The request of `shopflow etl`: `--hour`, or `--since` [`--until`], or nothing.

    `--since/--until` are event times (UTC unless a zone is given): the event dates of every hour
    in [since, until) are recomputed. Any form also picks up what is new since the last run.
    """
    if hour is not None and (since is not None or until is not None):
        raise ShopflowError("give either --hour or --since/--until, not both")
    if until is not None and since is None:
        raise ShopflowError("--until needs --since")
    if hour is not None:
        start = parse_hour(hour)
        return EtlRequest((start.date(),), label=f"hour {start:%Y-%m-%dT%H}")
    if since is not None:
        start = _parse_ts(since, "--since")
        end = _parse_ts(until, "--until") if until is not None else datetime.now(UTC)
        if until is None and end <= start:
            raise ShopflowError(f"--since {since!r} is in the future; nothing to recompute")
        if end <= start:
            raise ShopflowError(f"--until {until!r} must be after --since {since!r}")
        last = (end - timedelta(microseconds=1)).date()
        return EtlRequest(
            date_range(start.date(), last),
            label=f"{start.isoformat()} to {end.isoformat()}",
        )
    return EtlRequest()


def backfill_request(start: str, end: str) -> EtlRequest:
    """The request of `shopflow backfill --start --end`: whole dates, state ignored."""
    first, last = parse_date(start, "--start"), parse_date(end, "--end")
    if last < first:
        raise ShopflowError(f"--end {last} is before --start {first}")
    return EtlRequest(
        date_range(first, last), incremental=False, label=f"backfill {first} to {last}"
    )
