"""The event bus interface: what the simulator publishes to and the landing consumer reads from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as read from the bus, before it is acknowledged.

    `message_id` is the bus's own identity of the delivery: the Pub/Sub message id, or
    `topic/partition/offset` for Kafka. `ack_token` is whatever the consumer needs to acknowledge it.
    """

    payload: bytes
    message_id: str
    publish_ts: datetime | None
    ack_token: object = field(repr=False, compare=False)


class EventPublisher(Protocol):
    """Publishes raw event payloads to the events topic."""

    def publish(self, payloads: Iterable[bytes]) -> int:
        """Publish every payload, block until the bus has accepted all of them, return the count."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class EventConsumer(Protocol):
    """Reads the events subscription (Pub/Sub) or topic (Kafka) at least once."""

    def receive(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        ...

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        """Mark messages as durably handled (ack, or commit offsets); call only after they are written."""
        ...

    def close(self) -> None:
        """Leave without acknowledging anything further: unacknowledged messages are redelivered."""
        ...
