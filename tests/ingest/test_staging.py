"""Landing's validation on tiny inline batches: no payload can stop a batch, bounds dead-letter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shopflow.contracts import MAX_EVENT_PAYLOAD_BYTES, EventBounds
from shopflow.ingest import staging
from shopflow.ingest.events import event_bounds, stage_batch
from shopflow.settings import Settings
from shopflow.sources.bus.base import ReceivedMessage
from tests.ingest.hostile import HOSTILE, _event

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def messages(payloads: list[bytes]) -> list[ReceivedMessage]:
    return [ReceivedMessage(p, f"m-{n}", NOW, f"ack-{n}") for n, p in enumerate(payloads)]


def test_every_hostile_payload_is_a_dead_letter_and_the_valid_ones_around_it_land() -> None:
    good = [_event(b"ok-1"), _event(b"ok-2")]
    staged = stage_batch(messages([good[0], *HOSTILE, good[1]]), ingest_ts=NOW)
    assert [event.event_id for event, _ in staged.events] == ["ok-1", "ok-2"]
    assert [m.payload for m, _ in staged.dead_letters] == HOSTILE
    for _, reason in staged.dead_letters:
        assert reason and "\n" not in reason and len(reason) <= 300, reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (HOSTILE[0], "OverflowError"),
        (HOSTILE[1], "finite"),
        (HOSTILE[2], "not valid JSON"),
        (HOSTILE[3], "not valid JSON"),
        (HOSTILE[4], "after its ingest time"),
        (HOSTILE[5], "before the accepted floor"),
        (HOSTILE[6], "above the accepted ceiling"),
        (HOSTILE[7], "control characters"),
        (HOSTILE[8], "byte limit"),
        (HOSTILE[9], "byte limit"),
    ],
)
def test_each_reason_names_what_is_wrong(payload: bytes, reason: str) -> None:
    staged = stage_batch(messages([payload]), ingest_ts=NOW)
    assert staged.events == []
    assert reason in staged.dead_letters[0][1]


def test_bounds_are_relative_to_the_ingest_time() -> None:
    bounds = EventBounds(max_future=timedelta(minutes=15))
    near = _event(b"near", event_ts=b"2026-11-20T12:14:00Z")
    far = _event(b"far", event_ts=b"2026-11-20T12:16:00Z")
    staged = stage_batch(messages([near, far]), bounds, ingest_ts=NOW)
    assert [e.event_id for e, _ in staged.events] == ["near"]
    # The same far event is fine once the ingest clock has caught up.
    later = stage_batch(messages([far]), bounds, ingest_ts=NOW + timedelta(minutes=5))
    assert [e.event_id for e, _ in later.events] == ["far"]


def test_bounds_come_from_settings(settings: Settings) -> None:
    tight = settings.model_copy(
        update={
            "event_max_future_seconds": 0.0,
            "event_max_price_inr": 10.0,
            "event_min_ts": datetime(2026, 11, 20, tzinfo=UTC),
        }
    )
    bounds = event_bounds(tight)
    staged = stage_batch(
        messages(
            [
                _event(b"ok", price=b"10"),
                _event(b"dear", price=b"10.5"),
                _event(b"old", event_ts=b"2026-11-19T23:59:59Z"),
                _event(b"ahead", event_ts=b"2026-11-20T12:00:01Z"),
            ]
        ),
        bounds,
        ingest_ts=NOW,
    )
    assert [e.event_id for e, _ in staged.events] == ["ok"]
    assert len(staged.dead_letters) == 3


def test_an_unexpected_failure_in_validation_is_a_reason_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(payload: bytes) -> None:
        raise KeyError("something no one foresaw")

    # Both judges fail: the bulk decoder (the batch falls back to one message at a time) and
    # the per-message one (the message becomes a dead letter with the failure as its reason).
    monkeypatch.setattr(staging, "_DECODE", explode)
    monkeypatch.setattr(staging, "parse_event", explode)
    staged = stage_batch(messages([_event(b"x")]), ingest_ts=NOW)
    assert staged.events == []
    assert "something no one foresaw" in staged.dead_letters[0][1]


def test_a_failing_bulk_path_still_lands_every_valid_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(payload: bytes) -> None:
        raise KeyError("something no one foresaw")

    monkeypatch.setattr(staging, "_DECODE", explode)
    staged = stage_batch(messages([_event(b"a"), b"{not json", _event(b"b")]), ingest_ts=NOW)
    assert [e.event_id for e, _ in staged.events] == ["a", "b"]
    assert [m.payload for m, _ in staged.dead_letters] == [b"{not json"]


def test_bulk_decoding_resumes_after_each_payload_it_cannot_read() -> None:
    # Unreadable at the start, twice in a row, at the end, and one too large to decode at all.
    good = [_event(f"ok-{n}".encode()) for n in range(4)]
    bad = b"{not json"
    huge = b" " * (MAX_EVENT_PAYLOAD_BYTES + 1)
    payloads = [bad, good[0], bad, bad, good[1], huge, good[2], good[3], bad]
    wires, positions = staging._decode_all(payloads)
    assert positions == [1, 4, 6, 7]
    assert [w.event_id for w in wires] == ["ok-0", "ok-1", "ok-2", "ok-3"]
    staged = stage_batch(messages(payloads), ingest_ts=NOW)
    assert [event.event_id for event, _ in staged.events] == ["ok-0", "ok-1", "ok-2", "ok-3"]
    assert [m.message_id for m, _ in staged.dead_letters] == ["m-0", "m-2", "m-3", "m-5", "m-8"]
