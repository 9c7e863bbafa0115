"""The landing benchmark's cases: a bus and pull mode each, on a fresh topic and lake of their own."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Final

from shopflow.settings import BusKind, Settings

#: Case name -> (bus, Pub/Sub pull mode).
CASES: Final[dict[str, tuple[BusKind, str]]] = {
    "pubsub-sync": (BusKind.PUBSUB, "sync"),
    "pubsub-streaming": (BusKind.PUBSUB, "streaming"),
    "kafka": (BusKind.KAFKA, "sync"),
}


def case_settings(base: Settings, case: str, scratch: Path) -> Settings:
    """Settings for one case: its bus and pull mode, a fresh topic, a lake of its own."""
    bus, pull_mode = CASES[case]
    topic = f"bench-landing-{case}-{uuid.uuid4().hex[:8]}"
    home = scratch / case
    home.mkdir(parents=True, exist_ok=True)
    return base.model_copy(
        update={
            "home": home,
            "lake_root": str(home / "lake"),
            "bus": bus,
            "pubsub_pull_mode": pull_mode,
            "events_topic": topic,
            "events_subscription": f"{topic}-landing",
            "kafka_consumer_group": f"{topic}-landing",
        }
    )


def drop_topic(settings: Settings) -> None:
    """Delete the benchmark's topic (and subscription) so the broker frees its messages."""
    if settings.bus is BusKind.KAFKA:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        for future in admin.delete_topics([settings.events_topic], operation_timeout=10).values():
            with contextlib.suppress(Exception):
                future.result(timeout=20)
        return
    from shopflow.sources.bus.pubsub import make_publisher_client, make_subscriber_client

    subscriber = make_subscriber_client(settings)
    publisher = make_publisher_client(settings)
    try:
        with contextlib.suppress(Exception):
            subscriber.delete_subscription(
                subscription=subscriber.subscription_path(
                    settings.gcp_project, settings.events_subscription
                ),
                timeout=10,
            )
        with contextlib.suppress(Exception):
            publisher.delete_topic(
                topic=publisher.topic_path(settings.gcp_project, settings.events_topic), timeout=10
            )
    finally:
        subscriber.close()
        publisher.transport.close()
