"""An incremental pull's watermark: the largest `updated_at` landed, plus what it landed recently.

A pull re-reads a small overlap before the watermark (clock skew, transactions that were still open
at the last pull). Rows re-read inside the overlap that were already landed are recognised by their
key and `updated_at` and skipped, so a pull with no source changes writes nothing.
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
