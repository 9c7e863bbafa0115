"""The near-real-time path: Spark Structured Streaming over the raw events zone.

The landing consumer writes `raw/events/date=/hour=/*.parquet` (one file per landed batch, atomic
rename, so a reader never sees a partial file). This job reads that folder as a Parquet *file
source* and keeps `curated/events_clean_stream/date=/hour=/` and the warehouse's live part
`curated/user_behavior_live/date=/hour=/` (`shopflow.transform.stream_live`) up to date:

1. Staging is the batch path's own code: `stage_events` + `valid_events` (nothing forked).
2. Deduplication by `event_id` is stateful and bounded: `withWatermark("event_ts", late tolerance)`
   + `dropDuplicatesWithinWatermark(["event_id"])`. A key's state is dropped once the watermark
   (max event time seen - tolerance) passes its event time + tolerance.
3. Sessions reach back in time (a session ends after 30 minutes without an event by the user) and
   across micro-batches, so sessionisation is not a streaming operator: `foreachBatch` takes the
   micro-batch's new events (`shopflow.transform.stream_merge`: on the ETL engine, DuckDB by
   default on one machine) and re-runs the batch path's `dedup_events` + `sessionise` on the
   rows that can change: the micro-batch's users' rows at or after each one's earliest new event
   in the *affected dates* (each date with a new event, and the day after it, whose first session
   may now start earlier), with the previous date as context
   (`shopflow.transform.stream_plan` says why no other row can change), and their earlier rows
   reduced to the few keys that decide those rows' sessions. Those keys come from the stream
   table's key index (`shopflow.transform.stream_keys`); only users with a new event at or before
   a stored one have their stored rows of those dates read. Only the
   slices holding such a row are replaced, each with its other rows as stored, one atomic file
   per slice of `SLICE_MINUTES` of an hour (`shopflow.transform.stream_slices` says why). The
   changed rows go through the batch transform `user_behavior` (names as of each event's time
   from the curated histories) into the same slices of `user_behavior_live`, which the
   warehouse view `user_behavior_current` reads (`shopflow.warehouse.live`). The table ends as
   if the affected dates had been recomputed whole; a micro-batch costs reading the index of
   those dates (and the stored rows of its out-of-order users), a sort of the few rows it
   re-sessionises, and reading and writing the slices it replaces.
4. A second query on the same files (`start_rejects_stream`) files contract rejects under
   `deadletter/events_stream/` with the batch ETL's reject rows and reasons.

Why tables of their own and not the batch job's `events_clean` / `user_behavior`: the hourly
batch ETL replaces whole partitions and is the system of record (it keeps events that arrive later
than the streaming late tolerance). Two writers replacing the same partitions would race, and the
last one would win with its own edge semantics. The warehouse view takes a live row only while
the batch part lacks its `event_id`, so the two never double-count.

Semantics that differ from the batch path (the parity test pins down where they agree):

* Which copy of a duplicate survives: batch keeps the first *landed* copy (earliest `ingest_ts`,
  then `message_id`); the stream keeps the first *processed* copy. The file source processes files
  oldest modification time first, so across micro-batches first processed = first landed; within one
  micro-batch the copy kept by `dropDuplicatesWithinWatermark` is arbitrary. Copies of one event
  carry the same payload, so the only column of `events_clean` that can differ is `ingest_ts`.
* Too-late events: an event whose `event_ts` is older than the watermark when its file is
  processed is skipped by the stream (Spark drops too-late rows in a watermarked stateful
  operator). It is not lost: it is in the raw zone, the next hourly ETL includes it, and the stream
  records the count (Spark's `numRowsDroppedByWatermark`) in a log line and in
  `_state/streaming/events_clean_stream-late_events.json`. Spark filters late rows with the
  watermark of the previous micro-batch, so the cut-off lags by one batch. Duplicates cannot leak
  past the state's eviction: a key is evicted only once the watermark passes its event time +
  tolerance, after which any copy of it is too late. `foreachBatch` deduplicates again against the
  table's rows of the same dates, which makes a replayed micro-batch idempotent.

Checkpoints: `<lake>/_state/streaming/events_clean_stream/` (offsets, the file-source log of files
already seen and the dedup state) and `<lake>/_state/streaming/events_stream_rejects/`; the key
index is `<lake>/_state/streaming/events_clean_stream-keys/` (rebuilt from the table if absent). A crash
after a micro-batch's writes and before its commit replays the batch on restart; every write is a
replace by key (partition, or the rejects file named by batch id), so nothing doubles. Delete them
(with the stream tables) to rebuild from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Final

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamReader
from pyspark.sql.types import (
    DateType,
    IntegerType,
    StructField,
    StructType,
)

from shopflow.contracts import RAW_EVENT_SCHEMA, EventBounds, event_bounds
from shopflow.lake import LakeLayout, resolve
from shopflow.lake.io import is_local
from shopflow.settings import Settings
from shopflow.transform.compositions import reject_rows, staged_events
from shopflow.transform.engine import etl_engine, open_duckdb_session, transforms
from shopflow.transform.events import DEFAULT_SESSION_GAP_MINUTES, stage_events, valid_events
from shopflow.transform.stream_live import write_batch_rejects
from shopflow.transform.stream_merge import STREAM_TABLE, DuckDBMerge, apply_micro_batch
from shopflow.transform.stream_recovery import root_cause_line
from shopflow.warehouse.live import LiveSink

#: The deduplication state's store: RocksDB, off the JVM heap. Spark's default keeps every key in
#: the heap, and `dropDuplicatesWithinWatermark` keeps a key for twice the late tolerance (24 h at
#: the default 12 h): at 5,000 events/s the default store filled a 4 GB heap by minute 32,
#: and micro-batches went from 3 s to 15 s under full collections (BENCHMARKS.md, latency over
#: an hour). A checkpoint keeps the store it was started with: an older stream stays on the heap
#: store until its checkpoint is deleted.
STATE_STORE_CONF: Final = {
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
    # Each commit writes the batch's changed keys, not a snapshot of the store.
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    # One cap on the native memory of all the stream's RocksDB instances (block cache and
    # write buffers), beside the JVM heap.
    "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
    "spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB": "512",
}
#: How late (in event time) an event may arrive and still be deduplicated and kept.
DEFAULT_LATE_TOLERANCE: Final = "12 hours"
#: Micro-batch interval of the continuous (demo) mode.
DEFAULT_TRIGGER_INTERVAL: Final = "10 seconds"
QUERY_NAME: Final = "events_clean_stream"
REJECTS_QUERY_NAME: Final = "events_stream_rejects"


def raw_event_stream_schema() -> StructType:
    """The raw event file columns plus the Hive partition columns `date` and `hour`."""
    fields = [
        StructField(f.name, f.dataType, True) for f in from_arrow_schema(RAW_EVENT_SCHEMA).fields
    ]
    return StructType(
        [*fields, StructField("date", DateType()), StructField("hour", IntegerType())]
    )


def checkpoint_location(settings: Settings) -> str:
    """Where the stream keeps its offsets, seen-file log and dedup state."""
    return f"{LakeLayout.from_settings(settings).state_root()}/streaming/{STREAM_TABLE}"


def deduplicated_event_stream(
    raw_stream: DataFrame,
    late_tolerance: str = DEFAULT_LATE_TOLERANCE,
    bounds: EventBounds = EventBounds(),
) -> DataFrame:
    """Valid raw events (within `bounds`), deduplicated by `event_id` with state bounded by the
    watermark."""
    # The bounds come before the watermark: one event far ahead of its ingest time would move the
    # watermark past every real event, and the stream would skip them all as too late.
    return (
        valid_events(stage_events(raw_stream, bounds=bounds))
        .withWatermark("event_ts", late_tolerance)
        .dropDuplicatesWithinWatermark(["event_id"])
    )


def rejects_checkpoint_location(settings: Settings) -> str:
    """Where the rejects query keeps its offsets and seen-file log."""
    return f"{LakeLayout.from_settings(settings).state_root()}/streaming/{REJECTS_QUERY_NAME}"


def _raw_reader(spark: SparkSession, events_root: str) -> DataStreamReader:
    """The file-source reader of the raw events zone."""
    # A file quarantined after a failed micro-batch (`stream_recovery`) is gone when the batch is
    # replayed from its log: it is skipped, not a failure for good.
    return (
        spark.readStream.schema(raw_event_stream_schema())
        .option("basePath", events_root)
        .option("ignoreMissingFiles", "true")
    )


def spark_read_failures(spark: SparkSession, settings: Settings, urls: list[str]) -> dict[str, str]:
    """Of raw event files `urls`, those Spark cannot read as the stream does, with why (every
    column of every row is read; nothing is kept). One read of them all first: file by file only
    if that fails."""
    events_root = LakeLayout.from_settings(settings).events_root()

    def failure(paths: list[str]) -> str | None:
        try:
            (
                spark.read.schema(raw_event_stream_schema())
                .option("basePath", events_root)
                .parquet(*paths)
                .write.format("noop")
                .mode("overwrite")
                .save()
            )
        except (PySparkException, Py4JJavaError) as exc:  # Spark's answer, not a lost JVM
            return f"Spark cannot read it: {root_cause_line(exc)}"
        return None

    if not urls or failure(urls) is None:
        return {}
    return {url: reason for url in urls if (reason := failure([url])) is not None}


def _ensure_local_folder(url: str) -> None:
    fs, path = resolve(url)
    if is_local(fs):
        Path(path).mkdir(parents=True, exist_ok=True)


def start_events_stream(
    spark: SparkSession,
    settings: Settings,
    *,
    available_now: bool,
    max_files_per_trigger: int | None = None,
    late_tolerance: str = DEFAULT_LATE_TOLERANCE,
    trigger_interval: str = DEFAULT_TRIGGER_INTERVAL,
    gap_minutes: int = DEFAULT_SESSION_GAP_MINUTES,
    on_batch: Callable[[int, list[str]], None] | None = None,
    on_failure: FailureHandler | None = None,
    live_sink: LiveSink | None = None,
) -> StreamingQuery:
    """Start the stream `raw/events/` → `curated/events_clean_stream/` + `user_behavior_live/`;
    return the running query.

    `available_now=True` processes every file present at the start (in micro-batches of at most
    `max_files_per_trigger` files) and stops: tests and catch-up runs; wait with
    `query.awaitTermination()`. Otherwise it runs a micro-batch every `trigger_interval` until
    stopped. Restarts resume from the checkpoint: only files not yet seen are read.
    `on_batch(batch_id, files_written)` is called after each micro-batch is written;
    `on_failure(batch_id, error)` with the error of a micro-batch that failed, before Spark wraps
    it in a `StreamingQueryException` (whose text is the Python traceback).
    `live_sink(batch_id, live_rows)` gets each micro-batch's changed live rows after its lake
    writes (`shopflow.warehouse.live.live_sink`).
    """
    layout = LakeLayout.from_settings(settings)
    events_root = layout.events_root()
    _ensure_local_folder(events_root)
    reader = _raw_reader(spark, events_root)
    if max_files_per_trigger is not None:
        if max_files_per_trigger < 1:
            raise ValueError(f"max_files_per_trigger must be positive, got {max_files_per_trigger}")
        reader = reader.option("maxFilesPerTrigger", max_files_per_trigger)
    for key, value in STATE_STORE_CONF.items():
        spark.conf.set(key, value)
    deduplicated = deduplicated_event_stream(
        reader.parquet(events_root), late_tolerance, event_bounds(settings)
    )
    # The merge runs on the ETL engine (`stream_merge` says why): one DuckDB session for the
    # stream's life, used by one micro-batch at a time.
    merge = (
        DuckDBMerge(open_duckdb_session(), gap_minutes)
        if etl_engine(settings) == "duckdb"
        else None
    )

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        with _reported(on_failure, batch_id):
            on_live_rows = None if live_sink is None else partial(live_sink, batch_id)
            written = apply_micro_batch(batch, layout, gap_minutes, merge, on_live_rows)
        if on_batch is not None:
            on_batch(batch_id, written)

    return _start_query(
        deduplicated, QUERY_NAME, checkpoint_location(settings), write_batch,
        available_now=available_now, trigger_interval=trigger_interval,
    )  # fmt: skip


def start_rejects_stream(
    spark: SparkSession,
    settings: Settings,
    *,
    available_now: bool,
    trigger_interval: str = DEFAULT_TRIGGER_INTERVAL,
    on_failure: FailureHandler | None = None,
) -> StreamingQuery:
    """Start the stream `raw/events/` → `deadletter/events_stream/` (contract rejects, with the
    batch ETL's reject rows and reasons); its own checkpoint, same triggers as the events stream.
    """
    layout = LakeLayout.from_settings(settings)
    events_root = layout.events_root()
    _ensure_local_folder(events_root)
    raw = _raw_reader(spark, events_root).parquet(events_root)
    t = transforms(spark)
    rejects: DataFrame = reject_rows(t, staged_events(t, raw, event_bounds(settings)), None)

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        with _reported(on_failure, batch_id):
            write_batch_rejects(batch.toArrow(), batch_id, layout)

    return _start_query(
        rejects, REJECTS_QUERY_NAME, rejects_checkpoint_location(settings), write_batch,
        available_now=available_now, trigger_interval=trigger_interval,
    )  # fmt: skip


#: Told the batch id and the error of a micro-batch whose writes failed.
FailureHandler = Callable[[int, Exception], None]


@contextmanager
def _reported(on_failure: FailureHandler | None, batch_id: int) -> Iterator[None]:
    """Tell `on_failure` of an error raised in the block, then let it propagate (Spark stops the
    query with it)."""
    try:
        yield
    except Exception as exc:
        if on_failure is not None:
            on_failure(batch_id, exc)
        raise


def _start_query(
    stream: DataFrame,
    name: str,
    checkpoint: str,
    write_batch: Callable[[DataFrame, int], None],
    *,
    available_now: bool,
    trigger_interval: str,
) -> StreamingQuery:
    """Start `stream` into `write_batch` per micro-batch: until caught up, or every interval."""
    writer = (
        stream.writeStream.queryName(name)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(write_batch)
    )
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=trigger_interval)
    return writer.start()
