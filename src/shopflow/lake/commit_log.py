"""The record of committed raw files: `_state/commits/<source>/<seq>.json`, one per commit.

Whoever commits raw files (the landing consumer, the orders and catalogue pulls, `shopflow lake
register`) appends a record naming them, after the files are durable and before it acknowledges
its input. Records carry a dense sequence number (1, 2, 3, ...) and are created create-only (a
local hard link; on GCS `ifGenerationMatch=0`), so two writers never take the same number and no
number is skipped: a writer that loses a race moves on to the next free one.

Each writer also raises a hint, `HEAD.json`, to the number it took (best effort, never lowered on
purpose): a record deleted by hand leaves a gap, and the hint keeps writers from refilling numbers
below the end and readers from stopping at the gap (they report it and read on).

A reader remembers the last number it processed and reads forward until the first number that does
not exist yet. That finds exactly the files committed since, with no listing of the lake or of the
log, whatever the clocks of the hosts or the modification times of the files (restored from a
backup, copied with preserved times).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from shopflow.lake.errors import AlreadyExistsError, LakeError
from shopflow.lake.io import StorageOptions, resolve, write_bytes_atomic
from shopflow.lake.layout import LakeLayout

#: Raw sources with a commit log.
RAW_SOURCES: Final = ("events", "orders", "products", "users")

#: Records read per round trip (GCS reads them concurrently).
_READ_CHUNK: Final = 256

_SEQ_DIGITS: Final = 12


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """One commit: its sequence number, when, and the committed files (relative to the lake root)."""

    seq: int
    committed_at: str
    files: tuple[str, ...]


class CommitLog:
    """The commit log of one raw source (`RAW_SOURCES`) of one lake."""

    def __init__(
        self, layout: LakeLayout, source: str, *, storage_options: StorageOptions | None = None
    ) -> None:
        if source not in RAW_SOURCES:
            raise ValueError(f"{source!r} is not a raw source: one of {', '.join(RAW_SOURCES)}")
        self._layout = layout
        self._root = f"{layout.state_root()}/commits/{source}"
        self._storage_options = storage_options
        self._fs, _ = resolve(self._root, storage_options)
        self._next_seq: int | None = None
        self._lock = threading.Lock()
        #: Numbers below the end found missing by `read_after` (records deleted by hand).
        self.missing: list[int] = []

    def record_url(self, seq: int) -> str:
        """Where record `seq` lives."""
        return f"{self._root}/{seq:0{_SEQ_DIGITS}d}.json"

    def _exists(self, seq: int) -> bool:
        _, path = resolve(self.record_url(seq), self._storage_options)
        return bool(self._fs.exists(path))

    def _head_url(self) -> str:
        return f"{self._root}/HEAD.json"

    def head_hint(self) -> int:
        """The highest number a writer recorded in `HEAD.json` (0: none, or unreadable)."""
        _, path = resolve(self._head_url(), self._storage_options)
        try:
            found = self._fs.cat([path], on_error="omit").get(path)
            seq = json.loads(found)["seq"] if found is not None else 0
        except (ValueError, KeyError, TypeError):
            return 0
        return seq if isinstance(seq, int) and seq > 0 else 0

    def _raise_head(self, seq: int) -> None:
        if seq <= self.head_hint():
            return
        body = json.dumps({"seq": seq}).encode()
        write_bytes_atomic(body, self._head_url(), storage_options=self._storage_options)

    def is_empty(self) -> bool:
        """Whether nothing was ever committed."""
        return self.tail() == 0

    def tail(self) -> int:
        """The highest sequence number committed so far (0: none).

        Numbers are dense unless a record was deleted by hand, so an exponential then a binary
        search finds the end in O(log n) existence checks; the `HEAD.json` hint lifts it past a
        gap, and the end is then confirmed by probing forward.
        """
        end = max(self._dense_tail(), self.head_hint())
        while self._exists(end + 1):
            end += 1
        return end

    def _dense_tail(self) -> int:
        high = 1
        while self._exists(high):
            high *= 2
        low = high // 2  # exists (or 0)
        while high - low > 1:
            middle = (low + high) // 2
            if self._exists(middle):
                low = middle
            else:
                high = middle
        return low

    def relative(self, url: str) -> str:
        """`url` relative to the lake root (records stay valid when the lake is moved)."""
        root = self._layout.root + "/"
        if not url.startswith(root):
            raise LakeError(f"{url} is not inside the lake at {self._layout.root}")
        return url[len(root) :]

    def append(self, urls: Iterable[str]) -> int:
        """Record `urls` (inside the lake) as committed; returns the record's sequence number."""
        files = sorted({self.relative(url) for url in urls})
        if not files:
            raise ValueError("a commit record needs at least one file")
        with self._lock:
            return self._append(files)

    def _append(self, files: list[str]) -> int:
        seq = self._next_seq if self._next_seq is not None else self.tail() + 1
        while True:
            body = {"seq": seq, "committed_at": datetime.now(UTC).isoformat(), "files": files}
            try:
                write_bytes_atomic(
                    json.dumps(body, indent=1).encode(),
                    self.record_url(seq),
                    create_only=True,
                    storage_options=self._storage_options,
                )
            except AlreadyExistsError:
                # Another writer took it: jump to the current end instead of probing one by one.
                seq = max(seq + 1, self.tail() + 1)
                continue
            self._next_seq = seq + 1
            self._raise_head(seq)
            return seq

    def read_after(self, seq: int, *, limit: int | None = None) -> list[CommitRecord]:
        """The records after `seq`, in order, up to the first number not written yet.

        A missing number below the `HEAD.json` hint is a record deleted by hand: it is added to
        `missing` and skipped, so the records after it are still read.
        """
        records: list[CommitRecord] = []
        head: int | None = None
        start = seq + 1
        while limit is None or len(records) < limit:
            urls = [self.record_url(n) for n in range(start, start + _READ_CHUNK)]
            paths = [resolve(url, self._storage_options)[1] for url in urls]
            found: dict[str, bytes] = self._fs.cat(paths, on_error="omit")
            for n, url, path in zip(range(start, start + _READ_CHUNK), urls, paths, strict=True):
                if limit is not None and len(records) >= limit:
                    return records
                data = found.get(path)
                if data is None:
                    head = self.head_hint() if head is None else head
                    if n > head:
                        return records
                    self.missing.append(n)
                    continue
                records.append(_decode(url, n, data))
            start += _READ_CHUNK
        return records

    def url_of(self, relative_path: str) -> str:
        """The full URL of a file a record names."""
        return f"{self._layout.root}/{relative_path}"


def _decode(url: str, seq: int, data: bytes) -> CommitRecord:
    try:
        body: Any = json.loads(data)
        if not isinstance(body["files"], list) or not all(
            isinstance(f, str) for f in body["files"]
        ):
            raise ValueError("'files' is not a list of paths")
        files = tuple(body["files"])
        committed_at = str(body["committed_at"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(
            f"commit record {url} is not readable ({exc}); move it aside (the ETL reports the "
            "gap) and register its files again with `shopflow lake register`"
        ) from None
    if body.get("seq") != seq:
        raise LakeError(f"commit record {url} says it is number {body.get('seq')}, not {seq}")
    return CommitRecord(seq, committed_at, files)


_LOGS: dict[tuple[str, str], CommitLog] = {}
_LOGS_LOCK = threading.Lock()


def register_files(layout: LakeLayout, source: str, urls: Sequence[str]) -> int | None:
    """Record raw files of `source` as committed (landing, pulls, restores); returns the record's
    number, or None for no files.

    One `CommitLog` per lake and source is kept for the process, so a long-running writer finds
    the end of the log once, not on every commit.
    """
    if not urls:
        return None
    with _LOGS_LOCK:
        commit_log = _LOGS.get((layout.root, source))
        if commit_log is None:
            commit_log = _LOGS[(layout.root, source)] = CommitLog(layout, source)
    return commit_log.append(urls)
