"""Both buses through the factory, against the real emulator and the real broker."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from shopflow.settings import Settings
from shopflow.sources.bus.base import EventConsumer, ReceivedMessage
from shopflow.sources.bus.factory import ensure_event_topic, make_consumer, make_publisher

pytestmark = pytest.mark.integration

BUSES = ["pubsub-sync", "pubsub-streaming", "kafka"]
#: How long a test waits for unacknowledged messages to come back (see the redelivery test).
REDELIVERY_DEADLINE_S = 150.0


@pytest.fixture(params=BUSES)
def bus_settings(request: pytest.FixtureRequest) -> Settings:
    """Settings for one bus (and pull mode), with a topic of the test's own, already created."""
    if request.param == "kafka":
        settings: Settings = request.getfixturevalue("kafka_settings")
    else:
        settings = request.getfixturevalue("pubsub_settings").model_copy(
            update={"pubsub_pull_mode": request.param.removeprefix("pubsub-")}
        )
    ensure_event_topic(settings)
    return settings


def sample_payloads(n: int) -> list[bytes]:
    """Distinct payloads: JSON-ish ASCII, unicode (multi-byte, emoji, NUL) and raw bytes."""
    fixed = [
        '{"event_name": "view", "product": "Kurta — रंगीन 👗"}'.encode(),
        "\u0000nul inside and ünïcödé".encode(),
        bytes(range(256)),
        b"\xff\xfe\xfd not utf-8 \x80\x81",
        b"x" * 100_000,
    ]
    return fixed + [f"event-{i}-€".encode() + bytes([i % 256]) for i in range(n - len(fixed))]


def receive_all(
    consumer: EventConsumer, expected: int, deadline_s: float = 60.0
) -> list[ReceivedMessage]:
    """Receive until `expected` messages arrived or the deadline passed (a Kafka join takes ~3 s)."""
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < expected and time.monotonic() < deadline:
        got.extend(consumer.receive(max_messages=5000, timeout_seconds=1.0))
    return got


def test_payloads_round_trip_intact(bus_settings: Settings) -> None:
    payloads = sample_payloads(3000)
    publisher = make_publisher(bus_settings)
    try:
        assert publisher.publish(iter(payloads)) == len(payloads)
    finally:
        publisher.close()

    consumer = make_consumer(bus_settings)
    try:
        got = receive_all(consumer, len(payloads))
        assert Counter(m.payload for m in got) == Counter(payloads)
        assert len({m.message_id for m in got}) == len(got)
        assert all(m.publish_ts is not None and m.publish_ts.tzinfo is not None for m in got)
        consumer.acknowledge(got)
        assert consumer.receive(max_messages=100, timeout_seconds=2.0) == []
    finally:
        consumer.close()


def test_unacknowledged_messages_come_back_after_close(bus_settings: Settings) -> None:
    payloads = [f"msg-{i}".encode() for i in range(40)]
    publisher = make_publisher(bus_settings)
    publisher.publish(payloads)
    publisher.close()

    first = make_consumer(bus_settings)
    try:
        got = receive_all(first, len(payloads))
        assert len(got) == len(payloads)
        # Received order is per-partition order on Kafka, so a prefix acks a prefix of each partition.
        acked, unacked = got[:25], got[25:]
        first.acknowledge(acked)
    finally:
        first.close()

    # Read back with Pull: the emulator's StreamingPull gets a nacked message only after its ack
    # deadline. After a StreamingPull consumer's close the wait can be longer: the emulator fails
    # on the cancelled stream (a NoSuchMethodError in its gRPC server), keeps leasing messages to
    # it, and each lease is `STREAM_LEASE_SECONDS`; up to 61 s was seen with both cores busy. The
    # contract is that they come back, not how fast (Pub/Sub calls a nack best effort).
    reader = bus_settings.model_copy(update={"pubsub_pull_mode": "sync"})
    second = make_consumer(reader)
    try:
        again = receive_all(second, len(unacked), deadline_s=REDELIVERY_DEADLINE_S)
        assert sorted(m.payload for m in again) == sorted(m.payload for m in unacked)
        assert second.receive(max_messages=100, timeout_seconds=2.0) == []
        second.acknowledge(again)
    finally:
        second.close()

    third = make_consumer(reader)
    try:
        assert receive_all(third, 1, deadline_s=8.0) == []
    finally:
        third.close()


def test_ensure_event_topic_is_idempotent(bus_settings: Settings) -> None:
    ensure_event_topic(bus_settings)
    ensure_event_topic(bus_settings)
    publisher = make_publisher(bus_settings)
    try:
        assert publisher.publish([b"still works"]) == 1
    finally:
        publisher.close()


def test_a_subscription_deleted_while_reading_is_one_clear_error(pubsub_settings: Settings) -> None:
    from shopflow.errors import ShopflowError
    from shopflow.sources.bus.pubsub import make_subscriber_client

    settings = pubsub_settings.model_copy(update={"pubsub_pull_mode": "sync"})
    ensure_event_topic(settings)
    publisher = make_publisher(settings)
    try:
        publisher.publish([f"msg-{i}".encode() for i in range(30)])
    finally:
        publisher.close()
    consumer = make_consumer(settings)
    admin = make_subscriber_client(settings)
    try:
        assert receive_all(consumer, 1)  # the read-ahead is running
        admin.delete_subscription(
            subscription=admin.subscription_path(settings.gcp_project, settings.events_subscription)
        )
        deadline = time.monotonic() + 30
        with pytest.raises(ShopflowError, match="no longer exists") as raised:
            while time.monotonic() < deadline:
                consumer.receive(max_messages=100, timeout_seconds=1.0)
        assert "\n" not in str(raised.value)
    finally:
        consumer.close()  # its nack meets the missing subscription: no error of its own
        admin.close()
