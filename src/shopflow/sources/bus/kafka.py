"""Kafka bus through confluent-kafka (any Kafka-protocol broker; locally Tansu)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, cast

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from shopflow.errors import ServiceUnavailableError, ShopflowError
from shopflow.services.probes import port_open, split_host_port
from shopflow.settings import Settings
from shopflow.sources.bus.base import MessageBatch, ReceivedMessage

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 3
FLUSH_TIMEOUT_SECONDS = 120.0
#: Commit failures that only mean "the partition moved to another member": the messages are
#: redelivered there, and landing deduplicates by event_id.
_REBALANCE_CODES = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
}


def _unreachable(settings: Settings, detail: str = "") -> ServiceUnavailableError:
    extra = f" ({detail})" if detail else ""
    return ServiceUnavailableError(
        f"Kafka broker at {settings.kafka_bootstrap_servers} is not reachable{extra}: "
        "run `shopflow services up kafka`"
    )


def _base_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": "shopflow",
        "logger": log,
        "socket.connection.setup.timeout.ms": int(settings.bus_call_timeout_seconds * 1000),
    }


def _check_reachable(settings: Settings, client: Producer | Consumer | AdminClient) -> None:
    """Fail within seconds, with one clear line, when no broker answers."""
    servers = [split_host_port(s, 9092) for s in settings.kafka_bootstrap_servers.split(",")]
    if not any(port_open(host, port, timeout=2.0) for host, port in servers):
        raise _unreachable(settings)
    try:
        client.list_topics(timeout=settings.bus_call_timeout_seconds)
    except KafkaException as exc:
        raise _unreachable(settings, str(exc.args[0])) from None


def consumer_lag(settings: Settings, topic: str | None = None) -> int:
    """Messages of the events topic that the landing consumer group has not committed yet (a
    partition the group never committed counts from its first retained offset)."""
    name = topic or settings.events_topic
    timeout = settings.bus_call_timeout_seconds
    consumer = Consumer(
        {
            **_base_config(settings),
            "group.id": settings.kafka_consumer_group,
            "enable.auto.commit": False,
        }
    )
    try:
        _check_reachable(settings, consumer)
        metadata = consumer.list_topics(name, timeout=timeout).topics.get(name)
        if metadata is None or metadata.error is not None:
            return 0
        partitions = [TopicPartition(name, p) for p in sorted(metadata.partitions)]
        lag = 0
        for committed in consumer.committed(partitions, timeout=timeout):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(name, committed.partition), timeout=timeout, cached=False
            )
            start = committed.offset if committed.offset >= 0 else low
            lag += max(0, high - start)
        return lag
    except KafkaException as exc:
        raise _unreachable(settings, str(exc.args[0])) from None
    finally:
        consumer.close()


def ensure_topic(
    settings: Settings, topic: str | None = None, partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create the topic with a few partitions unless it exists (idempotent)."""
    topic = topic or settings.events_topic
    admin = AdminClient(_base_config(settings))
    _check_reachable(settings, admin)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=settings.bus_call_timeout_seconds,
        request_timeout=settings.bus_call_timeout_seconds,
    )
    try:
        futures[topic].result(timeout=settings.bus_call_timeout_seconds)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise ShopflowError(f"could not create Kafka topic {topic}: {error.str()}") from None


class KafkaPublisher:
    """Publishes payloads to one topic: idempotent producer, batched and compressed."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self._settings = settings
        self.topic = topic or settings.events_topic
        self._producer = Producer(
            {
                **_base_config(settings),
                # Tansu answers InitProducerId, so retries cannot duplicate or reorder.
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
                "message.timeout.ms": 60_000,
            }
        )
        _check_reachable(settings, self._producer)
        self._errors: list[KafkaError] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._errors.append(error)

    def publish(self, payloads: Iterable[bytes]) -> int:
        """Produce every payload, flush, and fail if any delivery failed."""
        self._errors = []
        count = 0
        for payload in payloads:
            while True:
                try:
                    self._producer.produce(self.topic, value=payload, on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain it
                    self._producer.poll(0.05)
            count += 1
            if count % 1000 == 0:
                self._producer.poll(0)
        left = self._producer.flush(FLUSH_TIMEOUT_SECONDS)
        if left:
            raise _unreachable(
                self._settings, f"{left} messages undelivered after {FLUSH_TIMEOUT_SECONDS:.0f} s"
            )
        if self._errors:
            first = self._errors[0]
            if first.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT):
                raise _unreachable(self._settings, first.str())
            raise ShopflowError(
                f"{len(self._errors)} of {count} Kafka deliveries to {self.topic} failed: "
                f"{first.str()}"
            )
        return count

    def close(self) -> None:
        """Deliver anything still queued."""
        self._producer.flush(FLUSH_TIMEOUT_SECONDS)


class KafkaConsumer:
    """Reads one topic in a consumer group; offsets are committed only by `acknowledge`."""

    def __init__(
        self, settings: Settings, topic: str | None = None, group: str | None = None
    ) -> None:
        self._settings = settings
        self.topic = topic or settings.events_topic
        self.group = group or settings.kafka_consumer_group
        self._consumer = Consumer(
            {
                **_base_config(settings),
                "group.id": self.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                # Tansu holds a first JoinGroup for half the session timeout; 6 s is the
                # smallest value real brokers accept by default (group.min.session.timeout.ms).
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "max.poll.interval.ms": 600_000,
                # Larger fetches: fewer round trips per landing batch (each batch is tens of
                # thousands of ~200-byte messages). A/B on Tansu: +15-20 % landing throughput.
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "fetch.max.bytes": 100 * 1024 * 1024,
                "queued.min.messages": 500_000,
            }
        )
        _check_reachable(settings, self._consumer)
        self._consumer.subscribe([self.topic])
        self._committed: dict[tuple[str, int], int] = {}

    def receive_batch(self, max_messages: int, timeout_seconds: float) -> MessageBatch:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        first = self._consumer.poll(max(timeout_seconds, 0))
        if first is None:
            return MessageBatch()
        raw = [first]
        while len(raw) < max_messages:
            # timeout=0: only what librdkafka has already fetched; never wait for more.
            more = self._consumer.consume(min(max_messages - len(raw), 10_000), timeout=0)
            if not more:
                break
            raw.extend(more)
        # map() over the C methods: no Python frame per message (a batch holds tens of thousands).
        if any(map(Message.error, raw)):
            raw = self._without_errors(raw)
        topic = self.topic
        partitions = list(map(Message.partition, raw))
        offsets = list(map(Message.offset, raw))
        values = list(map(Message.value, raw))
        # A tombstone (no value) is an empty payload, dead-lettered as such.
        payloads = [v or b"" for v in values] if None in values else cast(list[bytes], values)
        return MessageBatch(
            payloads=payloads,
            message_ids=[f"{topic}/{p}/{o}" for p, o in zip(partitions, offsets, strict=True)],
            publish_ts_us=[
                None if kind == TIMESTAMP_NOT_AVAILABLE else ms * 1000
                for kind, ms in map(Message.timestamp, raw)
            ],
            ack_tokens=list(zip(repeat(topic), partitions, offsets)),
        )

    def _without_errors(self, raw: list[Message]) -> list[Message]:
        """The messages of `raw` that are data; a transient error is skipped, any other raises."""
        out = []
        for message in raw:
            error = message.error()
            if error is None:
                out.append(message)
                continue
            if error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                raise _unreachable(self._settings, error.str())
            if error.fatal() or not error.retriable():
                raise ShopflowError(f"Kafka consumer error on {self.topic}: {error.str()}")
        return out

    def receive(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        return self.receive_batch(max_messages, timeout_seconds).messages()

    def acknowledge_batch(self, batch: MessageBatch) -> None:
        """Commit, synchronously, the highest offset + 1 of each partition seen in `batch`."""
        self._commit(batch.ack_tokens)

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        """Commit, synchronously, the highest offset + 1 of each partition seen in `messages`."""
        self._commit([m.ack_token for m in messages])

    def _commit(self, tokens: Sequence[object]) -> None:
        # Sorted by (topic, partition, offset), so the last offset a partition keeps is its
        # highest; all in C, no Python frame per message.
        ordered = sorted(cast(Sequence[tuple[str, int, int]], tokens))
        highest: dict[tuple[str, int], int] = dict(
            zip(map(itemgetter(0, 1), ordered), map(itemgetter(2), ordered), strict=True)
        )
        offsets = [
            TopicPartition(topic, partition, offset + 1)
            for (topic, partition), offset in highest.items()
            if offset + 1 > self._committed.get((topic, partition), -1)
        ]
        if not offsets:
            return
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in _REBALANCE_CODES:
                log.warning("offset commit lost to a rebalance (%s); redelivery expected", error)
                return
            if error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                raise _unreachable(self._settings, error.str()) from None
            raise ShopflowError(f"Kafka offset commit failed: {error.str()}") from None
        for tp in results or []:
            if tp.error is not None:
                raise ShopflowError(
                    f"Kafka offset commit failed for {tp.topic}[{tp.partition}]: {tp.error}"
                )
            self._committed[(tp.topic, tp.partition)] = tp.offset

    def close(self) -> None:
        """Leave the group without committing anything further."""
        started = time.monotonic()
        self._consumer.close()
        log.debug("kafka consumer closed in %.2f s", time.monotonic() - started)
