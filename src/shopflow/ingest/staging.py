"""A landing batch validated in bulk: valid events as one Arrow table, the rest as dead letters.

`contracts.parse_event` (pydantic) is the event contract and stays the judge of every payload it
sees; at bus speed it costs more than the bus. So a batch is first checked by a fast path that may
only *accept*: msgspec decodes each payload into a struct with the contract's shape, and the rules
msgspec does not express (printable ids, the timestamp's form, order_id against event_name, the
plausibility bounds) are checked column-wise with pyarrow. A payload the fast path does not accept
goes, alone, through `parse_event` and `EventBounds.check`, exactly as before: it is either
accepted after all (a form the fast path leaves to pydantic, e.g. `2026-11-20 10:00:00+00:00`) or
dead-lettered with pydantic's reason. The fast path accepts nothing `parse_event` rejects and gives
every accepted event the same values (tests/ingest/test_staging_equivalence.py holds it to that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from operator import attrgetter
from typing import Annotated, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from shopflow.contracts import (
    MAX_EVENT_PAYLOAD_BYTES,
    MAX_ID_CHARS,
    RAW_EVENT_SCHEMA,
    UTC_TS,
    Event,
    EventBounds,
    EventName,
    InvalidEventError,
    parse_event,
)
from shopflow.sources.bus.base import MessageBatch, ReceivedMessage, to_epoch_us

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The shape of `contracts.WireEvent`: the fast path's decoder (checks it cannot express are
    column-wise, below). `gc=False`: it holds only strings and numbers, and a batch makes tens of
    thousands, which would otherwise set off the cycle collector again and again."""

    event_id: _Id
    event_name: EventName
    product_id: _Id
    user_id: _Id
    price: Annotated[float, msgspec.Meta(ge=0)]
    event_ts: str
    order_id: _Id | None = None
    session_id: _Id | None = None


_DECODE: Final = msgspec.json.Decoder(_WireEvent).decode
#: `contracts._CONTROL_CHARS` in RE2 syntax.
_CONTROL: Final = r"[\x00-\x1f\x7f]"
#: The characters `str.isspace` calls white space, less the control characters above (tested).
PRINTABLE_SPACES: Final = (
    " \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_BLANK: Final = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in PRINTABLE_SPACES) + "]*$"
#: The one timestamp form the fast path reads (RFC 3339, T and Z or an offset, up to 6 decimals);
#: any other form pydantic accepts is left to it.
_TS_FORM: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
#: Event names that need an order_id (the others must not carry one).
ORDER_EVENT_NAMES: Final = ("order", "return")
#: The id columns of `_WireEvent`, checked for printable characters.
_ID_FIELDS: Final = ("event_id", "product_id", "user_id", "order_id", "session_id")
#: Built once; also makes pyarrow's one-off import of pandas (on its first `pa.array` of a
#: Python list, ~1 s on a loaded machine) happen at import, not inside the first batch.
_ORDER_EVENT_NAMES: Final = pa.array(ORDER_EVENT_NAMES, pa.string())
#: The valid-event columns a staged batch holds (`ingest_ts` is added when it is written).
STAGED_SCHEMA: Final = pa.schema([f for f in RAW_EVENT_SCHEMA if f.name != "ingest_ts"])


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """One batch split into valid events and dead letters with reasons.

    `table` holds the valid events (columns `STAGED_SCHEMA`) ordered by event hour, then by
    arrival; `rows[k]` is the position in `messages` of the event in row k.
    """

    table: pa.Table
    rows: list[int]
    dead_letters: list[tuple[ReceivedMessage, str]]
    messages: MessageBatch

    @property
    def events(self) -> list[tuple[Event, ReceivedMessage]]:
        """The valid events as `Event`s with their messages (one object each: for tests, tools)."""
        return [
            (
                Event(
                    event_id=r["event_id"],
                    event_name=r["event_name"],
                    product_id=r["product_id"],
                    user_id=r["user_id"],
                    order_id=r["order_id"],
                    price=r["price"],
                    event_ts=r["event_ts"].astimezone(UTC),
                    session_id=r["session_id"],
                ),
                self.messages.message(row),
            )
            for r, row in zip(self.table.to_pylist(), self.rows, strict=True)
        ]


def check_one(payload: bytes, bounds: EventBounds, ingest_ts: datetime) -> Event | str:
    """The per-message judgement: the event, or the reason it is dead-lettered."""
    try:
        event = parse_event(payload)
        bounds.check(event, ingest_ts)
    except InvalidEventError as error:
        return str(error)
    except Exception as error:  # a payload must never stop landing, whatever it breaks
        return f"payload could not be checked: {error!r}"[:300]
    return event


def stage_messages(batch: MessageBatch, bounds: EventBounds, ingest_ts: datetime) -> StagedBatch:
    """Validate every message of `batch` against the event contract and `bounds` at `ingest_ts`.

    No payload can stop the batch: anything a message makes fail is its dead-letter reason.
    """
    try:
        fast_rows, fast = _fast_accept(batch, bounds, ingest_ts)
    except Exception:  # the fast path only saves time: if it breaks, judge every message alone
        fast_rows, fast = [], STAGED_SCHEMA.empty_table()
    slow_rows: list[int] = []
    slow_events: list[Event] = []
    dead_letters: list[tuple[ReceivedMessage, str]] = []
    for i in sorted(set(range(len(batch))).difference(fast_rows)):
        verdict = check_one(batch.payloads[i], bounds, ingest_ts)
        if isinstance(verdict, str):
            dead_letters.append((batch.message(i), verdict))
        else:
            slow_rows.append(i)
            slow_events.append(verdict)
    if not slow_rows:
        return StagedBatch(fast, fast_rows, dead_letters, batch)
    # Merge, then order by event hour and arrival again (the sort is stable).
    table = pa.concat_tables([fast, _events_table(slow_events, slow_rows, batch)])
    rows = fast_rows + slow_rows
    arrival = pc.sort_indices(pa.array(rows, pa.int64()))
    table, rows = table.take(arrival), sorted(rows)
    by_hour = pc.sort_indices(pc.floor_temporal(table["event_ts"], unit="hour"))
    ordered = by_hour.to_pylist()
    return StagedBatch(table.take(by_hour), [rows[k] for k in ordered], dead_letters, batch)


def _fast_accept(
    batch: MessageBatch, bounds: EventBounds, ingest_ts: datetime
) -> tuple[list[int], pa.Table]:
    """The positions of the messages the fast path accepts, and their events ordered by hour."""
    wires, decoded = _decode_all(batch.payloads)
    if not wires:
        return [], STAGED_SCHEMA.empty_table()
    string = pa.string()
    ids = {name: pa.array(list(map(attrgetter(name), wires)), string) for name in _ID_FIELDS}
    event_name = pa.array(list(map(attrgetter("event_name"), wires)), string)
    price = pa.array(list(map(attrgetter("price"), wires)), pa.float64())
    ts_text = pa.array(list(map(attrgetter("event_ts"), wires)), string)
    event_ts = _timestamps(ts_text)
    ts_us = event_ts.cast(pa.int64())
    floor_us = to_epoch_us(bounds.min_event_ts)
    ceiling_us = to_epoch_us(ingest_ts + bounds.max_future)
    checks = [
        *(_printable(column) for column in ids.values()),
        pc.equal(pc.is_in(event_name, _ORDER_EVENT_NAMES), pc.is_valid(ids["order_id"])),
        pc.is_finite(price),
        pc.less_equal(price, bounds.max_price_inr),
        pc.match_substring_regex(ts_text, _TS_FORM),
        pc.greater_equal(ts_us, floor_us),
        pc.less_equal(ts_us, ceiling_us),
    ]
    ok = checks[0]
    for check in checks[1:]:
        ok = pc.and_kleene(ok, check)
    ok = pc.fill_null(ok, False)
    positions = pa.array(decoded, pa.int64())
    table = pa.Table.from_arrays(
        [
            ids["event_id"],
            event_name,
            ids["product_id"],
            ids["user_id"],
            ids["order_id"],
            price,
            event_ts,
            ids["session_id"],
            pa.array(batch.message_ids, string).take(positions),
            pa.array(batch.publish_ts_us, pa.int64()).take(positions).cast(UTC_TS),
        ],
        schema=STAGED_SCHEMA,
    ).filter(ok)
    positions = positions.filter(ok)
    by_hour = pc.sort_indices(pc.floor_temporal(table["event_ts"], unit="hour"))
    return positions.take(by_hour).to_pylist(), table.take(by_hour)


def _decode_all(payloads: Sequence[bytes]) -> tuple[list[_WireEvent], list[int]]:
    """The payloads msgspec decodes into `_WireEvent`s, and their positions.

    `list.extend(map(...))` decodes without a Python frame per payload; a payload that fails
    stops the extend (what was decoded before it stays), and decoding resumes after it.
    """
    if max(map(len, payloads), default=0) > MAX_EVENT_PAYLOAD_BYTES:
        # Rare: an oversized payload is left to the per-message judgement.
        small = [i for i, payload in enumerate(payloads) if len(payload) <= MAX_EVENT_PAYLOAD_BYTES]
        decoded, kept = _decode_all([payloads[i] for i in small])
        return decoded, [small[k] for k in kept]
    wires: list[_WireEvent] = []
    failed: list[int] = []
    start = 0
    while start < len(payloads):
        try:
            wires.extend(map(_DECODE, islice(payloads, start, None)))
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            bad = len(wires) + len(failed)
            failed.append(bad)
            start = bad + 1
            continue
        break
    if not failed:
        return wires, list(range(len(payloads)))
    skip = set(failed)
    return wires, [i for i in range(len(payloads)) if i not in skip]


def _printable(column: pa.Array) -> pa.Array:
    """Whether each id is non-blank and free of control characters (null: nothing to check)."""
    bad = pc.or_(
        pc.match_substring_regex(column, _CONTROL), pc.match_substring_regex(column, _BLANK)
    )
    return pc.invert(pc.fill_null(bad, False))


def _timestamps(text: pa.Array) -> pa.Array:
    """RFC 3339 strings as UTC timestamps; null where one cannot be read (left to pydantic)."""
    try:
        return text.cast(UTC_TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # one bad string fails the whole cast: read them one by one
    values: list[datetime | None] = []
    for item in text.to_pylist():
        try:
            values.append(datetime.fromisoformat(item).astimezone(UTC))
        except (ValueError, OverflowError):
            values.append(None)
    return pa.array(values, UTC_TS)


def _events_table(events: Sequence[Event], rows: Sequence[int], batch: MessageBatch) -> pa.Table:
    """Events judged one by one, as staged columns."""
    return pa.Table.from_pydict(
        {
            "event_id": [e.event_id for e in events],
            "event_name": [e.event_name for e in events],
            "product_id": [e.product_id for e in events],
            "user_id": [e.user_id for e in events],
            "order_id": [e.order_id for e in events],
            "price": [e.price for e in events],
            "event_ts": [e.event_ts for e in events],
            "session_id": [e.session_id for e in events],
            "message_id": [batch.message_ids[i] for i in rows],
            "publish_ts": pa.array([batch.publish_ts_us[i] for i in rows], pa.int64()).cast(UTC_TS),
        },
        schema=STAGED_SCHEMA,
    )
