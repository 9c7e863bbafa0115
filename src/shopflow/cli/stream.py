"""`shopflow stream`: the Spark Structured Streaming job that keeps `events_clean_stream` fresh."""

from __future__ import annotations

from typing import Annotated

import typer

from shopflow.errors import ShopflowError
from shopflow.settings import load_settings


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
            help="Event-time lateness still deduplicated and kept; later events are dropped.",
        ),
    ] = 12.0,
    trigger_seconds: Annotated[
        float, typer.Option(min=1.0, help="Micro-batch interval when running on.")
    ] = 10.0,
) -> None:
    """Stream raw/events/ into curated/events_clean_stream/ (checkpoint in the lake's _state/).

    Restarts resume from the checkpoint. Stop a continuous run with Ctrl-C.
    """
    from pyspark.errors import PySparkException

    from shopflow.transform.session import build_spark_session
    from shopflow.transform.streaming import STREAM_TABLE, checkpoint_location, start_events_stream

    settings = load_settings()
    spark = build_spark_session(settings, app_name="shopflow-stream")

    def on_batch(batch_id: int, written: list[str]) -> None:
        if written:
            typer.echo(f"micro-batch {batch_id}: replaced {len(written)} partition(s)")

    try:
        query = start_events_stream(
            spark,
            settings,
            available_now=available_now,
            max_files_per_trigger=max_files_per_trigger,
            late_tolerance=f"{int(late_tolerance_hours * 3600)} seconds",
            trigger_interval=f"{int(trigger_seconds)} seconds",
            on_batch=on_batch,
        )
        typer.echo(
            f"streaming {settings.lake_url}/raw/events -> {STREAM_TABLE} "
            f"(checkpoint {checkpoint_location(settings)})"
        )
        try:
            query.awaitTermination()
        except KeyboardInterrupt:
            query.stop()
            raise typer.Abort() from None
    except PySparkException as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShopflowError(f"stream failed: {first_line}") from None
    typer.echo("stream caught up: every raw event file present at the start is processed")


def register(app: typer.Typer) -> None:
    """Add the top-level `stream` command to `app`."""
    app.command("stream")(stream)
