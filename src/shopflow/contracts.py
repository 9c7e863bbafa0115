"""The data contracts between shopflow's parts (see DESIGN.md, "Data contracts").

Behaviour events travel on the bus as UTF-8 JSON objects:

    {"event_id": "e-...", "event_name": "view", "product_id": "...", "user_id": "u-...",
     "order_id": null, "price": 499.0, "event_ts": "2026-11-25T10:15:02.123456Z",
     "session_id": "s-..." | null}

`parse_event` is the one place a wire payload becomes a typed `Event` (or a reason it cannot).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

import pyarrow as pa

EVENT_NAMES: Final = ("view", "wishlist", "order", "return")
ORDER_STATUSES: Final = ("placed", "shipped", "delivered", "cancelled", "returned")
_EVENT_KEYS: Final = (
    "event_id",
    "event_name",
    "product_id",
    "user_id",
    "order_id",
    "price",
    "event_ts",
    "session_id",
)
_REQUIRED_KEYS: Final = ("event_id", "event_name", "product_id", "user_id", "price", "event_ts")


@dataclass(frozen=True, slots=True)
class Event:
    """One behaviour event, typed. `price` is INR: the product's price then, or the order amount."""

    event_id: str
    event_name: str
    product_id: str
    user_id: str
    order_id: str | None
    price: float
    event_ts: datetime
    session_id: str | None = None

    @property
    def date(self) -> date:
        """UTC date of the event."""
        return self.event_ts.date()

    @property
    def hour(self) -> int:
        """UTC hour of the event."""
        return self.event_ts.hour


@dataclass(frozen=True, slots=True)
class Product:
    """A product as the shop database holds it (staged from the Flipkart catalogue)."""

    product_id: str
    product_name: str
    category: str | None
    category_path: str | None
    brand: str | None
    price: float | None
    retail_price_inr: float | None
    date: date


@dataclass(frozen=True, slots=True)
class User:
    """A shop user as the shop database holds it; `date` is the sign-up date."""

    user_id: str
    user_name: str
    email: str | None
    city: str | None
    date: date


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One order line as placed (the orders API adds `updated_at` when it stores it)."""

    order_id: str
    product_id: str
    user_id: str
    order_ts: datetime
    quantity: int
    unit_price_inr: float
    status: str = "placed"

    @property
    def date(self) -> date:
        """UTC date the order was placed."""
        return self.order_ts.date()


class InvalidEventError(ValueError):
    """A payload that does not satisfy the event contract; the message is the dead-letter reason."""


def encode_event(event: Event) -> bytes:
    """The wire form of an event."""
    body: dict[str, Any] = asdict(event)
    body["event_ts"] = event.event_ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(body, separators=(",", ":")).encode()


def _parse_ts(value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidEventError(f"event_ts must be an ISO-8601 string, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEventError(f"event_ts is not ISO-8601: {value[:40]!r}") from None
    if ts.tzinfo is None:
        raise InvalidEventError("event_ts has no time zone")
    return ts.astimezone(UTC)


def _non_empty_str(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventError(f"{key} must be a non-empty string")
    return value


def parse_event(payload: bytes) -> Event:
    """Validate a wire payload against the event contract; raise InvalidEventError with a reason."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(
            f"not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}"
        ) from None
    if not isinstance(body, dict):
        raise InvalidEventError(f"expected a JSON object, got {type(body).__name__}")
    missing = [key for key in _REQUIRED_KEYS if body.get(key) is None]
    if missing:
        raise InvalidEventError(f"missing keys: {', '.join(missing)}")
    unknown = sorted(set(body) - set(_EVENT_KEYS))
    if unknown:
        raise InvalidEventError(f"unknown keys: {', '.join(unknown)}")
    event_name = _non_empty_str(body, "event_name")
    if event_name not in EVENT_NAMES:
        raise InvalidEventError(f"unknown event_name {event_name[:40]!r}")
    price = body["price"]
    if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price):
        raise InvalidEventError(f"price must be a number, got {json.dumps(price)[:40]}")
    if price < 0:
        raise InvalidEventError("price must not be negative")
    order_id = body.get("order_id")
    if event_name in ("order", "return"):
        if not isinstance(order_id, str) or not order_id:
            raise InvalidEventError(f"{event_name} event needs an order_id")
    elif order_id is not None:
        raise InvalidEventError(f"{event_name} event must not carry an order_id")
    session_id = body.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        raise InvalidEventError("session_id must be a non-empty string or null")
    return Event(
        event_id=_non_empty_str(body, "event_id"),
        event_name=event_name,
        product_id=_non_empty_str(body, "product_id"),
        user_id=_non_empty_str(body, "user_id"),
        order_id=order_id,
        price=float(price),
        event_ts=_parse_ts(body["event_ts"]),
        session_id=session_id,
    )


UTC_TS: Final = pa.timestamp("us", tz="UTC")

#: Columns of a landed raw event file (`raw/events/date=/hour=/`); date and hour are in the path.
RAW_EVENT_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_name", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("order_id", pa.string()),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("event_ts", UTC_TS, nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("publish_ts", UTC_TS),
        pa.field("ingest_ts", UTC_TS, nullable=False),
    ]
)

#: Columns of a dead-letter file (`deadletter/<source>/date=/`).
DEADLETTER_SCHEMA: Final = pa.schema(
    [
        pa.field("payload", pa.binary(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message_id", pa.string()),
        pa.field("publish_ts", UTC_TS),
        pa.field("ingest_ts", UTC_TS, nullable=False),
    ]
)

#: One order line as the orders API serves it and the raw zone keeps it.
RAW_ORDER_SCHEMA: Final = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("order_ts", UTC_TS, nullable=False),
        pa.field("quantity", pa.int32(), nullable=False),
        pa.field("unit_price_inr", pa.float64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("updated_at", UTC_TS, nullable=False),
        pa.field("ingest_ts", UTC_TS, nullable=False),
    ]
)

#: One product row as the shop database holds it and the raw zone keeps it.
RAW_PRODUCT_SCHEMA: Final = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("product_name", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("category_path", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("retail_price_inr", pa.float64()),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("updated_at", UTC_TS, nullable=False),
        pa.field("ingest_ts", UTC_TS, nullable=False),
    ]
)

#: One user row as the shop database holds it and the raw zone keeps it.
RAW_USER_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("user_name", pa.string(), nullable=False),
        pa.field("email", pa.string()),
        pa.field("city", pa.string()),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("updated_at", UTC_TS, nullable=False),
        pa.field("ingest_ts", UTC_TS, nullable=False),
    ]
)
