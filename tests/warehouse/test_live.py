"""`user_behavior_current`: batch rows plus live rows the batch lacks, valid with no live file."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from shopflow.lake import LakeLayout, replace_partition
from shopflow.settings import Settings
from shopflow.warehouse.live import (
    CURRENT_VIEW,
    LIVE_TABLE,
    ensure_current_view,
    recent_live_rows,
)
from shopflow.warehouse.load import duckdb_path
from shopflow.warehouse.schema import TABLES


def _rows(ids: list[str], ts: datetime, product_name: str) -> pa.Table:
    rows = [
        {
            "date": ts.date(),
            "event_id": i,
            "event_name": "view",
            "price": 1.0,
            "product_id": "p1",
            "product_name": product_name,
            "user_id": "u1",
            "user_name": None,
            "order_id": None,
            "event_ts": ts,
            "session_id": "s1",
            "category": None,
        }
        for i in ids
    ]
    return pa.Table.from_pylist(rows, TABLES["user_behavior"].lake_arrow_schema())


def _view(settings: Settings) -> list[tuple[str, str]]:
    con = duckdb.connect(str(duckdb_path(settings)), read_only=True)
    try:
        sql = f"SELECT event_id, product_name FROM {CURRENT_VIEW} ORDER BY event_id"
        return [(r[0], r[1]) for r in con.execute(sql).fetchall()]
    finally:
        con.close()


def test_current_view_adds_live_rows_the_batch_lacks(settings: Settings) -> None:
    ensure_current_view(settings)
    assert _view(settings) == []  # no live file yet: the view is still valid

    now = datetime.now(UTC).replace(microsecond=0)
    layout = LakeLayout.from_settings(settings)
    live = _rows(["a", "b"], now, "live").append_column(
        "hour", pa.array([now.hour] * 2, pa.int32())
    )
    replace_partition(live, layout.curated_partition(LIVE_TABLE, now.date(), now.hour))
    assert _view(settings) == [("a", "live"), ("b", "live")]
    assert [r["event_id"] for r in recent_live_rows(settings, minutes=5)] == ["a", "b"]

    # The batch loads `b`: it supersedes the live copy, and `a` stays live.
    con = duckdb.connect(str(duckdb_path(settings)))
    try:
        batch = _rows(["b"], now, "batch")
        con.register("incoming", batch)
        con.execute("INSERT INTO user_behavior BY NAME SELECT * FROM incoming")
    finally:
        con.close()
    assert _view(settings) == [("a", "live"), ("b", "batch")]
    recent = recent_live_rows(settings, minutes=5)
    assert sorted((r["event_id"], r["product_name"]) for r in recent) == [
        ("a", "live"),
        ("b", "batch"),
    ]
    assert recent_live_rows(settings, minutes=0) == []
