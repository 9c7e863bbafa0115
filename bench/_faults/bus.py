"""Fault scenarios of event landing: malformed messages and kill -9 of the consumer, on both buses."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pyarrow.dataset as ds

from bench._faults.common import (
    Outcome,
    compare,
    must_succeed,
    raw_event_ids,
    run,
    shopflow_env,
    start,
)
from shopflow.contracts import Event, encode_event

# -- the bus ------------------------------------------------------------------------------------

#: The valid events' times: a fixed past day, within every landing bound.
EVENTS_START: Final = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def valid_payloads(count: int, prefix: str) -> list[bytes]:
    """`count` distinct valid events over a day."""
    return [
        encode_event(
            Event(
                event_id=f"{prefix}-{n:08d}",
                event_name=("view", "view", "view", "wishlist")[n % 4],
                product_id=f"p-{n % 211}",
                user_id=f"u-{n % 997}",
                order_id=None,
                price=float(100 + n % 900),
                event_ts=EVENTS_START + timedelta(seconds=(n * 7) % 86_400),
                session_id=None,
            )
        )
        for n in range(count)
    ]


def malformed_payloads(count: int, rng: random.Random) -> list[bytes]:
    """`count` distinct payloads the landing must dead-letter, of every kind the issue lists."""
    body = json.loads(valid_payloads(1, "m")[0])

    def variant(n: int) -> bytes:
        b = {**body, "event_id": f"bad-{n:08d}"}
        kind = n % 14
        if kind == 0:
            return f"not json {n}".encode()
        if kind == 1:
            return json.dumps([b, n]).encode()
        if kind == 2:
            del b[rng.choice(["event_id", "event_name", "product_id", "user_id", "event_ts"])]
            return json.dumps({**b, "n": n}).encode()
        if kind == 3:
            return json.dumps({**b, "price": None}).encode()
        if kind == 4:
            return json.dumps({**b, "price": f"{n}.00"}).encode()
        if kind == 5:
            return json.dumps({**b, "event_name": f"teleport-{n}"}).encode()
        if kind == 6:
            return json.dumps({**b, "price": -1 - n}).encode()
        if kind == 7:
            return json.dumps({**b}).replace('"price": 100.0', '"price": NaN').encode()
        if kind == 8:
            return json.dumps({**b, "event_ts": "2026-11-20T10:00:00"}).encode()
        if kind == 9:
            return json.dumps({**b, "event_ts": f"9999-12-31T23:{n % 60:02d}:00Z"}).encode()
        if kind == 10:
            return json.dumps({**b, "event_ts": f"0001-01-01T00:{n % 60:02d}:00+14:00"}).encode()
        if kind == 11:
            return b"\xff\xfe" + str(n).encode() + b"\x80 not utf-8"
        if kind == 12:
            # Near the Kafka producer's 1 MB message limit.
            return json.dumps({**b, "product_id": "x" * (900_000 + n)}).encode()
        return b"[" * 20_000 + str(n).encode() + b"]" * 20_000

    return [variant(n) for n in range(count)]


#: How soon Pub/Sub hands a killed consumer's unacknowledged messages to the next one.
PUBSUB_ACK_DEADLINE_SECONDS: Final = 10


def bus_env(home: Path, name: str, bus: str = "kafka", **settings: str) -> dict[str, str]:
    """Settings for a private topic and consumer group / subscription on `bus`."""
    return shopflow_env(
        home,
        bus=bus,
        events_topic=f"faults-{name}",
        events_subscription=f"faults-{name}-landing",
        kafka_consumer_group=f"faults-{name}",
        landing_batch_max_messages="2000",
        landing_batch_max_seconds="1",
        # These scenarios land events only (no catalogue or orders pulled): the quality gate's
        # catalogue, reconciliation and volume checks have nothing to compare with, so they are
        # opened up here; what is checked is that every event lands exactly once.
        quality_max_unknown_share="1",
        quality_reconciliation_tolerance="1",
        quality_volume_min_ratio="0",
        **settings,
    )


def _bus_settings(env: dict[str, str]) -> Any:
    from shopflow.settings import load_settings

    names = ("bus", "events_topic", "events_subscription", "kafka_consumer_group")
    values = {n: env[f"SHOPFLOW_{n.upper()}"] for n in names}
    return load_settings(home=Path(env["SHOPFLOW_HOME"]), **values)


def publish(env: dict[str, str], payloads: list[bytes]) -> None:
    """Publish to the topic `env` names, creating it (and its subscription) first."""
    from shopflow.sources.bus.factory import ensure_event_topic, make_publisher
    from shopflow.sources.bus.pubsub import ensure_topic_and_subscription

    settings = _bus_settings(env)
    if settings.bus.value == "pubsub":
        # A short ack deadline: a killed consumer's messages come back in seconds, not minutes.
        ensure_topic_and_subscription(settings, ack_deadline_seconds=PUBSUB_ACK_DEADLINE_SECONDS)
    else:
        ensure_event_topic(settings)
    publisher = make_publisher(settings)
    try:
        publisher.publish(payloads)
    finally:
        publisher.close()


def dead_letter_payloads(lake: Path) -> Counter[bytes]:
    """How often each payload is in `deadletter/events/`."""
    files = [str(p) for p in (lake / "deadletter" / "events").rglob("*.parquet")]
    if not files:
        return Counter()
    table = ds.dataset(files, format="parquet").to_table(columns=["payload", "reason"])
    if any(not r for r in table.column("reason").to_pylist()):
        raise AssertionError("a dead letter without a reason")
    return Counter(table.column("payload").to_pylist())


def raw_files(lake: Path) -> int:
    """How many raw event files have landed."""
    return sum(1 for _ in (lake / "raw" / "events").rglob("*.parquet"))


def _stream_outcome(
    outcome: Outcome, env: dict[str, str], valid: list[bytes], malformed: list[bytes]
) -> None:
    """ETL and load after landing, then the warehouse and the dead letters checked."""
    home = Path(env["SHOPFLOW_HOME"])
    lake = home / "lake"
    for args in (("etl",), ("load",)):
        must_succeed(run(env, *args), outcome)
    compare(outcome, {json.loads(p)["event_id"] for p in valid}, home)
    dead = dead_letter_payloads(lake)
    outcome.dead_lettered = len(dead)
    missing = set(malformed) - set(dead)
    if missing:
        outcome.problems.append(f"{len(missing)} malformed payloads not in the dead letters")


def scenario_malformed_stream(
    scratch: Path, valid_count: int, malformed_count: int, seed: int
) -> Outcome:
    """Malformed payloads of every kind mixed into the stream; the consumer lands the rest."""
    outcome = Outcome(f"{malformed_count:,} malformed messages mixed into the stream (Kafka)")
    started = time.monotonic()
    rng = random.Random(seed)
    home = scratch / "malformed"
    env = bus_env(home, f"malformed-{seed}-{time.time_ns()}")
    valid = valid_payloads(valid_count, "v")
    malformed = malformed_payloads(malformed_count, rng)
    stream = valid + malformed
    rng.shuffle(stream)
    publish(env, stream)
    outcome.injections = malformed_count
    landing = run(env, "ingest", "events", "--idle-stop-seconds", "6")
    must_succeed(landing, outcome)
    _stream_outcome(outcome, env, valid, malformed)
    outcome.seconds = time.monotonic() - started
    return outcome


def scenario_kill_landing(
    scratch: Path, valid_count: int, kills: int, seed: int, bus: str = "kafka"
) -> Outcome:
    """kill -9 of the landing consumer `kills` times mid-stream, restarted each time."""
    outcome = Outcome(f"kill -9 of the landing consumer, {kills} times ({bus})")
    started = time.monotonic()
    rng = random.Random(seed)
    home = scratch / f"landing-kills-{bus}"
    env = bus_env(home, f"kills-{seed}-{time.time_ns()}", bus)
    lake = home / "lake"
    valid = valid_payloads(valid_count, "k")
    malformed = malformed_payloads(max(1, valid_count // 100), rng)
    stream = valid + malformed
    rng.shuffle(stream)
    publish(env, stream)
    landed_before = 0
    for _ in range(kills):
        process = start(env, "ingest", "events", "--idle-stop-seconds", "30")
        # Kill once this run has landed a batch of its own: the kill then hits a live consumer
        # between (or inside) later batches, never before it started.
        deadline = time.monotonic() + 60
        while raw_files(lake) <= landed_before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        alive = process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.communicate()
        outcome.injections += 1
        landed_now = raw_files(lake)
        if not alive or landed_now <= landed_before:
            outcome.problems.append("a kill did not hit a consumer that was landing")
        if len(raw_event_ids(lake)) >= len(valid):
            outcome.problems.append("a kill came after the whole stream had landed")
        landed_before = landed_now
    # Long enough for Kafka to drop the killed members (session timeout) and reassign, and for
    # Pub/Sub to redeliver what they held (ack deadline).
    final = run(env, "ingest", "events", "--idle-stop-seconds", "20")
    must_succeed(final, outcome)
    _stream_outcome(outcome, env, valid, malformed)
    outcome.seconds = time.monotonic() - started
    return outcome
