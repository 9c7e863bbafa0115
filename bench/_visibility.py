"""When each event of a latency run was published and first visible, and what that adds up to.

Events are numbered in publishing order (`<prefix><n>`), so the ledger keeps plain arrays indexed
by `n` instead of a dict per event: an hour at 5,000/s is 18M events.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from shopflow.settings import Settings

Floats = npt.NDArray[np.float64]


class Ledger:
    """Each event's `event_ts`, publish time and first-visible time (epoch seconds), by number."""

    def __init__(self, capacity: int) -> None:
        self.stamp: Floats = np.zeros(capacity)
        self.published: Floats = np.full(capacity, math.inf)
        self.seen: Floats = np.full(capacity, math.inf)
        #: Events published so far (numbers 0 .. sent-1).
        self.sent = 0
        #: Events seen so far.
        self.visible = 0
        #: Every event numbered below this one has been seen.
        self._low = 0

    def record_published(self, first: int, count: int, stamp: float, done: float) -> None:
        """Events first .. first+count-1, stamped `stamp`, were acknowledged by the bus at `done`."""
        self.stamp[first : first + count] = stamp
        self.published[first : first + count] = done
        self.sent = first + count  # last: the poller trusts everything below `sent`

    def record_seen(self, numbers: npt.NDArray[np.int64], at: float) -> int:
        """Mark these event numbers visible at `at` unless seen before; how many were new."""
        sent = self.sent
        numbers = numbers[(numbers >= 0) & (numbers < sent)]
        fresh = np.unique(numbers[np.isinf(self.seen[numbers])])
        self.seen[fresh] = at
        self.visible += int(fresh.size)
        unseen = np.flatnonzero(np.isinf(self.seen[self._low : sent]))
        self._low += int(unseen[0]) if unseen.size else sent - self._low
        return int(fresh.size)

    def oldest_unseen_stamp(self) -> float | None:
        """The `event_ts` of the oldest published event not yet seen (None: all seen)."""
        return float(self.stamp[self._low]) if self._low < self.sent else None

    def latencies(self) -> Floats:
        """Seconds from publish to first visible per event (inf: never visible)."""
        lag: Floats = self.seen[: self.sent] - self.published[: self.sent]
        return np.maximum(lag, 0.0)

    def window_bounds(self, started: float, window_seconds: float) -> list[tuple[int, int]]:
        """Event-number ranges [a, b) published in each window of `window_seconds` from `started`."""
        published = self.published[: self.sent]
        if not published.size:
            return []
        count = max(1, math.ceil((float(published[-1]) - started) / window_seconds))
        edges = started + window_seconds * np.arange(count + 1)
        cuts = np.searchsorted(published, edges[1:-1], side="left")
        starts = [0, *(int(c) for c in cuts)]
        ends = [*(int(c) for c in cuts), int(published.size)]
        return list(zip(starts, ends, strict=True))


def percentile(values: Floats, q: float) -> float:
    """The q-quantile as the smallest value with at least q of all at or under it (nan if none)."""
    if not values.size:
        return math.nan
    ordered = np.sort(values)
    index = min(ordered.size - 1, max(0, math.ceil(q * ordered.size) - 1))
    return float(ordered[index])


class Visibility:
    """Polls the live rows and records in a ledger when each `<prefix>` event is first visible.

    A poll reads the live part of `user_behavior_current` as the dashboard does
    (`warehouse.live.live_select_sql`), restricted to `event_ts` at or after the oldest event not
    seen yet: DuckDB skips every row group older than that by its statistics, so a poll's cost
    follows the stream's lag, not the length of the run (a poll over everything published took
    seconds by the end of a long run). One DuckDB thread: the poller must not take CPU from the
    stream it measures.
    """

    def __init__(
        self, settings: Settings, prefix: str, poll_seconds: float, ledger: Ledger
    ) -> None:
        from shopflow.warehouse.live import live_select_sql

        self.sql = (
            f"SELECT n FROM (SELECT TRY_CAST(substr(event_id, {len(prefix) + 1}) AS BIGINT) AS n "
            f"FROM ({live_select_sql(settings)}) AS live "
            f"WHERE event_ts >= ? AND starts_with(event_id, '{prefix}')) WHERE n IS NOT NULL"
        )
        self.poll_seconds = poll_seconds
        self.ledger = ledger
        #: Seconds each poll took (the latency's resolution is the poll interval or this).
        self.poll_durations: list[float] = []
        self.errors = 0
        self._since = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _scan_from(self) -> datetime:
        oldest = self.ledger.oldest_unseen_stamp()
        newest = float(self.ledger.stamp[self.ledger.sent - 1]) if self.ledger.sent else None
        # A second of margin: `event_ts` goes through an ISO string and back.
        start = oldest if oldest is not None else (newest or self._since)
        return datetime.fromtimestamp(start - 1.0, UTC)

    def _run(self) -> None:
        import duckdb

        con = duckdb.connect()
        con.execute("SET threads = 1")
        while not self._stop.is_set():
            started = time.time()
            try:
                found: Any = con.execute(self.sql, [self._scan_from()]).fetchnumpy()["n"]
                self.ledger.record_seen(np.asarray(found, dtype=np.int64), started)
            except duckdb.Error:
                self.errors += 1  # a file replaced between listing and reading: poll again
            self.poll_durations.append(time.time() - started)
            self._stop.wait(max(0.0, self.poll_seconds - (time.time() - started)))
        con.close()

    def __enter__(self) -> Visibility:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
