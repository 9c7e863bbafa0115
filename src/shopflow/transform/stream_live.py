"""What the stream writes besides `events_clean_stream`: the warehouse's live part, its dead
letters and its record of too-late events.

* `curated/user_behavior_live/date=D/hour=HH/`: the batch transform `user_behavior` run on the
  stream's sessionised events, with names as of each event's time from the curated
  `products_history` / `users_history` the last hourly ETL wrote (null names while those are
  still empty). A micro-batch computes the live rows of the stream rows it changed only
  (`shopflow.transform.stream_plan`) and merges them into the same slices it replaces in the
  stream table; the other rows keep the live rows computed when they were written, so their
  names may be as of an older history snapshot. That is accepted: the hourly batch supersedes
  live rows anyway. A replayed micro-batch rewrites the same rows. The warehouse reads it through
  `user_behavior_current` (`shopflow.warehouse.live`).
* `deadletter/events_stream/date=D/batch-<id>.parquet`: the contract rejects of micro-batch `id`,
  the batch ETL's own reject rows (`shopflow.transform.compositions.reject_rows`), filed by raw partition
  date. Named by the batch id, so a replay after a crash replaces its own file.
* `_state/streaming/late_events.json`: how many events the stream skipped as older than its
  watermark (Spark's `numRowsDroppedByWatermark`), in total and for the last batch that had any.
  They are in the raw zone, so the next hourly ETL includes them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.lake import LakeLayout, list_data_files
from shopflow.lake.io import resolve, write_json_atomic, write_parquet_atomic
from shopflow.transform.engine import Transforms, read_parquet
from shopflow.transform.history import PRODUCTS_HISTORY_FIELDS, USERS_HISTORY_FIELDS
from shopflow.transform.user_behavior import USER_BEHAVIOR_COLUMNS

#: Where the stream's contract rejects go (`deadletter/<source>/date=D/`).
STREAM_REJECTS_SOURCE: Final = "events_stream"
#: The state record of too-late events the stream skipped.
LATE_STATE: Final = "late_events.json"

_ARROW_TYPES: Final = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "boolean": pa.bool_(),
}
#: The curated histories `live_rows` names events from, by table name.
HISTORY_SCHEMAS: Final = {
    name: pa.schema([(column, _ARROW_TYPES[kind]) for column, kind in fields])
    for name, fields in (
        ("products_history", PRODUCTS_HISTORY_FIELDS),
        ("users_history", USERS_HISTORY_FIELDS),
    )
}


def read_history(session: Any, layout: LakeLayout, name: str) -> Any:
    """A curated history snapshot as the last ETL wrote it, on `session`'s engine; empty before
    the first ETL."""
    files = list_data_files(layout.curated_root(name))
    return read_parquet(session, [f.url for f in files], HISTORY_SCHEMAS[name])


def live_rows(t: Transforms, events_clean: Any, products_history: Any, users_history: Any) -> Any:
    """The live rows of sessionised events: `user_behavior` columns plus the partition `hour`."""
    F = t.functions
    rows = t.user_behavior.user_behavior(events_clean, products_history, users_history)
    return rows.select(*USER_BEHAVIOR_COLUMNS, F.hour("event_ts").cast("int").alias("hour"))


def write_batch_rejects(rejects: pa.Table, batch_id: int, layout: LakeLayout) -> list[str]:
    """File a micro-batch's reject rows (with a `date` column) per date, one file per batch."""
    written = []
    for day in sorted(set(rejects["date"].to_pylist())):
        part = rejects.filter(pc.equal(rejects["date"], pa.scalar(day, pa.date32())))
        folder = layout.deadletter_partition(STREAM_REJECTS_SOURCE, day)
        url = f"{folder}/batch-{batch_id:09d}.parquet"
        write_parquet_atomic(part.drop_columns(["date"]), url)
        written.append(url)
    return written


def late_state_url(checkpoint: str) -> str:
    """The too-late record, next to the stream's checkpoint."""
    return f"{checkpoint.rstrip('/')}-{LATE_STATE}"


def read_late_state(checkpoint: str) -> dict[str, Any]:
    """The too-late record (zeros before the first skip)."""
    fs, path = resolve(late_state_url(checkpoint))
    if not fs.exists(path):
        return {"skipped_total": 0, "batches": {}}
    with fs.open(path, "rb") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def dropped_by_watermark(progress: dict[str, Any]) -> int:
    """Rows a micro-batch's progress says its stateful operators dropped as too late."""
    return sum(int(op.get("numRowsDroppedByWatermark", 0)) for op in progress["stateOperators"])


def record_late(checkpoint: str, progress: dict[str, Any]) -> int:
    """Add a micro-batch's too-late count to the record (once per batch id); return the count."""
    skipped = dropped_by_watermark(progress)
    if not skipped:
        return 0
    state = read_late_state(checkpoint)
    batch = str(progress["batchId"])
    if batch in state["batches"]:
        return skipped
    state["batches"][batch] = {
        "skipped": skipped,
        "watermark": progress.get("eventTime", {}).get("watermark"),
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    state["skipped_total"] = sum(b["skipped"] for b in state["batches"].values())
    write_json_atomic(state, late_state_url(checkpoint))
    return skipped
