"""Simulated time: integer microseconds since the epoch, and the shop's traffic shape over the day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_SECOND: Final = 1_000_000
US_PER_HOUR: Final = 3600 * US_PER_SECOND
US_PER_DAY: Final = 24 * US_PER_HOUR
IST_OFFSET_US: Final = 5 * US_PER_HOUR + 30 * 60 * US_PER_SECOND

#: Relative traffic by hour of the day in India (IST): quiet nights, a lunch bump, evening peak.
_IST_HOUR_SHAPE: Final = (
    0.35, 0.2, 0.12, 0.08, 0.08, 0.12, 0.25, 0.45, 0.65, 0.8, 0.9, 1.0,
    1.1, 1.1, 1.0, 0.95, 1.0, 1.1, 1.3, 1.6, 1.9, 2.0, 1.7, 1.0,
)  # fmt: skip
#: Relative traffic by weekday (Monday first): weekends are busier.
_WEEKDAY_SHAPE: Final = (0.92, 0.9, 0.93, 0.95, 1.0, 1.15, 1.15)
IST_HOUR_WEIGHTS: Final = tuple(w * 24 / sum(_IST_HOUR_SHAPE) for w in _IST_HOUR_SHAPE)
WEEKDAY_WEIGHTS: Final = tuple(w * 7 / sum(_WEEKDAY_SHAPE) for w in _WEEKDAY_SHAPE)


def datetime_from_us(ts_us: int) -> datetime:
    """A UTC datetime from microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=ts_us)


def us_from_datetime(ts: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float)."""
    delta = ts.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds
