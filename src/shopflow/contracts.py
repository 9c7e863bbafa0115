"""The data contracts between shopflow's parts (see DESIGN.md, "Data contracts").

Behaviour events travel on the bus as UTF-8 JSON objects:

    {"event_id": "e-...", "event_name": "view", "product_id": "...", "user_id": "u-...",
     "order_id": null, "price": 499.0, "event_ts": "2026-11-25T10:15:02.123456Z",
     "session_id": "s-..." | null}

`parse_event` is the one place a wire payload becomes a typed `Event` (or a reason it cannot).
The landing consumer checks whole batches faster with `shopflow.ingest.staging`, which accepts
only what `parse_event` accepts, with the same values, and hands everything else to it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, get_args

import pyarrow as pa
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

if TYPE_CHECKING:
    from shopflow.settings import Settings

#: The behaviour event kinds.
EventName = Literal["view", "wishlist", "order", "return"]
EVENT_NAMES: Final = get_args(EventName)
ORDER_STATUSES: Final = ("placed", "shipped", "delivered", "cancelled", "returned")


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


#: Longest wire payload accepted; a real event is a few hundred bytes.
MAX_EVENT_PAYLOAD_BYTES: Final = 64 * 1024
#: Longest id (event, product, user, order, session) accepted.
MAX_ID_CHARS: Final = 256

_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f]")


def _printable_id(value: str) -> str:
    if not value.strip() or _CONTROL_CHARS.search(value):
        raise ValueError("must be non-blank, without control characters")
    return value


PrintableId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_printable_id)
]


class WireEvent(BaseModel):
    """The event contract as it travels on the bus (the shape rules; bounds are `EventBounds`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    event_id: PrintableId
    event_name: EventName
    product_id: PrintableId
    user_id: PrintableId
    order_id: PrintableId | None = None
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    event_ts: AwareDatetime
    session_id: PrintableId | None = None

    @model_validator(mode="after")
    def _order_id_matches_event_name(self) -> WireEvent:
        if self.event_name in ("order", "return"):
            if self.order_id is None:
                raise ValueError(f"{self.event_name} event needs an order_id")
        elif self.order_id is not None:
            raise ValueError(f"{self.event_name} event must not carry an order_id")
        return self


_WIRE_EVENT: Final = TypeAdapter(WireEvent)


@dataclass(frozen=True, slots=True)
class EventBounds:
    """Plausible values an event must have to be landed; the rest is dead-lettered.

    An event later than its ingest time plus `max_future` (a client clock far ahead, or garbage
    such as year 9999), earlier than `min_event_ts`, or priced above `max_price_inr` is rejected
    at landing, so no raw partition can hold a date the ETL cannot compute around.
    """

    min_event_ts: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future: timedelta = timedelta(minutes=15)
    max_price_inr: float = 10_000_000.0

    def check(self, event: Event, ingest_ts: datetime) -> None:
        """Raise InvalidEventError naming the bound `event` breaks."""
        if event.event_ts < self.min_event_ts:
            raise InvalidEventError(
                f"event_ts {event.event_ts:%Y-%m-%dT%H:%M:%SZ} is before the accepted floor "
                f"{self.min_event_ts:%Y-%m-%dT%H:%M:%SZ}"
            )
        if event.event_ts > ingest_ts + self.max_future:
            raise InvalidEventError(
                f"event_ts {event.event_ts:%Y-%m-%dT%H:%M:%SZ} is more than "
                f"{self.max_future.total_seconds():.0f}s after its ingest time "
                f"{ingest_ts:%Y-%m-%dT%H:%M:%SZ}"
            )
        if event.price > self.max_price_inr:
            raise InvalidEventError(
                f"price {event.price:.6g} is above the accepted ceiling {self.max_price_inr:,.0f} INR"
            )


def event_bounds(settings: Settings) -> EventBounds:
    """The event bounds from settings: landing checks each message against them and the ETL's
    staging (batch and stream) checks each raw row again."""
    return EventBounds(
        min_event_ts=settings.event_min_ts.astimezone(UTC),
        max_future=timedelta(seconds=settings.event_max_future_seconds),
        max_price_inr=settings.event_max_price_inr,
    )


def encode_event(event: Event) -> bytes:
    """The wire form of an event."""
    body: dict[str, Any] = asdict(event)
    body["event_ts"] = event.event_ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(body, separators=(",", ":")).encode()


def _reason(error: ValidationError) -> str:
    """The dead-letter reason of a failed validation: one short line."""
    problems = error.errors(include_url=False)
    missing = [
        str(p["loc"][0])
        for p in problems
        if p["loc"] and (p["type"] == "missing" or p.get("input", ...) is None)
    ]
    if missing:
        return f"missing keys: {', '.join(missing)}"
    unknown = [str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden"]
    if unknown:
        return f"unknown keys: {', '.join(sorted(unknown))[:200]}"
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "json_invalid":
        return f"not valid JSON: {message.removeprefix('Invalid JSON: ')}"
    if first["type"] == "model_type":
        return f"expected a JSON object, got {type(first.get('input')).__name__}"
    return f"{where}: {message}"[:300] if where else message[:300]


def parse_event(payload: bytes) -> Event:
    """Validate a wire payload against the event contract; raise InvalidEventError with a reason.

    Any payload at all ends here as an `Event` or an InvalidEventError: whatever the validation
    raises (deep nesting, huge numbers, dates that overflow in UTC) becomes a reason.
    """
    if len(payload) > MAX_EVENT_PAYLOAD_BYTES:
        raise InvalidEventError(
            f"payload of {len(payload):,} bytes is over the {MAX_EVENT_PAYLOAD_BYTES:,}-byte limit"
        )
    try:
        wire = _WIRE_EVENT.validate_json(payload)
        event_ts = wire.event_ts.astimezone(UTC)
    except ValidationError as exc:
        raise InvalidEventError(_reason(exc)) from None
    except (OverflowError, ValueError, RecursionError) as exc:
        raise InvalidEventError(
            f"payload cannot be read: {type(exc).__name__}: {exc}"[:300]
        ) from None
    return Event(
        event_id=wire.event_id,
        event_name=wire.event_name,
        product_id=wire.product_id,
        user_id=wire.user_id,
        order_id=wire.order_id,
        price=wire.price,
        event_ts=event_ts,
        session_id=wire.session_id,
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

#: One product row as the shop database holds it and the raw zone keeps it. A deleted product
#: lands as a tombstone: its key, `deleted_at` set, `updated_at` = `deleted_at`, every other
#: column null. Raw files written before `deleted_at` existed read with it null.
RAW_PRODUCT_SCHEMA: Final = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("product_name", pa.string()),
        pa.field("category", pa.string()),
        pa.field("category_path", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("retail_price_inr", pa.float64()),
        pa.field("date", pa.date32()),
        pa.field("updated_at", UTC_TS, nullable=False),
        pa.field("ingest_ts", UTC_TS, nullable=False),
        pa.field("deleted_at", UTC_TS),
    ]
)

#: One user row as the shop database holds it and the raw zone keeps it; a deleted user lands as
#: a tombstone, as a product does (`RAW_PRODUCT_SCHEMA`).
RAW_USER_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("user_name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("city", pa.string()),
        pa.field("date", pa.date32()),
        pa.field("updated_at", UTC_TS, nullable=False),
        pa.field("ingest_ts", UTC_TS, nullable=False),
        pa.field("deleted_at", UTC_TS),
    ]
)
