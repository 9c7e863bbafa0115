"""Pacing of `shopflow simulate --rate` (wall-clock, so kept tiny)."""

from __future__ import annotations

import time

import pytest

from shopflow.errors import ShopflowError
from shopflow.simulator.publish import _Pacer


def test_pacer_holds_publishing_to_the_rate() -> None:
    pacer = _Pacer(200.0)
    assert pacer.chunk == 20
    started = time.monotonic()
    for _ in range(3):
        pacer.sent(pacer.chunk)
    assert time.monotonic() - started >= 60 / 200.0 - 0.01


def test_unpaced_publishing_does_not_wait() -> None:
    pacer = _Pacer(None)
    started = time.monotonic()
    pacer.sent(1_000_000)
    assert time.monotonic() - started < 0.05


def test_a_non_positive_rate_is_an_actionable_error() -> None:
    with pytest.raises(ShopflowError, match="--rate must be positive"):
        _Pacer(0.0)
