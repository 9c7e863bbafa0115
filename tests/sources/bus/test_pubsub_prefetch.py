"""The Pub/Sub consumer's read-ahead on tiny inline data (the bus itself: test_buses.py)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from shopflow.sources.bus.pubsub_prefetch import PullPrefetcher


class Source:
    """A Pull that answers up to `per_pull` consecutive numbers (fewer if asked for fewer), up to
    `total`, and counts its calls and the largest number asked for."""

    def __init__(
        self, total: int, per_pull: int, fail_after: int | None = None, pull_seconds: float = 0.0
    ) -> None:
        self._pull_seconds = pull_seconds
        self._numbers = iter(range(total))
        self._per_pull = per_pull
        self._fail_after = fail_after
        self._lock = threading.Lock()
        self.calls = 0
        self.largest_ask = 0
        self.handed_out: list[Any] = []
        self.leased: list[Any] = []

    def pull(self, asked: int) -> list[Any]:
        time.sleep(self._pull_seconds)
        with self._lock:
            self.calls += 1
            self.largest_ask = max(self.largest_ask, asked)
            if self._fail_after is not None and self.calls > self._fail_after:
                raise RuntimeError("subscription deleted")
            answer = list(itertools.islice(self._numbers, min(self._per_pull, asked)))
            self.handed_out.extend(answer)
        if not answer:
            time.sleep(0.01)
        return answer

    def lease(self, answer: list[Any]) -> None:
        with self._lock:
            self.leased.extend(answer)


def prefetcher(
    source: Source, limit: int, concurrency: int = 3, pull_max: int = 1000
) -> PullPrefetcher:
    return PullPrefetcher(source.pull, concurrency, limit, source.lease, pull_max=pull_max)


def test_messages_come_in_order_split_at_max_and_every_one_is_leased_first() -> None:
    source = Source(total=1000, per_pull=7)
    reader = prefetcher(source, limit=50)
    taken: list[Any] = []
    try:
        while len(taken) < 1000:
            batch = reader.take(max_messages=30, timeout_seconds=2.0)
            assert batch, "a message in the backlog did not arrive within 2 s"
            assert len(batch) <= 30
            taken.extend(batch)
    finally:
        reader.stop()
    assert sorted(taken) == list(range(1000))
    assert set(source.leased) == set(range(1000))
    assert reader.take(10, timeout_seconds=0.1) == []


def test_reading_ahead_stops_at_the_limit_while_nobody_takes() -> None:
    source = Source(total=100_000, per_pull=10)
    reader = prefetcher(source, limit=100, concurrency=4)
    try:
        first = reader.take(max_messages=1, timeout_seconds=2.0)
        time.sleep(0.5)  # ample time to pull everything if nothing held the Pulls back
    finally:
        reader.stop()
    assert first == [0]
    # The limit, plus the one message taken.
    assert len(source.leased) <= 100 + 1
    left = reader.leftover()
    assert len(left) + 1 == len(source.leased)
    assert reader.leftover() == []


def test_answers_of_pulls_in_flight_at_stop_are_leased_and_left_over() -> None:
    source = Source(total=1000, per_pull=10, pull_seconds=0.3)
    reader = prefetcher(source, limit=1000, concurrency=3)
    try:
        first = reader.take(max_messages=1000, timeout_seconds=2.0)
    finally:
        reader.stop()  # the next Pulls are in flight: their answers come after this was called
    assert first
    left = reader.leftover()
    # Everything the bus handed out is leased (so `close` can nack it), taken or left over.
    assert sorted(source.leased) == sorted(source.handed_out)
    assert sorted(first + left) == sorted(source.handed_out)
    assert len(left) >= 10


def test_an_idle_subscription_does_not_spin() -> None:
    source = Source(total=0, per_pull=10)
    reader = prefetcher(source, limit=100, concurrency=4)
    try:
        assert reader.take(max_messages=10, timeout_seconds=0.5) == []
    finally:
        reader.stop()
    # Each empty answer costs the Pull's 10 ms plus a 50 ms pause: at most ~4 * 0.5 / 0.06.
    assert source.calls <= 40


def test_an_error_is_raised_once_the_messages_before_it_are_taken() -> None:
    source = Source(total=1000, per_pull=10, fail_after=3)
    reader = prefetcher(source, limit=1000, concurrency=1)
    try:
        taken: list[Any] = []
        with pytest.raises(RuntimeError, match="subscription deleted"):
            while True:
                taken.extend(reader.take(max_messages=1000, timeout_seconds=2.0))
    finally:
        reader.stop()
    assert taken == list(range(30))


def test_pulls_ask_only_for_the_room_left_under_a_limit_below_concurrency_times_pull_max() -> None:
    # A landing batch of 5 messages, 32 Pulls of up to 1,000: without asking for less, 32,000
    # messages would wait leased for a consumer that takes 5 at a time (their leases run out).
    source = Source(total=100_000, per_pull=1000)
    reader = prefetcher(source, limit=5, concurrency=32)
    try:
        first = reader.take(max_messages=5, timeout_seconds=2.0)
        time.sleep(0.5)
    finally:
        reader.stop()
    assert first == list(range(5))
    assert len(source.leased) <= 5 + 5
    assert source.largest_ask <= 5
