"""Malformed event payloads of the kinds real clients send; `contracts.parse_event` rejects them all."""

from __future__ import annotations

import json
import random
from enum import StrEnum
from typing import Any, Final

UNKNOWN_EVENT_NAMES: Final = ("add_to_cart", "click", "page_view", "checkout", "VIEW", "Order")
_REQUIRED_KEYS: Final = ("event_id", "event_name", "product_id", "user_id", "price", "event_ts")


class MalformedKind(StrEnum):
    """How a payload is broken."""

    BAD_JSON = "bad_json"
    WRONG_TYPE = "wrong_type"
    MISSING_KEY = "missing_key"
    UNKNOWN_EVENT = "unknown_event"


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def malformed_payload(body: dict[str, Any], rng: random.Random) -> tuple[MalformedKind, bytes]:
    """Break a valid event body in one of the ways of `MalformedKind`."""
    kind = rng.choice(list(MalformedKind))
    broken = dict(body)
    if kind is MalformedKind.BAD_JSON:
        payload = _encode(broken)
        if rng.random() < 0.2:
            return kind, b"\x80\x81" + payload[: len(payload) // 2]  # not UTF-8 at all
        # Any proper prefix of a JSON object is invalid JSON: a client cut off mid-write.
        return kind, payload[: rng.randrange(1, len(payload) - 1)]
    if kind is MalformedKind.WRONG_TYPE:
        wrong = rng.randrange(4)
        if wrong == 0:
            broken["price"] = f"{broken['price']:.2f}"
        elif wrong == 1:
            broken["event_ts"] = rng.randrange(1_700_000_000, 1_900_000_000)
        elif wrong == 2:
            broken["user_id"] = rng.randrange(1, 1_000_000)
        else:
            broken["session_id"] = rng.randrange(1, 1_000_000)
        return kind, _encode(broken)
    if kind is MalformedKind.MISSING_KEY:
        del broken[rng.choice(_REQUIRED_KEYS)]
        return kind, _encode(broken)
    broken["event_name"] = rng.choice(UNKNOWN_EVENT_NAMES)
    return kind, _encode(broken)
