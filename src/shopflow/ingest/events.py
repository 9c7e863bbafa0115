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
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import FrameType
from typing import Final

import pyarrow as pa

from shopflow.contracts import (
    DEADLETTER_SCHEMA,
    RAW_EVENT_SCHEMA,
    Event,
    EventBounds,
    InvalidEventError,
    parse_event,
)
from shopflow.ingest.report import IngestReport
from shopflow.lake import LakeLayout, remove_stale_temp_files, write_parquet_atomic
from shopflow.lake.commit_log import register_files
from shopflow.settings import Settings
from shopflow.sources.bus.base import EventConsumer, ReceivedMessage
from shopflow.sources.bus.factory import ensure_event_topic, make_consumer

#: Longest single wait on the bus, so a stop request is noticed quickly.
POLL_SECONDS: Final = 1.0
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


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """One batch split into valid events (with their messages) and dead letters with reasons."""

    events: list[tuple[Event, ReceivedMessage]]
    dead_letters: list[tuple[ReceivedMessage, str]]


def event_bounds(settings: Settings) -> EventBounds:
    """The landing's event bounds from settings."""
    return EventBounds(
        min_event_ts=settings.event_min_ts.astimezone(UTC),
        max_future=timedelta(seconds=settings.event_max_future_seconds),
        max_price_inr=settings.event_max_price_inr,
    )


def stage_batch(
    messages: Sequence[ReceivedMessage],
    bounds: EventBounds | None = None,
    ingest_ts: datetime | None = None,
) -> StagedBatch:
    """Validate every message against the event contract and `bounds` (default: `EventBounds()`)
    at `ingest_ts` (default: now).

    No payload can stop the batch: anything a message makes fail is its dead-letter reason, so the
    valid messages around it still land and the batch is acknowledged.
    """
    bounds = bounds or EventBounds()
    ingest_ts = ingest_ts or datetime.now(UTC)
    events: list[tuple[Event, ReceivedMessage]] = []
    dead_letters: list[tuple[ReceivedMessage, str]] = []
    for message in messages:
        try:
            event = parse_event(message.payload)
            bounds.check(event, ingest_ts)
        except InvalidEventError as error:
            dead_letters.append((message, str(error)))
        except Exception as error:  # a payload must never stop landing, whatever it breaks
            dead_letters.append((message, f"payload could not be checked: {error!r}"[:300]))
        else:
            events.append((event, message))
    return StagedBatch(events, dead_letters)


def events_table(events: Sequence[tuple[Event, ReceivedMessage]], ingest_ts: datetime) -> pa.Table:
    """Valid events of one partition as a raw-zone table."""
    return pa.Table.from_pydict(
        {
            "event_id": [e.event_id for e, _ in events],
            "event_name": [e.event_name for e, _ in events],
            "product_id": [e.product_id for e, _ in events],
            "user_id": [e.user_id for e, _ in events],
            "order_id": [e.order_id for e, _ in events],
            "price": [e.price for e, _ in events],
            "event_ts": [e.event_ts for e, _ in events],
            "session_id": [e.session_id for e, _ in events],
            "message_id": [m.message_id for _, m in events],
            "publish_ts": [m.publish_ts for _, m in events],
            "ingest_ts": [ingest_ts] * len(events),
        },
        schema=RAW_EVENT_SCHEMA,
    )


def dead_letters_table(
    dead_letters: Sequence[tuple[ReceivedMessage, str]], ingest_ts: datetime
) -> pa.Table:
    """Rejected messages with their raw payload and reason."""
    return pa.Table.from_pydict(
        {
            "payload": [m.payload for m, _ in dead_letters],
            "reason": [reason for _, reason in dead_letters],
            "message_id": [m.message_id for m, _ in dead_letters],
            "publish_ts": [m.publish_ts for m, _ in dead_letters],
            "ingest_ts": [ingest_ts] * len(dead_letters),
        },
        schema=DEADLETTER_SCHEMA,
    )


def _first_ts(messages: Sequence[ReceivedMessage], fallback: datetime) -> datetime:
    # Publish time, not ingest time, so a redelivered identical batch gets the same file name.
    stamps = [m.publish_ts for m in messages if m.publish_ts is not None]
    return min(stamps) if stamps else fallback


def write_batch(
    layout: LakeLayout,
    staged: StagedBatch,
    report: IngestReport,
    ingest_ts: datetime | None = None,
) -> None:
    """Write one staged batch durably: a file per event hour, one dead-letter file.

    `ingest_ts` defaults to now; a replay of simulated time (benchmarks) passes its own clock.
    """
    ingest_ts = ingest_ts or datetime.now(UTC)
    by_hour: dict[tuple[date, int], list[tuple[Event, ReceivedMessage]]] = defaultdict(list)
    for event, message in staged.events:
        by_hour[(event.date, event.hour)].append((event, message))
    event_files = []
    for (day, hour), events in sorted(by_hour.items()):
        messages = [m for _, m in events]
        first_ts = _first_ts(messages, min(e.event_ts for e, _ in events))
        url = layout.event_batch_file_in(day, hour, first_ts, (m.message_id for m in messages))
        write_parquet_atomic(events_table(events, ingest_ts), url)
        event_files.append(url)
        report.files.append(url)
        report.written += len(events)
    # After the files are durable, before anything is acknowledged: the ETL reads what is recorded.
    register_files(layout, "events", event_files)
    if staged.dead_letters:
        messages = [m for m, _ in staged.dead_letters]
        first_ts = _first_ts(messages, ingest_ts)
        url = layout.deadletter_file("events", first_ts, (m.message_id for m in messages))
        write_parquet_atomic(dead_letters_table(staged.dead_letters, ingest_ts), url)
        report.files.append(url)
        report.deadlettered += len(staged.dead_letters)


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

    On a stop request the open batch is finished: written, then acknowledged. A process killed
    outright leaves its open batch unacknowledged, and the bus delivers it again.
    """
    stop = stop or threading.Event()
    report = IngestReport(source="events")
    started = time.monotonic()
    last_message_at = started

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

    while not stop.is_set() and not run_over():
        batch: list[ReceivedMessage] = []
        batch_started = time.monotonic()
        while not stop.is_set() and len(batch) < limits.batch_max_messages:
            wanted = limits.batch_max_messages - len(batch)
            if limits.max_messages is not None:
                wanted = min(wanted, limits.max_messages - report.read - len(batch))
            remaining = limits.batch_max_seconds - (time.monotonic() - batch_started)
            if wanted <= 0 or remaining <= 0:
                break
            received = consumer.receive(wanted, min(POLL_SECONDS, remaining))
            if received:
                batch.extend(received)
                last_message_at = time.monotonic()
            elif not batch and run_over():
                break
        if not batch:
            continue
        report.read += len(batch)
        ingest_ts = datetime.now(UTC)
        write_batch(layout, stage_batch(batch, bounds, ingest_ts), report, ingest_ts)
        consumer.acknowledge(batch)
        if on_batch:
            on_batch(report)
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
