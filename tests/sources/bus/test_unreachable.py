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
