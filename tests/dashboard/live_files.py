"""Live Parquet files written straight into the layout the stream writes (`user_behavior_live`)."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from shopflow.dashboard.live import live_root
from shopflow.settings import Settings
from shopflow.warehouse.schema import TABLES


def write_live_file(settings: Settings, name: str, events: list[tuple[str, str, datetime]]) -> None:
    """One live file of `(event_id, event_name, event_ts)` events, all in the first's hour."""
    schema = TABLES["user_behavior"].lake_arrow_schema()
    columns: dict[str, list[object]] = {f.name: [None] * len(events) for f in schema}
    columns["event_id"] = [e[0] for e in events]
    columns["event_name"] = [e[1] for e in events]
    columns["event_ts"] = [e[2] for e in events]
    columns["date"] = [e[2].date() for e in events]
    first = events[0][2]
    folder = f"{live_root(settings)}/date={first.date().isoformat()}/hour={first.hour:02d}"
    path = folder.removeprefix("file://")
    import os

    os.makedirs(path, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), f"{path}/{name}.parquet")
