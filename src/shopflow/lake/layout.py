"""Every path of the lake, in one place (DESIGN.md, "Lake layout").

All partitions are Hive-style and UTC::

    raw/events/date=YYYY-MM-DD/hour=HH/events_<first-ts>_<hash>.parquet    one file per landed batch
    raw/<source>/cursor_date=YYYY-MM-DD/<source>_<from>_<to>.parquet       one file per pull
    deadletter/<source>/date=YYYY-MM-DD/<source>_<first-ts>_<hash>.parquet
    curated/<table>/date=YYYY-MM-DD[/hour=HH]/part-00000.parquet          replaced whole
    _state/<name>.json                                                      watermarks and cursors
    _staging/<run>/<table>/...           an engine's own output of one run, before it is committed

Pulls (orders, products, users) are partitioned by the UTC date of the *end* of their cursor range,
not by the wall clock of the pull: a retry after midnight then still lands on the same name in the
same folder and replaces it. At one pull every 10 minutes that is at most 144 files a folder. The
partition key is `cursor_date` because the raw order/product/user rows carry a `date` column.

Timestamps in names are `YYYYMMDDTHHMMSSffffffZ` (UTC, fixed width): safe in any file system and
object store, and lexicographic order is time order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

from shopflow.settings import Settings

#: The file name of the single data file of a curated partition.
PARTITION_FILE: Final = "part-00000.parquet"
#: Cursor token used for the start of a first (full) pull.
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_STATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def ts_token(ts: datetime) -> str:
    """A UTC timestamp as a file-name token that sorts in time order."""
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone")
    return ts.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def parse_ts_token(token: str) -> datetime:
    """The timestamp a `ts_token` stands for."""
    return datetime.strptime(token, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)


def batch_file_name(prefix: str, first_ts: datetime, keys: Iterable[str]) -> str:
    """A deterministic file name for a batch: its first timestamp and a hash of its keys.

    The same set of keys (e.g. message ids), in any order, gives the same name, so a retried batch
    replaces its own file. Use a timestamp that is stable across redelivery (publish time, not
    ingest time).
    """
    _check_name(prefix)
    ordered = sorted(keys)
    # The hash of every key followed by a NUL, in one update (a batch has tens of thousands).
    text = "\0".join(ordered) + "\0" if ordered else ""
    digest = hashlib.sha256(text.encode())
    return f"{prefix}_{ts_token(first_ts)}_{digest.hexdigest()[:16]}.parquet"


def pull_file_name(source: str, cursor_from: datetime | None, cursor_to: datetime) -> str:
    """The file name of one pull of `source` covering (`cursor_from`, `cursor_to`]."""
    _check_name(source)
    return f"{source}_{ts_token(cursor_from or EPOCH)}_{ts_token(cursor_to)}.parquet"


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid lake name (lower case, digits, underscores)")


def _utc_date(ts: datetime) -> date:
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone")
    return ts.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class LakeLayout:
    """The paths of one lake, under `root` (a local path or a URL such as `gs://bucket/lake`)."""

    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.root.rstrip("/"))

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeLayout:
        """The layout of the configured lake."""
        return cls(settings.lake_url)

    def _join(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # raw/events
    def events_root(self) -> str:
        """The raw events dataset."""
        return self._join("raw", "events")

    def events_partition(self, day: date, hour: int) -> str:
        """One event-date/hour partition of the raw events."""
        if not 0 <= hour <= 23:
            raise ValueError(f"hour {hour} is not in 0..23")
        return self._join("raw", "events", f"date={day.isoformat()}", f"hour={hour:02d}")

    def event_batch_file(self, first_ts: datetime, message_ids: Iterable[str]) -> str:
        """The file of one landed batch; its partition is the date/hour of `first_ts`.

        The landing consumer splits a batch by event hour first, then names each part from its own
        messages: `first_ts` = the part's earliest publish (or event) time.
        """
        ts = first_ts.astimezone(UTC)
        return "/".join(
            (
                self.events_partition(ts.date(), ts.hour),
                batch_file_name("events", first_ts, message_ids),
            )
        )

    def event_batch_file_in(
        self, day: date, hour: int, first_ts: datetime, message_ids: Iterable[str]
    ) -> str:
        """The file of one landed batch in an explicit date/hour partition."""
        return "/".join(
            (self.events_partition(day, hour), batch_file_name("events", first_ts, message_ids))
        )

    # raw/<source> pulls
    def pull_root(self, source: str) -> str:
        """The raw dataset of a pulled source: `orders`, `products` or `users`."""
        _check_name(source)
        return self._join("raw", source)

    def pull_partition(self, source: str, cursor_to: datetime) -> str:
        """The folder a pull ending at `cursor_to` goes to."""
        return "/".join((self.pull_root(source), f"cursor_date={_utc_date(cursor_to).isoformat()}"))

    def pull_file(self, source: str, cursor_from: datetime | None, cursor_to: datetime) -> str:
        """The file of one pull of `source` over (`cursor_from`, `cursor_to`]."""
        return "/".join(
            (
                self.pull_partition(source, cursor_to),
                pull_file_name(source, cursor_from, cursor_to),
            )
        )

    # deadletter
    def deadletter_root(self, source: str) -> str:
        """Dead letters of one source (`events`, `orders`, ...)."""
        _check_name(source)
        return self._join("deadletter", source)

    def deadletter_partition(self, source: str, day: date) -> str:
        """Dead letters of one source for one UTC ingest date."""
        return "/".join((self.deadletter_root(source), f"date={day.isoformat()}"))

    def deadletter_file(self, source: str, first_ts: datetime, keys: Iterable[str]) -> str:
        """The dead-letter file of one batch, in the partition of `first_ts`'s UTC date."""
        return "/".join(
            (
                self.deadletter_partition(source, _utc_date(first_ts)),
                batch_file_name(source, first_ts, keys),
            )
        )

    # curated
    def curated_root(self, table: str) -> str:
        """One curated table."""
        _check_name(table)
        return self._join("curated", table)

    def curated_partition(self, table: str, day: date, hour: int | None = None) -> str:
        """A daily (or, with `hour`, hourly) partition of a curated table."""
        parts = [self.curated_root(table), f"date={day.isoformat()}"]
        if hour is not None:
            if not 0 <= hour <= 23:
                raise ValueError(f"hour {hour} is not in 0..23")
            parts.append(f"hour={hour:02d}")
        return "/".join(parts)

    # _staging
    def staging_root(self) -> str:
        """Where engines write a run's outputs before they are committed into their partitions."""
        return self._join("_staging")

    def staging_url(self, run: str, table: str | None = None) -> str:
        """One run's staged outputs, or (with `table`) its staged output of one table."""
        if not _STATE_NAME.fullmatch(run):
            raise ValueError(f"{run!r} is not a valid run name")
        if table is None:
            return self._join("_staging", run)
        _check_name(table)
        return self._join("_staging", run, table)

    # _state
    def quarantine_root(self) -> str:
        """Lake files moved aside because they cannot be read (`shopflow.lake.quarantine`)."""
        return self._join("quarantine")

    def state_root(self) -> str:
        """Where watermarks and cursors live; the leading underscore hides it from readers."""
        return self._join("_state")

    def state_file(self, name: str) -> str:
        """One state record."""
        if not _STATE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid state name")
        return self._join("_state", f"{name}.json")
