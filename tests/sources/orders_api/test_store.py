"""The SQLite order store on its own: change sequence, stamps, upsert semantics."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shopflow.contracts import OrderLine
from shopflow.sources.orders_api.store import OrdersStore, datetime_to_us, us_to_datetime

PLACED_AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_lines(count: int, prefix: str = "o") -> list[OrderLine]:
    return [
        OrderLine(
            order_id=f"{prefix}{i // 3}",
            product_id=f"p{i % 3}",
            user_id=f"u{i % 50}",
            order_ts=PLACED_AT + timedelta(seconds=i),
            quantity=1 + i % 4,
            unit_price_inr=99.5 + i,
        )
        for i in range(count)
    ]


def test_microsecond_round_trip() -> None:
    moment = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    assert us_to_datetime(datetime_to_us(moment)) == moment


def test_identical_upsert_changes_nothing_and_change_moves_line_to_the_end(
    tmp_path: Path,
) -> None:
    store = OrdersStore(tmp_path / "orders.sqlite3")
    lines = make_lines(30)
    assert store.upsert(lines) == 30
    assert store.upsert(lines) == 0
    before = store.changes_after(EPOCH, 0, 100)
    assert [(line.order_id, line.product_id) for line in before] == [
        (line.order_id, line.product_id) for line in lines
    ]

    shipped = dataclasses.replace(lines[4], status="shipped")
    assert store.upsert([shipped]) == 1
    after = store.changes_after(EPOCH, 0, 100)
    assert len(after) == 30
    assert (after[-1].order_id, after[-1].product_id, after[-1].status) == (
        shipped.order_id,
        shipped.product_id,
        "shipped",
    )
    assert after[-1].updated_at > before[-1].updated_at
    unchanged_before = {(x.order_id, x.product_id): x for x in before}
    for line in after[:-1]:
        assert unchanged_before[(line.order_id, line.product_id)] == line


def test_sequence_and_stamps_strictly_increase_across_concurrent_writers(tmp_path: Path) -> None:
    store = OrdersStore(tmp_path / "orders.sqlite3")

    def write(prefix: str) -> None:
        for batch in range(20):
            store.upsert(make_lines(30, prefix=f"{prefix}-{batch}-"))

    writers = [threading.Thread(target=write, args=(name,)) for name in "abc"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    lines = store.changes_after(EPOCH, 0, 10_000)
    assert len(lines) == 3 * 20 * 30 == store.count()
    assert all(a.change_seq < b.change_seq for a, b in itertools.pairwise(lines))
    assert all(a.updated_at < b.updated_at for a, b in itertools.pairwise(lines))


def test_changes_after_filters_by_updated_since_and_sequence(tmp_path: Path) -> None:
    store = OrdersStore(tmp_path / "orders.sqlite3")
    store.upsert(make_lines(10, prefix="old"))
    old = store.changes_after(EPOCH, 0, 100)
    store.upsert(make_lines(10, prefix="new"))

    since_new = store.changes_after(old[-1].updated_at + timedelta(microseconds=1), 0, 100)
    assert [line.order_id[:3] for line in since_new] == ["new"] * 10
    # updated_since is inclusive.
    assert len(store.changes_after(old[-1].updated_at, 0, 100)) == 11
    assert store.changes_after(EPOCH, old[4].change_seq, 3) == old[5:8]
    assert store.changes_after(datetime(2999, 1, 1, tzinfo=UTC), 0, 100) == []


def test_last_line_for_a_key_in_one_batch_wins(tmp_path: Path) -> None:
    store = OrdersStore(tmp_path / "orders.sqlite3")
    first = make_lines(1)[0]
    store.upsert([first, dataclasses.replace(first, status="cancelled")])
    stored = store.get(first.order_id, first.product_id)
    assert stored is not None and stored.status == "cancelled"
    assert store.count() == 1
