"""The bus's own ceiling for the landing benchmark: the landing's consumer draining a topic with
nothing validated or written.

It reads with the same consumer, batch limits and acknowledgements as `land_events`, so the gap
between this row and the *land* row is what validation and the Parquet writes cost, and this row
is what the bus (and its client) can deliver at that backlog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shopflow.settings import Settings


@dataclass(frozen=True, slots=True)
class DrainOutcome:
    """Messages read and acknowledged, and when; times from the first receive call."""

    read: int
    seconds: float
    first_message_seconds: float | None
    receive_calls: int


def drain(settings: Settings, expected: int, idle_stop_seconds: float) -> DrainOutcome:
    """Receive and acknowledge until `expected` messages came or the bus idled (runs in a child)."""
    from shopflow.sources.bus.factory import make_consumer

    consumer = make_consumer(settings)
    read = calls = 0
    first_at: float | None = None
    started = last_at = time.perf_counter()
    try:
        while read < expected:
            batch = consumer.receive_batch(
                min(settings.landing_batch_max_messages, expected - read),
                settings.landing_batch_max_seconds,
            )
            calls += 1
            now = time.perf_counter()
            if not len(batch):
                if now - last_at > idle_stop_seconds:
                    break
                continue
            consumer.acknowledge_batch(batch)
            read += len(batch)
            last_at = time.perf_counter()
            if first_at is None:
                first_at = now
    finally:
        consumer.close()
    return DrainOutcome(
        read=read,
        seconds=last_at - started,
        first_message_seconds=None if first_at is None else first_at - started,
        receive_calls=calls,
    )
