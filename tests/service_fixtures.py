"""Session fixtures that make sure the real local services (Pub/Sub emulator, Kafka broker) run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shopflow.services import ensure_services, stop_services
from shopflow.services.probes import free_ports, probe_kafka, probe_pubsub, split_host_port
from shopflow.settings import BusKind, Settings


def _service(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Reuse a service already answering on its default address, else start one for the session."""
    # Defaults, like the per-test `settings` fixture: developer SHOPFLOW_* values do not apply.
    defaults = Settings(home=tmp_path_factory.mktemp(f"{name}-home"))
    if name == "pubsub":
        assert defaults.pubsub_emulator_host is not None
        answers = probe_pubsub(*split_host_port(defaults.pubsub_emulator_host, 8085))
    else:
        answers = probe_kafka(*split_host_port(defaults.kafka_bootstrap_servers, 9092))
    if answers:
        yield defaults
        return
    ensure_services(defaults, [name])
    try:
        yield defaults
    finally:
        stop_services(defaults, [name])


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a running Pub/Sub emulator (the default one, started if needed)."""
    for settings in _service("pubsub", tmp_path_factory):
        assert settings.pubsub_emulator_host is not None
        yield settings.pubsub_emulator_host


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a running Kafka-protocol broker (the default Tansu, started if needed)."""
    for settings in _service("kafka", tmp_path_factory):
        yield settings.kafka_bootstrap_servers


def unique_name(prefix: str) -> str:
    """A topic/subscription name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    return free_ports(1)[0]


@pytest.fixture
def pubsub_settings(settings: Settings, pubsub_emulator: str) -> Settings:
    """Per-test settings on the Pub/Sub bus with a topic and subscription of its own."""
    topic = unique_name("events")
    return settings.model_copy(
        update={
            "bus": BusKind.PUBSUB,
            "pubsub_emulator_host": pubsub_emulator,
            "events_topic": topic,
            "events_subscription": f"{topic}-landing",
        }
    )


@pytest.fixture
def kafka_settings(settings: Settings, kafka_broker: str) -> Settings:
    """Per-test settings on the Kafka bus with a topic and consumer group of its own."""
    topic = unique_name("events")
    return settings.model_copy(
        update={
            "bus": BusKind.KAFKA,
            "kafka_bootstrap_servers": kafka_broker,
            "events_topic": topic,
            "kafka_consumer_group": f"{topic}-landing",
        }
    )
