"""Chooses the bus implementation from `settings.bus`."""

from __future__ import annotations

from shopflow.settings import BusKind, Settings
from shopflow.sources.bus.base import EventConsumer, EventPublisher


def make_publisher(settings: Settings) -> EventPublisher:
    """A publisher to `settings.events_topic` on the configured bus."""
    if settings.bus is BusKind.KAFKA:
        from shopflow.sources.bus.kafka import KafkaPublisher

        return KafkaPublisher(settings)
    from shopflow.sources.bus.pubsub import PubSubPublisher

    return PubSubPublisher(settings)


def make_consumer(settings: Settings) -> EventConsumer:
    """A consumer of `settings.events_subscription` (Pub/Sub) or of the events topic in
    `settings.kafka_consumer_group` (Kafka)."""
    if settings.bus is BusKind.KAFKA:
        from shopflow.sources.bus.kafka import KafkaConsumer

        return KafkaConsumer(settings)
    from shopflow.sources.bus.pubsub_consumer import PubSubConsumer

    return PubSubConsumer(settings)


def ensure_event_topic(settings: Settings) -> None:
    """Create the events topic (and, for Pub/Sub, the landing subscription) if missing."""
    if settings.bus is BusKind.KAFKA:
        from shopflow.sources.bus.kafka import ensure_topic

        ensure_topic(settings)
        return
    from shopflow.sources.bus.pubsub import ensure_topic_and_subscription

    ensure_topic_and_subscription(settings)


def landing_backlog(settings: Settings) -> int | None:
    """Events on the bus the landing consumer has not taken yet, where the bus reports it:
    Kafka's consumer-group lag; None for Pub/Sub (its backlog is a Cloud Monitoring metric,
    `subscription/num_undelivered_messages`, which neither the client library nor the emulator
    serves)."""
    if settings.bus is BusKind.KAFKA:
        from shopflow.sources.bus.kafka import consumer_lag

        return consumer_lag(settings)
    return None
