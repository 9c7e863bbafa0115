"""Incremental pulls' watermarks, and what each landed recently so a re-read lands nothing twice.

* `Watermark` (the orders API): the largest `updated_at` landed. A pull re-reads a small overlap
  before it (clock skew between the API and us); rows re-read inside the overlap that were already
  landed are recognised by their key and `updated_at` and skipped.
* `SnapshotWatermark` (the shop database): a transaction-id floor. A pull reads the rows written by
  transactions with an id at or above the floor, then moves the floor up to the oldest transaction
  still running when it read (its snapshot's `xmin`), never further: a transaction open during a
  pull is read by the next one, however long it stays open and whatever its `updated_at`. Rows
  re-read above the floor that were already landed are skipped by key and `updated_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from shopflow.lake import StateStore

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

#: A landed row: its key columns, then its `updated_at` in ISO-8601.
RowKey = tuple[str, ...]


@dataclass(slots=True)
class Watermark:
    """The state of one incremental source, as stored in `_state/<name>.json`."""

    name: str
    overlap: timedelta
    value: datetime | None = None
    recent: set[RowKey] = field(default_factory=set)

    @classmethod
    def load(cls, state: StateStore, name: str, overlap: timedelta) -> Watermark:
        """The stored watermark, or an empty one before the first pull."""
        stored: dict[str, Any] | None = state.get(name)
        if not stored:
            return cls(name, overlap)
        return cls(
            name,
            overlap,
            datetime.fromisoformat(stored["watermark"]),
            {tuple(key) for key in stored.get("recent_keys", [])},
        )

    @property
    def since(self) -> datetime:
        """Where the next pull starts reading: the watermark minus the overlap."""
        return self.value - self.overlap if self.value else EPOCH

    def is_new(self, key: RowKey) -> bool:
        """Whether a row read by this pull was not landed before."""
        return key not in self.recent

    def advance(self, state: StateStore, landed: Iterable[tuple[RowKey, datetime]]) -> None:
        """Move past rows that are now durably landed, and store the new state atomically."""
        landed = list(landed)
        if not landed:
            return
        newest = max(updated_at for _, updated_at in landed)
        if self.value is not None and newest < self.value:
            newest = self.value
        window_start = newest - self.overlap
        keep = {key for key in self.recent if datetime.fromisoformat(key[-1]) >= window_start}
        keep |= {key for key, updated_at in landed if updated_at >= window_start}
        state.put(
            self.name,
            {"watermark": newest.isoformat(), "recent_keys": sorted(keep)},
        )
        self.value, self.recent = newest, keep


def row_key(*parts: str, updated_at: datetime) -> RowKey:
    """The key that identifies one version of a row."""
    return (*parts, updated_at.astimezone(UTC).isoformat())


@dataclass(slots=True)
class SnapshotWatermark:
    """The state of one shop-database table's pulls, as stored in `_state/<name>.json`.

    `xid_floor`: the next pull reads rows with `change_xid >= xid_floor`. `since`: also only rows
    with `updated_at >= since`, for the one pull that converts a state written by the old
    `updated_at` watermark (else the epoch). `recent`: each landed row version (key, updated_at)
    that a later pull may read again (its transaction id is at or above the floor), with that id.
    `newest_updated_at`: the largest `updated_at` landed, for people reading reports.
    """

    name: str
    xid_floor: int = 0
    since: datetime = EPOCH
    newest_updated_at: datetime | None = None
    recent: dict[RowKey, int] = field(default_factory=dict)

    @classmethod
    def load(cls, state: StateStore, name: str, legacy_overlap: timedelta) -> SnapshotWatermark:
        """The stored watermark, or an empty one before the first pull.

        A state written by the `updated_at` watermark (no `xid_floor`) resumes from its timestamp
        minus `legacy_overlap`, from transaction 0: rows migrated into `change_xid` carry 0.
        """
        stored: dict[str, Any] | None = state.get(name)
        if not stored:
            return cls(name)
        newest = datetime.fromisoformat(stored["watermark"]) if stored.get("watermark") else None
        if "xid_floor" not in stored:
            legacy = {tuple(key): 0 for key in stored.get("recent_keys", [])}
            since = newest - legacy_overlap if newest is not None else EPOCH
            return cls(name, 0, since, newest, legacy)
        recent = {tuple(key[:-1]): int(key[-1]) for key in stored.get("recent_keys", [])}
        return cls(name, int(stored["xid_floor"]), EPOCH, newest, recent)

    @property
    def is_legacy(self) -> bool:
        """Whether this state still needs its one pull by `updated_at`."""
        return self.since != EPOCH

    def is_new(self, key: RowKey) -> bool:
        """Whether a row read by this pull was not landed before."""
        return key not in self.recent

    def advance(
        self, state: StateStore, landed: Iterable[tuple[RowKey, int]], snapshot_xmin: int
    ) -> None:
        """Record rows now durably landed and raise the floor to `snapshot_xmin` (the oldest
        transaction running when the pull read); store the new state atomically."""
        landed = list(landed)
        floor = max(self.xid_floor, snapshot_xmin)
        if not landed and floor == self.xid_floor and not self.is_legacy:
            return
        newest = self.newest_updated_at
        for key, _ in landed:
            updated_at = datetime.fromisoformat(key[-1])
            newest = updated_at if newest is None else max(newest, updated_at)
        # Only rows of transactions at or above the floor can be read again.
        recent = {key: xid for key, xid in (*self.recent.items(), *landed) if xid >= floor}
        state.put(
            self.name,
            {
                "xid_floor": floor,
                "watermark": newest.isoformat() if newest is not None else None,
                "recent_keys": sorted([*key, xid] for key, xid in recent.items()),
            },
        )
        self.xid_floor, self.since, self.newest_updated_at, self.recent = (
            floor,
            EPOCH,
            newest,
            recent,
        )
