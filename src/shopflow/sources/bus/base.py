"""The event bus interface: what the simulator publishes to and the landing consumer reads from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def to_epoch_us(ts: datetime) -> int:
    """A time-zone-aware timestamp as integer microseconds since the Unix epoch (exact)."""
    return (ts - _EPOCH) // _MICROSECOND


def from_epoch_us(us: int) -> datetime:
    """The UTC timestamp `us` microseconds after the Unix epoch (exact)."""
    return _EPOCH + timedelta(microseconds=us)


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


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """Messages read from the bus as columns: one Python object per batch, not one per message.

    Item `i` of every list belongs to the same message. `publish_ts_us` is the bus's publish time
    in microseconds since the Unix epoch (None where the bus has none); `ack_tokens` are the
    consumer's, as in `ReceivedMessage.ack_token`.
    """

    payloads: list[bytes] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    publish_ts_us: list[int | None] = field(default_factory=list)
    ack_tokens: list[object] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.payloads)

    @classmethod
    def from_messages(cls, messages: Iterable[ReceivedMessage]) -> MessageBatch:
        """The columns of `messages`."""
        batch = cls()
        for m in messages:
            batch.payloads.append(m.payload)
            batch.message_ids.append(m.message_id)
            batch.publish_ts_us.append(None if m.publish_ts is None else to_epoch_us(m.publish_ts))
            batch.ack_tokens.append(m.ack_token)
        return batch

    @classmethod
    def join(cls, batches: Sequence[MessageBatch]) -> MessageBatch:
        """One batch holding every message of `batches`, in order."""
        if len(batches) == 1:
            return batches[0]
        joined = cls()
        for b in batches:
            joined.payloads.extend(b.payloads)
            joined.message_ids.extend(b.message_ids)
            joined.publish_ts_us.extend(b.publish_ts_us)
            joined.ack_tokens.extend(b.ack_tokens)
        return joined

    def message(self, i: int) -> ReceivedMessage:
        """Message `i` as a `ReceivedMessage`."""
        us = self.publish_ts_us[i]
        return ReceivedMessage(
            payload=self.payloads[i],
            message_id=self.message_ids[i],
            publish_ts=None if us is None else from_epoch_us(us),
            ack_token=self.ack_tokens[i],
        )

    def messages(self) -> list[ReceivedMessage]:
        """Every message as a `ReceivedMessage` (one object each: for callers that want them)."""
        return [self.message(i) for i in range(len(self))]


class EventPublisher(Protocol):
    """Publishes raw event payloads to the events topic."""

    def publish(self, payloads: Iterable[bytes]) -> int:
        """Publish every payload, block until the bus has accepted all of them, return the count."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class EventConsumer(Protocol):
    """Reads the events subscription (Pub/Sub) or topic (Kafka) at least once.

    `receive_batch`/`acknowledge_batch` are the columnar forms the landing consumer uses;
    `receive`/`acknowledge` hand out and take one `ReceivedMessage` per message.
    """

    def receive_batch(self, max_messages: int, timeout_seconds: float) -> MessageBatch:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        ...

    def acknowledge_batch(self, batch: MessageBatch) -> None:
        """Mark every message of `batch` as durably handled; call only after they are written."""
        ...

    def receive(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        ...

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        """Mark messages as durably handled (ack, or commit offsets); call only after they are written."""
        ...

    def close(self) -> None:
        """Leave without acknowledging anything further: unacknowledged messages are redelivered."""
        ...
