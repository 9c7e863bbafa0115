"""The latency benchmark's ledger: publish and first-visible times by event number."""

from __future__ import annotations

import math

import numpy as np
from bench._visibility import Ledger, percentile


def test_latency_is_first_seen_minus_published_and_unseen_is_infinite() -> None:
    ledger = Ledger(10)
    ledger.record_published(0, 4, stamp=100.0, done=100.5)
    assert ledger.record_seen(np.array([0, 1]), at=103.0) == 2
    assert ledger.record_seen(np.array([1, 2]), at=104.0) == 1  # 1 was seen already
    assert ledger.visible == 3
    assert ledger.latencies().tolist() == [2.5, 2.5, 3.5, math.inf]


def test_numbers_not_published_yet_are_ignored() -> None:
    ledger = Ledger(10)
    ledger.record_published(0, 2, stamp=1.0, done=1.0)
    assert ledger.record_seen(np.array([1, 5, -1]), at=2.0) == 1
    assert ledger.visible == 1


def test_the_scan_starts_at_the_oldest_unseen_event() -> None:
    ledger = Ledger(10)
    assert ledger.oldest_unseen_stamp() is None
    ledger.record_published(0, 2, stamp=10.0, done=10.1)
    ledger.record_published(2, 2, stamp=20.0, done=20.1)
    ledger.record_seen(np.array([0, 2, 3]), at=21.0)
    assert ledger.oldest_unseen_stamp() == 10.0  # event 1 is still missing
    ledger.record_seen(np.array([1]), at=22.0)
    assert ledger.oldest_unseen_stamp() is None
    ledger.record_published(4, 1, stamp=30.0, done=30.1)
    assert ledger.oldest_unseen_stamp() == 30.0


def test_windows_split_events_by_publish_time() -> None:
    ledger = Ledger(10)
    for n, done in enumerate([0.5, 1.0, 59.9, 60.0, 130.0]):
        ledger.record_published(n, 1, stamp=done, done=done)
    assert ledger.window_bounds(0.0, 60.0) == [(0, 3), (3, 4), (4, 5)]
    assert Ledger(3).window_bounds(0.0, 60.0) == []


def test_percentile_takes_a_value_of_the_sample() -> None:
    values = np.array([5.0, 1.0, math.inf, 2.0])
    assert percentile(values, 0.5) == 2.0
    assert percentile(values, 0.95) == math.inf
    assert math.isnan(percentile(np.array([]), 0.5))
