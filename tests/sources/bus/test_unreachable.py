"""An unreachable bus is one actionable line, raised within seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from shopflow.errors import ServiceUnavailableError
from shopflow.settings import BusKind, Settings
from shopflow.sources.bus.factory import ensure_event_topic, make_consumer, make_publisher
from tests.service_fixtures import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("bus", [BusKind.PUBSUB, BusKind.KAFKA])
@pytest.mark.parametrize("action", [make_publisher, make_consumer, ensure_event_topic])
def test_unreachable_bus_fails_fast_and_clearly(
    settings: Settings, bus: BusKind, action: Callable[[Settings], object]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    dead = settings.model_copy(
        update={"bus": bus, "pubsub_emulator_host": address, "kafka_bootstrap_servers": address}
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as info:
        action(dead)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "\n" not in message
    assert address in message
    assert f"shopflow services up {bus.value}" in message


def test_an_emulator_that_dies_mid_read_is_the_error_reported(settings: Settings) -> None:
    """A private emulator, killed while messages are leased: the read fails with the one-line
    "not reachable" error, and `close`, whose nack then cannot reach it either, adds none."""
    from shopflow.services import ensure_services, stop_services

    private = settings.model_copy(
        update={
            "bus": BusKind.PUBSUB,
            "pubsub_pull_mode": "sync",
            "pubsub_emulator_host": f"127.0.0.1:{free_port()}",
            "bus_call_timeout_seconds": 2,
        }
    )
    try:
        ensure_services(private, ["pubsub"])
        ensure_event_topic(private)
        publisher = make_publisher(private)
        try:
            publisher.publish([f"msg-{i}".encode() for i in range(50)])
        finally:
            publisher.close()
        reader = make_consumer(private)
        try:
            assert len(reader.receive_batch(10, 10.0)) > 0  # leased, never acknowledged
            stop_services(private, ["pubsub"])
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError) as info:
                while time.monotonic() - started < 60:
                    reader.receive_batch(100, 1.0)
            assert "\n" not in str(info.value)
            assert str(private.pubsub_emulator_host) in str(info.value)
        finally:
            reader.close()  # must not raise: the leases run out on their own
    finally:
        stop_services(private, ["pubsub"])
