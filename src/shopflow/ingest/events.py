"""The streaming landing consumer: bus -> `raw/events/date=/hour=/` and `deadletter/events/`.

It reads the events subscription (Pub/Sub) or topic (Kafka) in batches closed by count or by time,
validates every message against the event contract once, writes the valid ones partitioned by event
hour and the invalid ones, with their raw payload and a reason, to the dead-letter area, and only
then acknowledges the batch. A crash before the acknowledgement means redelivery, so every valid
event lands at least once; duplicates are removed by `event_id` in the ETL. File names derive from
the batch's message ids, so an identical redelivered batch replaces its own file.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Final

from shopflow.contracts import EventBounds, event_bounds
from shopflow.ingest.event_files import PendingWrite, start_write, write_batch
from shopflow.ingest.report import IngestReport
from shopflow.ingest.staging import StagedBatch, stage_messages
from shopflow.lake import LakeLayout, remove_stale_temp_files
from shopflow.settings import Settings
from shopflow.sources.bus.base import EventConsumer, MessageBatch, ReceivedMessage
from shopflow.sources.bus.factory import ensure_event_topic, make_consumer

__all__ = [
    "LandingLimits",
    "StagedBatch",
    "event_bounds",
    "ingest_events",
    "land_events",
    "stage_batch",
    "write_batch",
]

#: Longest single wait on the bus, so a stop request is noticed quickly.
POLL_SECONDS: Final = 1.0
#: Files of a batch written at once (their fsyncs overlap).
WRITE_THREADS: Final = 4
#: A temp file older than this belongs to no live writer (a batch is written in seconds).
STALE_TEMP_AGE: Final = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class LandingLimits:
    """When a batch closes (count or age) and when the whole run ends (None = never)."""

    batch_max_messages: int
    batch_max_seconds: float
    max_messages: int | None = None
    max_seconds: float | None = None
    idle_stop_seconds: float | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        max_messages: int | None = None,
        max_seconds: float | None = None,
        idle_stop_seconds: float | None = None,
    ) -> LandingLimits:
        """Batch limits from settings, run limits from the caller."""
        return cls(
            batch_max_messages=settings.landing_batch_max_messages,
            batch_max_seconds=settings.landing_batch_max_seconds,
            max_messages=max_messages,
            max_seconds=max_seconds,
            idle_stop_seconds=idle_stop_seconds,
        )


def stage_batch(
    messages: Sequence[ReceivedMessage] | MessageBatch,
    bounds: EventBounds | None = None,
    ingest_ts: datetime | None = None,
) -> StagedBatch:
    """Validate every message against the event contract and `bounds` (default: `EventBounds()`)
    at `ingest_ts` (default: now); in bulk, see `shopflow.ingest.staging`.

    No payload can stop the batch: anything a message makes fail is its dead-letter reason, so the
    valid messages around it still land and the batch is acknowledged.
    """
    batch = messages if isinstance(messages, MessageBatch) else MessageBatch.from_messages(messages)
    return stage_messages(batch, bounds or EventBounds(), ingest_ts or datetime.now(UTC))


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into a stop request while landing (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def land_events(
    consumer: EventConsumer,
    layout: LakeLayout,
    limits: LandingLimits,
    *,
    stop: threading.Event | None = None,
    on_batch: Callable[[IngestReport], None] | None = None,
    bounds: EventBounds | None = None,
) -> IngestReport:
    """Land batches until a limit is reached, the bus stays idle, or `stop` is set.

    A batch is read, validated, then its files are written (concurrently) while the next batch is
    read and validated; a batch is acknowledged only once all its files are committed, and
    batches are acknowledged in the order they were read.

    On a stop request the open batch is finished: written, then acknowledged. A process killed
    outright leaves its open batch unacknowledged, and the bus delivers it again.
    """
    stop = stop or threading.Event()
    bounds = bounds or EventBounds()
    report = IngestReport(source="events")
    started = time.monotonic()
    last_message_at = started
    in_flight: tuple[PendingWrite, MessageBatch] | None = None

    def run_over() -> bool:
        now = time.monotonic()
        if limits.max_seconds is not None and now - started >= limits.max_seconds:
            return True
        if limits.max_messages is not None and report.read >= limits.max_messages:
            return True
        return (
            limits.idle_stop_seconds is not None
            and now - last_message_at >= limits.idle_stop_seconds
        )

    def settle() -> None:
        """Wait until the batch in flight is written, then acknowledge it."""
        nonlocal in_flight
        if in_flight is None:
            return
        pending, written = in_flight
        in_flight = None
        pending.wait(report)
        consumer.acknowledge_batch(written)
        if on_batch:
            on_batch(report)

    # Leaving on an error waits for the files in flight but acknowledges nothing more.
    with ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="landing-write") as writers:
        while not stop.is_set() and not run_over():
            parts: list[MessageBatch] = []
            size = 0
            batch_started = time.monotonic()
            while not stop.is_set() and size < limits.batch_max_messages:
                if in_flight is not None and in_flight[0].done():
                    settle()
                wanted = limits.batch_max_messages - size
                if limits.max_messages is not None:
                    wanted = min(wanted, limits.max_messages - report.read - size)
                remaining = limits.batch_max_seconds - (time.monotonic() - batch_started)
                if wanted <= 0 or remaining <= 0:
                    break
                received = consumer.receive_batch(wanted, min(POLL_SECONDS, remaining))
                if len(received):
                    parts.append(received)
                    size += len(received)
                    last_message_at = time.monotonic()
                elif not parts and run_over():
                    break
            if not parts:
                continue
            batch = MessageBatch.join(parts)
            report.read += len(batch)
            ingest_ts = datetime.now(UTC)
            staged = stage_messages(batch, bounds, ingest_ts)
            settle()  # batches are acknowledged in order
            in_flight = (start_write(layout, staged, ingest_ts, writers), batch)
        settle()
    report.seconds = time.monotonic() - started
    return report


def ingest_events(
    settings: Settings,
    *,
    max_messages: int | None = None,
    max_seconds: float | None = None,
    idle_stop_seconds: float | None = None,
    on_batch: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Run the landing consumer for the configured bus until a limit or SIGTERM/SIGINT."""
    ensure_event_topic(settings)
    layout = LakeLayout.from_settings(settings)
    # Temp files of a landing process killed mid-write: invisible to readers, but not to the disk.
    stale_before = datetime.now(UTC) - STALE_TEMP_AGE
    for root in (layout.events_root(), layout.deadletter_root("events")):
        remove_stale_temp_files(root, older_than=stale_before)
    consumer = make_consumer(settings)
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            return land_events(
                consumer,
                layout,
                LandingLimits.from_settings(settings, max_messages, max_seconds, idle_stop_seconds),
                stop=stop,
                on_batch=on_batch,
                bounds=event_bounds(settings),
            )
    finally:
        consumer.close()
