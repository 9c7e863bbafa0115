"""`shopflow stream`: the Spark Structured Streaming job that keeps `events_clean_stream` and
the warehouse's live part (`user_behavior_live`) fresh."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Final

import typer

from shopflow.errors import ShopflowError
from shopflow.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pyspark.sql.streaming.query import StreamingQuery

    from shopflow.lake import LakeLayout
    from shopflow.lake.quarantine import Quarantined
    from shopflow.settings import Settings
    from shopflow.transform.stream_recovery import ScreenedFiles
    from shopflow.warehouse.live import LiveSink

#: The lock one `shopflow stream` per lake holds (`shopflow.lake.writer_lock`; not the ETL's).
STREAM_LOCK: Final = "stream"
#: Its lease on a GCS lake (renewed every third of it while the stream runs).
STREAM_LEASE: Final = timedelta(minutes=1)


def stream(
    available_now: Annotated[
        bool,
        typer.Option(
            "--available-now",
            help="Process every raw event file not yet seen, then stop (default: run on).",
        ),
    ] = False,
    max_files_per_trigger: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many raw files per micro-batch (default: all new)."),
    ] = None,
    late_tolerance_hours: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=24.0 * 366,
            help="Event-time lateness the stream still takes; older events are counted and left to the hourly ETL.",
        ),
    ] = 12.0,
    trigger_seconds: Annotated[
        float, typer.Option(min=1.0, help="Micro-batch interval when running on.")
    ] = 10.0,
    keep_days: Annotated[
        int,
        typer.Option(
            min=1,
            max=3650,
            help="Days of events_clean_stream and user_behavior_live kept (older dates are deleted; the hourly batch holds them). On gcp, also the expiry of the BigQuery live table's partitions.",
        ),
    ] = 3,
) -> None:
    """Stream raw/events/ into curated/events_clean_stream/ and the warehouse's live part
    curated/user_behavior_live/ (read by the warehouse view user_behavior_current; on gcp also
    streamed into the BigQuery table user_behavior_live, which that view reads there); contract rejects
    go to deadletter/events_stream/; events older than the watermark are counted in
    _state/streaming/events_clean_stream-late_events.json and left to the hourly ETL.

    Runs on (a micro-batch every --trigger-seconds) until Ctrl-C; restarts resume from the checkpoint.
    """
    from shopflow.lake import writer_lock
    from shopflow.transform.stream_retention import min_keep_days

    late_tolerance = timedelta(hours=late_tolerance_hours)
    if keep_days < (needed := min_keep_days(late_tolerance)):
        raise ShopflowError(
            f"--keep-days {keep_days} is less than the {needed} days a late tolerance of "
            f"{late_tolerance_hours:g} h reads back"
        )
    settings = load_settings()
    # One stream per lake: a second one would merge the same micro-batches into the same
    # partitions (read, merge, replace), and the later write of a stale read drops rows.
    # On GCS a short lease: a crashed stream's restart waits at most a minute for it to expire.
    with writer_lock(settings.lake_url, "shopflow stream", name=STREAM_LOCK, lease=STREAM_LEASE):
        _run_stream(
            settings,
            available_now=available_now,
            max_files_per_trigger=max_files_per_trigger,
            late_tolerance=late_tolerance,
            trigger_seconds=trigger_seconds,
            keep_days=keep_days,
        )


def _run_stream(
    settings: Settings,
    *,
    available_now: bool,
    max_files_per_trigger: int | None,
    late_tolerance: timedelta,
    trigger_seconds: float,
    keep_days: int,
) -> None:
    """The stream's run, under the lake's stream lock."""
    from pyspark.errors import PySparkException

    from shopflow.lake import LakeLayout
    from shopflow.transform.engine import etl_engine, open_duckdb_session, stopping
    from shopflow.transform.session import build_spark_session
    from shopflow.transform.stream_live import record_late
    from shopflow.transform.stream_merge import STREAM_FILE_SCHEMA, STREAM_TABLE
    from shopflow.transform.stream_recovery import root_cause_line, screen_after_failure
    from shopflow.transform.stream_retention import CHECK_INTERVAL
    from shopflow.transform.stream_slices import SLICE_MINUTES, split_legacy_partitions
    from shopflow.transform.streaming import (
        checkpoint_location,
        rejects_checkpoint_location,
        spark_read_failures,
        start_events_stream,
        start_rejects_stream,
    )
    from shopflow.warehouse.live import LIVE_TABLE, live_file_schema, live_sink

    layout = LakeLayout.from_settings(settings)
    split, moved = split_legacy_partitions(
        layout, {STREAM_TABLE: STREAM_FILE_SCHEMA, LIVE_TABLE: live_file_schema()}
    )
    _report_quarantined(moved, "left out of the split")
    if split:
        typer.echo(
            f"split {len(split)} hourly partition(s) of an older stream into "
            f"{SLICE_MINUTES}-minute slices",
            err=True,
        )
    spark = build_spark_session(settings, app_name="shopflow-stream")
    checkpoint = checkpoint_location(settings)
    next_retention = [time.monotonic()]
    screened: ScreenedFiles = {}

    def on_batch(batch_id: int, written: list[str]) -> None:
        if written:
            typer.echo(f"micro-batch {batch_id}: replaced {len(written)} file(s)", err=True)
        if time.monotonic() >= next_retention[0]:
            next_retention[0] = time.monotonic() + CHECK_INTERVAL.total_seconds()
            _apply_retention(layout, keep_days)
            _screen_tables(layout, screened)

    failures: list[tuple[int, Exception]] = []

    def on_failure(batch_id: int, error: Exception) -> None:
        failures.append((batch_id, error))

    seen: set[int] = set()

    def report_late(query: StreamingQuery) -> None:
        for progress in query.recentProgress:
            batch_id = int(progress["batchId"])
            if batch_id in seen:
                continue
            seen.add(batch_id)
            skipped = record_late(checkpoint, json.loads(progress.json))
            if skipped:
                typer.echo(
                    f"micro-batch {batch_id}: skipped {skipped} event(s) older than the watermark"
                    " (left to the hourly ETL: they are in raw/events)",
                    err=True,
                )

    trigger = f"{int(trigger_seconds)} seconds"

    def start_queries(sink: LiveSink | None) -> tuple[StreamingQuery, StreamingQuery]:
        query = start_events_stream(
            spark,
            settings,
            available_now=available_now,
            max_files_per_trigger=max_files_per_trigger,
            late_tolerance=f"{int(late_tolerance.total_seconds())} seconds",
            trigger_interval=trigger,
            on_batch=on_batch,
            on_failure=on_failure,
            live_sink=sink,
        )
        rejects = start_rejects_stream(
            spark,
            settings,
            available_now=available_now,
            trigger_interval=trigger,
            on_failure=on_failure,
        )
        typer.echo(
            f"streaming {settings.lake_url}/raw/events -> {STREAM_TABLE}, {LIVE_TABLE}"
            f"{'' if sink is None else f' and BigQuery {settings.bigquery_dataset}.{LIVE_TABLE}'}"
            f" (checkpoint {checkpoint})",
            err=True,
        )
        return query, rejects

    # The merge's DuckDB (`stream_merge`) is closed before the interpreter exits (`stopping`).
    merging = (
        stopping(open_duckdb_session())
        if etl_engine(settings) == "duckdb"
        else contextlib.nullcontext()
    )
    with merging, live_sink(settings, keep_days) as sink:
        try:
            while True:
                try:
                    # Starting can fail too: Spark plans the first micro-batch over the files.
                    _watch(*start_queries(sink), report_late)
                    break
                except KeyboardInterrupt:
                    for running in spark.streams.active:
                        running.stop()
                    raise typer.Abort() from None
                except PySparkException:
                    for running in spark.streams.active:
                        running.stop()
                    # A file it cannot read is moved aside and the stream starts again
                    # (`stream_recovery`); with none to blame, the failure is not the data's.
                    moved = screen_after_failure(
                        layout,
                        (checkpoint, rejects_checkpoint_location(settings)),
                        LIVE_TABLE,
                        live_file_schema(),
                        lambda urls: spark_read_failures(spark, settings, urls),
                    )
                    if not moved:
                        raise
                    _report_quarantined(moved, "starting again without it")
                    failures.clear()
        except PySparkException as exc:
            if failures:  # our own micro-batch code failed: its error, not Spark's wrapper
                batch_id, error = failures[0]
                raise ShopflowError(
                    f"stream failed in micro-batch {batch_id}: {_one_line(error)}"
                ) from None
            raise ShopflowError(f"stream failed: {root_cause_line(exc)}") from None
    typer.echo("stream caught up: every raw event file present at the start is processed")


def _report_quarantined(moved: Sequence[Quarantined], then: str) -> None:
    """One line per file moved to quarantine."""
    for quarantined in moved:
        typer.echo(
            f"quarantined {quarantined.url}: {quarantined.reason} (moved to "
            f"{quarantined.moved_to}); {then}",
            err=True,
        )


def _watch(
    query: StreamingQuery, rejects: StreamingQuery, report_late: Callable[[StreamingQuery], None]
) -> None:
    """Wait for both queries to end (available-now) or for either to fail (raised here);
    report too-late events as micro-batches commit."""
    while query.isActive or rejects.isActive:
        for running in (query, rejects):
            if running.isActive:
                running.awaitTermination(1)  # seconds (typed int); raises if it failed
        report_late(query)
        if query.exception() is not None or rejects.exception() is not None:
            break
    report_late(query)
    for running in (query, rejects):
        running.awaitTermination()  # re-raises a failed query's error


def _one_line(error: Exception) -> str:
    """One line of a micro-batch's error: shopflow's own as it is, any other with its type's
    name (a KeyError's message is the bare key) and, from a Java trace, its root cause."""
    from shopflow.transform.stream_recovery import root_cause_line

    line = root_cause_line(error)
    if isinstance(error, ShopflowError) or line.startswith(type(error).__name__):
        return line
    return f"{type(error).__name__}: {line}"


def _screen_tables(layout: LakeLayout, screened: ScreenedFiles) -> None:
    """Quarantine damaged files of the stream's tables (`screen_stream_tables`; files that passed
    an earlier check unchanged are in `screened`, not read again); a failure is reported and tried
    again at the next check."""
    from shopflow.lake import LakeError
    from shopflow.transform.stream_merge import STREAM_FILE_SCHEMA, STREAM_TABLE
    from shopflow.transform.stream_recovery import screen_stream_tables
    from shopflow.warehouse.live import LIVE_TABLE, live_file_schema

    try:
        moved = screen_stream_tables(
            layout, {STREAM_TABLE: STREAM_FILE_SCHEMA, LIVE_TABLE: live_file_schema()}, screened
        )
    except (OSError, LakeError) as exc:
        typer.echo(f"screening: could not screen the stream's tables ({exc})", err=True)
        return
    _report_quarantined(moved, "its rows are the hourly batch's until it is fixed")


def _apply_retention(layout: LakeLayout, keep_days: int) -> None:
    """Delete the stream's expired dates; a failure is reported and tried again at the next
    check, never allowed to stop the stream."""
    from shopflow.lake import LakeError
    from shopflow.transform.stream_keys import keys_root
    from shopflow.transform.stream_merge import STREAM_TABLE
    from shopflow.transform.stream_retention import delete_expired_stream_dates
    from shopflow.warehouse.live import LIVE_TABLE

    try:
        deleted = delete_expired_stream_dates(
            layout,
            (STREAM_TABLE, LIVE_TABLE),
            keep_days,
            index_roots=(keys_root(layout, STREAM_TABLE),),
        )
    except (OSError, LakeError) as exc:
        typer.echo(
            f"retention: could not delete expired dates ({exc}); trying again later", err=True
        )
        return
    if deleted:
        typer.echo(
            f"retention: deleted {len(deleted)} partition(s) older than {keep_days} days", err=True
        )


def register(app: typer.Typer) -> None:
    """Add the top-level `stream` command to `app`."""
    app.command("stream")(stream)
