"""What the simulator hands out: deliveries, one window's batch, and the ground truth it counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii as _quote

from shopflow.contracts import Event, OrderLine, Product, User


def event_id_for(seed: int, sequence: int) -> str:
    """The id of the `sequence`-th valid event of a simulation."""
    return f"e-{seed}-{sequence:010d}"


def _json_string(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def encode_event_payload(event: Event, event_ts_text: str) -> bytes:
    """Byte for byte what `contracts.encode_event` writes, without its per-event `asdict` cost."""
    return (
        f'{{"event_id":{_quote(event.event_id)},"event_name":{_quote(event.event_name)},'
        f'"product_id":{_quote(event.product_id)},"user_id":{_quote(event.user_id)},'
        f'"order_id":{_json_string(event.order_id)},"price":{event.price!r},'
        f'"event_ts":"{event_ts_text}","session_id":{_json_string(event.session_id)}}}'
    ).encode()


class DeliveryKind(StrEnum):
    """Why a payload is on the bus."""

    ON_TIME = "on_time"
    LATE = "late"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One payload handed to the bus at simulated time `deliver_ts`; `event` is None if malformed."""

    payload: bytes
    kind: DeliveryKind
    deliver_ts: datetime
    event: Event | None


@dataclass(frozen=True, slots=True)
class SimBatch:
    """Everything that happens in one simulated time window.

    Catalogue versions apply from `window_start`; `order_lines` holds placed lines and the status
    updates of returned ones; `deliveries` are in delivery order.
    """

    window_start: datetime
    window_end: datetime
    deliveries: list[Delivery]
    order_lines: list[OrderLine]
    products: list[Product]
    users: list[User]

    @property
    def payloads(self) -> list[bytes]:
        """The payloads to publish, in delivery order."""
        return [delivery.payload for delivery in self.deliveries]


@dataclass(slots=True)
class GroundTruth:
    """What the simulation produced, counted as it was produced, to check the pipeline against."""

    seed: int
    valid_events: int = 0
    events_by_name: Counter[str] = field(default_factory=Counter)
    events_with_session_id: int = 0
    deliveries: int = 0
    duplicate_deliveries: int = 0
    late_deliveries: int = 0
    malformed_deliveries: int = 0
    malformed_by_kind: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    orders: int = 0
    order_lines: int = 0
    returned_lines: int = 0
    price_changes: int = 0
    new_products: int = 0
    new_users: int = 0
    renamed_users: int = 0
    first_event_ts: datetime | None = None
    last_event_ts: datetime | None = None

    def valid_event_ids(self) -> Iterator[str]:
        """Every distinct valid event id (ids are counters, so this needs no memory)."""
        return (event_id_for(self.seed, sequence) for sequence in range(self.valid_events))

    def counts(self) -> dict[str, int]:
        """The counts as a flat mapping (for summaries and JSON)."""
        counts = {
            "valid_events": self.valid_events,
            "deliveries": self.deliveries,
            "duplicate_deliveries": self.duplicate_deliveries,
            "late_deliveries": self.late_deliveries,
            "malformed_deliveries": self.malformed_deliveries,
            "sessions": self.sessions,
            "orders": self.orders,
            "order_lines": self.order_lines,
            "returned_lines": self.returned_lines,
            "price_changes": self.price_changes,
            "new_products": self.new_products,
            "new_users": self.new_users,
            "renamed_users": self.renamed_users,
        }
        counts.update({f"{name}_events": n for name, n in sorted(self.events_by_name.items())})
        return counts
