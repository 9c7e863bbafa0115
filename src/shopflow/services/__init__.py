"""Local services a run needs (Pub/Sub emulator, Kafka broker, orders API) as background processes."""

from __future__ import annotations

from shopflow.services.manager import (
    ALL_SERVICES,
    ServiceState,
    ServiceStatus,
    ensure_services,
    service_statuses,
    stop_services,
)

__all__ = [
    "ALL_SERVICES",
    "ServiceState",
    "ServiceStatus",
    "ensure_services",
    "service_statuses",
    "stop_services",
]
