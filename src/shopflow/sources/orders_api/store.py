"""The orders API's own store: order lines in a SQLite file (WAL mode).

Every insert or change of a line gets, inside one serialised write transaction (BEGIN IMMEDIATE),
the next `change_seq` and an `updated_at` that never goes backwards (max of the wall clock and the
last one + 1 µs). Commit order therefore equals `change_seq` order, and any snapshot a reader sees
holds every change up to some sequence number and none after it: paging by `change_seq` sees each
committed change exactly once, however many inserts happen meanwhile.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from shopflow.contracts import OrderLine

BUSY_TIMEOUT_SECONDS: Final = 30.0
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA_SQL: Final = """
CREATE TABLE IF NOT EXISTS order_lines (
    order_id       TEXT    NOT NULL,
    product_id     TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    order_ts_us    INTEGER NOT NULL,
    quantity       INTEGER NOT NULL,
    unit_price_inr REAL    NOT NULL,
    status         TEXT    NOT NULL,
    updated_at_us  INTEGER NOT NULL,
    change_seq     INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS order_lines_change_seq ON order_lines (change_seq);
CREATE INDEX IF NOT EXISTS order_lines_updated_at ON order_lines (updated_at_us);
"""

_UPSERT_SQL: Final = """
INSERT INTO order_lines (order_id, product_id, user_id, order_ts_us, quantity, unit_price_inr,
                         status, updated_at_us, change_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (order_id, product_id) DO UPDATE SET
    user_id = excluded.user_id,
    order_ts_us = excluded.order_ts_us,
    quantity = excluded.quantity,
    unit_price_inr = excluded.unit_price_inr,
    status = excluded.status,
    updated_at_us = excluded.updated_at_us,
    change_seq = excluded.change_seq
WHERE (user_id, order_ts_us, quantity, unit_price_inr, status)
      IS NOT (excluded.user_id, excluded.order_ts_us, excluded.quantity,
              excluded.unit_price_inr, excluded.status)
"""

_COLUMNS: Final = (
    "order_id, product_id, user_id, order_ts_us, quantity, unit_price_inr, status, "
    "updated_at_us, change_seq"
)


def datetime_to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch of a zone-aware datetime."""
    if value.tzinfo is None:
        raise ValueError("datetime has no time zone")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(value_us: int) -> datetime:
    """The UTC datetime of microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=value_us)


@dataclass(frozen=True, slots=True)
class StoredOrderLine:
    """An order line as the store holds it: the placed line plus its change stamp."""

    order_id: str
    product_id: str
    user_id: str
    order_ts: datetime
    quantity: int
    unit_price_inr: float
    status: str
    updated_at: datetime
    change_seq: int

    @property
    def date(self) -> date:
        """UTC date the order was placed."""
        return self.order_ts.date()


def _row_to_line(row: tuple[str, str, str, int, int, float, str, int, int]) -> StoredOrderLine:
    return StoredOrderLine(
        order_id=row[0],
        product_id=row[1],
        user_id=row[2],
        order_ts=us_to_datetime(row[3]),
        quantity=row[4],
        unit_price_inr=row[5],
        status=row[6],
        updated_at=us_to_datetime(row[7]),
        change_seq=row[8],
    )


class OrdersStore:
    """Order lines keyed by (order_id, product_id), with a change feed ordered by `change_seq`.

    Safe to use from many threads and processes: each call opens its own connection.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA_SQL)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: we issue BEGIN ourselves, so writes can take the lock up front.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")  # durable at WAL checkpoints; WAL-safe
            yield conn
        finally:
            conn.close()

    def upsert(self, lines: Sequence[OrderLine]) -> int:
        """Insert new lines and update changed ones in one transaction; returns how many changed.

        A line identical to the stored one is left alone (its updated_at does not move). Within one
        call the last line for a key wins.
        """
        if not lines:
            return 0
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                last_seq, last_updated_us = conn.execute(
                    "SELECT coalesce(max(change_seq), 0), coalesce(max(updated_at_us), 0) "
                    "FROM order_lines"
                ).fetchone()
                first_updated_us = max(time.time_ns() // 1000, last_updated_us + 1)
                # Sequence numbers and stamps are drawn for every line; the ones identical lines
                # leave unused are gaps, which readers never depend on.
                rows = [
                    (
                        line.order_id,
                        line.product_id,
                        line.user_id,
                        datetime_to_us(line.order_ts),
                        line.quantity,
                        line.unit_price_inr,
                        line.status,
                        first_updated_us + offset,
                        last_seq + 1 + offset,
                    )
                    for offset, line in enumerate(lines)
                ]
                changes_before = conn.total_changes
                conn.executemany(_UPSERT_SQL, rows)
                changed = conn.total_changes - changes_before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return changed

    def changes_after(
        self, updated_since: datetime, after_seq: int, limit: int
    ) -> list[StoredOrderLine]:
        """Up to `limit` lines changed at or after `updated_since` with change_seq > `after_seq`,
        in change_seq order."""
        with self._connect() as conn:
            conn.execute("BEGIN")  # one snapshot for both queries
            try:
                start = conn.execute(
                    "SELECT change_seq FROM order_lines WHERE updated_at_us >= ? "
                    "ORDER BY updated_at_us LIMIT 1",
                    (datetime_to_us(updated_since),),
                ).fetchone()
                if start is None:
                    return []
                # One range bound only: given two, SQLite seeks by the first and filters by the
                # second, which turns late pages into scans. The unary + keeps the (redundant,
                # safety) updated_at test off its index.
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM order_lines "
                    "WHERE change_seq >= ? AND +updated_at_us >= ? "
                    "ORDER BY change_seq LIMIT ?",
                    (max(start[0], after_seq + 1), datetime_to_us(updated_since), limit),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        return [_row_to_line(row) for row in rows]

    def ping(self) -> None:
        """Read the store once; raises if it cannot be read."""
        with self._connect() as conn:
            conn.execute("SELECT 1 FROM order_lines LIMIT 1").fetchall()

    def count(self) -> int:
        """How many order lines the store holds."""
        with self._connect() as conn:
            return int(conn.execute("SELECT count(*) FROM order_lines").fetchone()[0])

    def get(self, order_id: str, product_id: str) -> StoredOrderLine | None:
        """One stored line by key."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM order_lines WHERE order_id = ? AND product_id = ?",
                (order_id, product_id),
            ).fetchone()
        return None if row is None else _row_to_line(row)
