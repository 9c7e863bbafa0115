"""The bulk staging gives every message the verdict `parse_event` + `EventBounds.check` gives it.

The reference is the per-message judgement (`staging.check_one`, the landing's code before bulk
staging): same events with the same values, same dead letters with the same reasons.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from shopflow.contracts import Event, EventBounds, parse_event
from shopflow.ingest import staging
from shopflow.ingest.events import stage_batch
from shopflow.simulator import ShopSimulator, SimulationConfig
from shopflow.sources.bus.base import MessageBatch, ReceivedMessage
from tests.ingest.hostile import HOSTILE, _event
from tests.ingest.test_events import MALFORMED

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

#: Payloads at the edges of what the fast path reads itself, each valid or not.
TRICKY = [
    _event(b"tz-offset", event_ts=b"2026-11-20T10:00:00.5+05:30"),
    _event(b"tz-minus-zero", event_ts=b"2026-11-20T10:00:00.123456-00:00"),
    _event(b"space-separator", event_ts=b"2026-11-20 10:00:00Z"),
    _event(b"lower-z", event_ts=b"2026-11-20T10:00:00z"),
    _event(b"seven-decimals", event_ts=b"2026-11-20T10:00:00.1234567Z"),
    _event(b"no-zone", event_ts=b"2026-11-20T10:00:00"),
    _event(b"feb-30", event_ts=b"2026-02-30T10:00:00Z"),
    _event(b"leap-second", event_ts=b"2026-06-30T23:59:60Z"),
    _event(b"compact-offset", event_ts=b"2026-11-20T10:00:00+0530"),
    _event(b"far-offset", event_ts=b"2026-11-20T10:00:00+23:59"),
    _event(b"date-only", event_ts=b"2026-11-20"),
    _event(b" ", price=b"2"),
    _event(b"\\u00a0\\u3000"),
    _event(b"nbsp\\u00a0inside"),
    _event(b"\\u0085"),
    _event(b"tab\\tid"),
    _event(b"\\u007f"),
    _event(b"x" * 256),
    _event(b"x" * 257),
    _event("ünïcödé-ід-🛒".encode()),
    _event(b""),
    _event(b"neg-zero", price=b"-0.0"),
    _event(b"negative", price=b"-1"),
    _event(b"big-int", price=b"123456789012345678901234567890"),
    _event(b"exp", price=b"1e7"),
    _event(b"just-over", price=b"10000000.000001"),
    _event(b"ceiling", price=b"10000000"),
    _event(b"bool", price=b"true"),
    _event(b"floor", event_ts=b"2000-01-01T00:00:00Z"),
    _event(b"under-floor", event_ts=b"1999-12-31T23:59:59.999999Z"),
    _event(b"at-future-limit", event_ts=b"2026-11-20T12:15:00Z"),
    _event(b"past-future-limit", event_ts=b"2026-11-20T12:15:00.000001Z"),
    _event(b"dup-key").replace(
        b'{"event_id":"dup-key"', b'{"event_id":"first","event_id":"second"'
    ),
    _event(b"extra-key").replace(b'"price"', b'"colour":"red","price"'),
    _event(b"bom").join([b"\xef\xbb\xbf", b""]),
    b" " + _event(b"padded") + b"\n",
    _event(b"order-no-id").replace(b'"view"', b'"order"'),
    _event(b"order-with-id").replace(b'"view"', b'"order"').replace(b"null", b'"o-1"'),
    _event(b"view-with-order-id").replace(b"null", b'"o-1"'),
    _event(b"session").replace(b"}", b',"session_id":"s-1"}'),
    _event(b"null-session").replace(b"}", b',"session_id":null}'),
    _event(b"int-session").replace(b"}", b',"session_id":7}'),
    _event(b"surrogate\\ud800"),
    b"null",
    b"",
    b'"a string"',
]


@pytest.fixture(scope="module")
def simulated() -> list[bytes]:
    """The simulator's payloads with its default dirt (duplicates, late, malformed)."""
    simulator = ShopSimulator(SimulationConfig(seed=7, events=10_000))
    return [payload for batch in simulator.batches() for payload in batch.payloads]


def as_messages(payloads: list[bytes]) -> list[ReceivedMessage]:
    return [
        ReceivedMessage(p, f"m-{n}", NOW + timedelta(microseconds=n), f"ack-{n}")
        for n, p in enumerate(payloads)
    ]


def assert_same_verdicts(payloads: list[bytes], bounds: EventBounds, ingest_ts: datetime) -> None:
    messages = as_messages(payloads)
    staged = stage_batch(messages, bounds, ingest_ts)
    expected_events: dict[str, Event] = {}
    expected_reasons: dict[str, str] = {}
    for m in messages:
        verdict = staging.check_one(m.payload, bounds, ingest_ts)
        if isinstance(verdict, str):
            expected_reasons[m.message_id] = verdict
        else:
            expected_events[m.message_id] = verdict
    got_events = {m.message_id: e for e, m in staged.events}
    assert got_events == expected_events
    # Same instants and the same zone (UTC), not only equal datetimes.
    for message_id, event in got_events.items():
        assert event.event_ts.utcoffset() == timedelta(0), message_id
        assert event.event_ts.isoformat() == expected_events[message_id].event_ts.isoformat()
    assert {m.message_id: reason for m, reason in staged.dead_letters} == expected_reasons
    assert [m.message_id for m, _ in staged.dead_letters] == [
        m.message_id for m in messages if m.message_id in expected_reasons
    ]
    # Rows are ordered by event hour, then by arrival.
    keys = [
        (e.event_ts.replace(minute=0, second=0, microsecond=0), int(m.message_id[2:]))
        for e, m in staged.events
    ]
    assert keys == sorted(keys)


def test_simulated_payloads_with_dirt_get_the_reference_verdicts(simulated: list[bytes]) -> None:
    # The simulated days lie in November 2026: an ingest time after them accepts the valid ones.
    assert_same_verdicts(simulated, EventBounds(), datetime(2026, 12, 31, tzinfo=UTC))


@pytest.mark.parametrize("ingest_ts", [NOW, NOW - timedelta(days=1)])
def test_edge_payloads_get_the_reference_verdicts(ingest_ts: datetime) -> None:
    assert_same_verdicts(
        [_event(b"plain"), *TRICKY, *MALFORMED, *HOSTILE, _event(b"last")],
        EventBounds(),
        ingest_ts,
    )


def test_tight_bounds_get_the_reference_verdicts() -> None:
    bounds = EventBounds(
        min_event_ts=datetime(2026, 11, 20, 10, 0, 0, 500_000, tzinfo=UTC),
        max_future=timedelta(0),
        max_price_inr=1.5,
    )
    assert_same_verdicts([*TRICKY, _event(b"a"), _event(b"b", price=b"1.5")], bounds, NOW)


def test_the_fast_path_judges_the_valid_events_itself(
    simulated: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = simulated
    calls: list[bytes] = []
    judge = parse_event

    def counting(payload: bytes) -> Event:
        calls.append(payload)
        return judge(payload)

    monkeypatch.setattr(staging, "parse_event", counting)
    staged = stage_batch(as_messages(payloads), ingest_ts=datetime(2026, 12, 31, tzinfo=UTC))
    # Only the rejected payloads are judged one by one.
    assert len(calls) == len(staged.dead_letters) < len(payloads) // 50


def test_batches_built_from_columns_or_messages_stage_alike() -> None:
    messages = as_messages([_event(b"a"), b"{bad", _event(b"b", event_ts=b"2026-11-20T09:00:00Z")])
    one = stage_batch(messages, ingest_ts=NOW)
    other = staging.stage_messages(MessageBatch.from_messages(messages), EventBounds(), NOW)
    assert one.table.equals(other.table) and one.rows == other.rows == [2, 0]


def test_printable_spaces_are_the_white_space_python_strips() -> None:
    python = {
        c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace() and not staging_control(c)
    }
    assert set(staging.PRINTABLE_SPACES) == python


def staging_control(c: str) -> bool:
    return ord(c) < 0x20 or c == "\x7f"
