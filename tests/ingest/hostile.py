"""Payloads that once stopped event landing for good (issue 11), shared by the landing tests."""

from __future__ import annotations

from typing import Final

_BODY: Final = (
    b'{"event_id":"%s","event_name":"view","product_id":"p","user_id":"u","order_id":null,'
    b'"price":%s,"event_ts":"%s"}'
)


def _event(
    event_id: bytes, price: bytes = b"1", event_ts: bytes = b"2026-11-20T10:00:00Z"
) -> bytes:
    return _BODY % (event_id, price, event_ts)


#: Each payload, valid JSON or not, once raised something other than InvalidEventError.
HOSTILE: Final = [
    _event(b"h-tz-overflow", event_ts=b"9999-12-31T23:59:59-14:00"),  # OverflowError in UTC
    _event(b"h-huge-price", price=b"1" + b"0" * 400),  # OverflowError in isfinite
    b"[" * 20_000 + b"]" * 20_000,  # RecursionError in json
    _event(b"h-long-int", price=b"9" * 4400),  # ValueError: int over 4,300 digits
    _event(b"h-far-future", event_ts=b"9999-12-31T23:00:00Z"),  # lands in date=9999-12-31
    _event(b"h-far-past", event_ts=b"0001-01-01T00:00:00Z"),  # lands in date=0001-01-01
    _event(b"h-absurd-price", price=b"1e30"),
    _event(b"h-nul\\u0000id"),
    b'{"event_id":' + b'"' + b"x" * 300_000 + b'"}',  # a 300 kB payload
    b"[" * 200_000 + b"]" * 200_000,  # the same nesting, 400 kB
]
