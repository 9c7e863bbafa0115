"""The landing consumer against the real buses: validation, dead letters, SIGTERM, deadlines.

kill -9 mid-stream on both buses is a scenario of the fault suite (tests/faults, bench/faults.py).
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shopflow.contracts import Event, encode_event
from shopflow.ingest.events import LandingLimits, land_events
from shopflow.lake import LakeLayout
from shopflow.settings import BusKind, Settings
from shopflow.sources.bus.base import EventConsumer, MessageBatch, ReceivedMessage
from shopflow.sources.bus.factory import ensure_event_topic, make_consumer, make_publisher
from shopflow.sources.bus.pubsub import ensure_topic_and_subscription
from tests.ingest.conftest import raw_rows, visible_temp_files
from tests.ingest.hostile import HOSTILE

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 22, 30, tzinfo=UTC)
MALFORMED = [
    b"{not json",
    b'{"event_id": "x"}',
    b'{"event_id":"m1","event_name":"teleport","product_id":"p","user_id":"u","order_id":null,"price":1,"event_ts":"2026-11-20T10:00:00Z"}',
    b'{"event_id":"m2","event_name":"view","product_id":"p","user_id":"u","order_id":null,"price":"cheap","event_ts":"2026-11-20T10:00:00Z"}',
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
]


def valid_payloads(count: int, prefix: str) -> list[bytes]:
    """`count` distinct valid events spread over a few hours around midnight UTC."""
    return [
        encode_event(
            Event(
                event_id=f"{prefix}-{n:07d}",
                event_name=("view", "view", "view", "wishlist")[n % 4],
                product_id=f"p-{n % 97}",
                user_id=f"u-{n % 1013}",
                order_id=None,
                price=float(100 + n % 900),
                event_ts=T0 + timedelta(seconds=n % (4 * 3600)),
                session_id=None if n % 3 else f"s-{n % 50}",
            )
        )
        for n in range(count)
    ]


@pytest.fixture(params=[BusKind.PUBSUB, BusKind.KAFKA])
def bus_settings(request: pytest.FixtureRequest) -> Settings:
    """Per-test settings on each real bus, with a topic of its own."""
    name = "pubsub_settings" if request.param is BusKind.PUBSUB else "kafka_settings"
    settings: Settings = request.getfixturevalue(name)
    if settings.bus is BusKind.PUBSUB:
        # A short ack deadline so messages held by a killed consumer come back quickly.
        ensure_topic_and_subscription(settings, ack_deadline_seconds=10)
    else:
        ensure_event_topic(settings)
    return settings


def publish(settings: Settings, payloads: list[bytes]) -> None:
    publisher = make_publisher(settings)
    try:
        assert publisher.publish(payloads) == len(payloads)
    finally:
        publisher.close()


def test_valid_events_land_by_hour_and_bad_ones_go_to_dead_letters(bus_settings: Settings) -> None:
    valid = valid_payloads(3000, "v")
    publish(bus_settings, valid + MALFORMED + HOSTILE)
    consumer = make_consumer(bus_settings)
    try:
        report = land_events(
            consumer,
            LakeLayout.from_settings(bus_settings),
            LandingLimits(batch_max_messages=1000, batch_max_seconds=2.0, idle_stop_seconds=5.0),
        )
    finally:
        consumer.close()
    assert report.read >= len(valid) + len(MALFORMED) + len(HOSTILE)
    lake = bus_settings.lake_url
    events = raw_rows(lake, "raw/events")
    assert {row["event_id"] for row in events} == {f"v-{n:07d}" for n in range(3000)}
    # Every file sits in the partition of its events' hour.
    for path in Path(lake, "raw", "events").rglob("*.parquet"):
        day, hour = path.parent.parent.name.removeprefix("date="), int(path.parent.name[5:])
        for ts in pq.read_table(path, columns=["event_ts"]).column("event_ts").to_pylist():
            assert (ts.date().isoformat(), ts.hour) == (day, hour)
    assert all(row["message_id"] and row["ingest_ts"] for row in events)
    dead = raw_rows(lake, "deadletter/events")
    assert {row["payload"] for row in dead} == set(MALFORMED + HOSTILE)
    assert all(row["reason"] for row in dead)
    assert visible_temp_files(lake) == []


def landing_process(settings: Settings, idle_stop_seconds: float) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update(
        {
            "SHOPFLOW_HOME": str(settings.home),
            "SHOPFLOW_BUS": settings.bus.value,
            "SHOPFLOW_EVENTS_TOPIC": settings.events_topic,
            "SHOPFLOW_EVENTS_SUBSCRIPTION": settings.events_subscription,
            "SHOPFLOW_PUBSUB_EMULATOR_HOST": settings.pubsub_emulator_host or "",
            "SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "SHOPFLOW_KAFKA_CONSUMER_GROUP": settings.kafka_consumer_group,
            "SHOPFLOW_LANDING_BATCH_MAX_MESSAGES": "4000",
            "SHOPFLOW_LANDING_BATCH_MAX_SECONDS": "1",
        }
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shopflow.cli",
            "ingest",
            "events",
            "--idle-stop-seconds",
            str(idle_stop_seconds),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigterm_finishes_the_open_batch_and_exits_cleanly(bus_settings: Settings) -> None:
    publish(bus_settings, valid_payloads(2000, "t"))
    process = landing_process(bus_settings, idle_stop_seconds=60)
    # Signal once a batch has been committed: the handler is installed and landing is under
    # way (a fixed sleep could hit the interpreter still importing, under load).
    events_dir = Path(bus_settings.lake_url) / "raw" / "events"
    deadline = time.monotonic() + 120
    while not any(not f.name.startswith(".") for f in events_dir.rglob("*.parquet")):
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "no batch landed within 120 s"
        time.sleep(0.2)
    assert process.poll() is None, "the consumer stopped before the signal"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    assert b"events: read" in out
    before_restart = [row["event_id"] for row in raw_rows(bus_settings.lake_url, "raw/events")]
    assert before_restart and len(before_restart) == len(set(before_restart))
    # The open batch was finished: every message it had read is written.
    counts = re.search(r"read ([\d,]+), wrote ([\d,]+) in", out.decode())
    assert counts is not None, out.decode()
    read, written = (int(n.replace(",", "")) for n in counts.groups())
    assert read == written == len(before_restart)
    # What the stopped consumer had not read yet is still on the bus, uncommitted (under load a
    # SIGTERM can come before every message is fetched): a restart lands exactly the rest.
    rest = landing_process(bus_settings, idle_stop_seconds=3)
    _, rest_err = rest.communicate(timeout=120)
    assert rest.returncode == 0, rest_err.decode()
    landed = [str(row["event_id"]) for row in raw_rows(bus_settings.lake_url, "raw/events")]
    assert sorted(landed) == [f"t-{n:07d}" for n in range(2000)]  # each once


def test_unreachable_bus_is_one_line(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update(
        {
            "SHOPFLOW_HOME": str(settings.home),
            "SHOPFLOW_BUS": "kafka",
            "SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "shopflow.cli", "ingest", "events", "--max-seconds", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "shopflow services up" in lines[0], result.stderr


@pytest.mark.parametrize("bus", ["pubsub", "kafka"])
def test_a_bus_address_that_answers_but_is_not_the_bus_fails_within_the_deadline(
    settings: Settings, bus: str
) -> None:
    """An HTTP server where the bus should be: one line within the bus deadline, not a hang."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update(
        {
            "SHOPFLOW_HOME": str(settings.home),
            "SHOPFLOW_BUS": bus,
            "SHOPFLOW_PUBSUB_EMULATOR_HOST": address,
            "SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS": address,
            "SHOPFLOW_BUS_CALL_TIMEOUT_SECONDS": "3",
        }
    )
    try:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "shopflow.cli", "ingest", "events", "--max-seconds", "5"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0], result.stderr
    assert elapsed < 30, f"took {elapsed:.0f} s with a 3 s bus deadline"


class CheckedAcks:
    """A real consumer whose every acknowledgement first checks, on disk, that each message of the
    batch is in a committed raw or dead-letter file (read back with pyarrow)."""

    def __init__(self, inner: EventConsumer, lake: str) -> None:
        self.inner = inner
        self.lake = lake
        self.acked: list[str] = []

    def receive_batch(self, max_messages: int, timeout_seconds: float) -> MessageBatch:
        return self.inner.receive_batch(max_messages, timeout_seconds)

    def acknowledge_batch(self, batch: MessageBatch) -> None:
        on_disk = {
            str(row["message_id"])
            for dataset in ("raw/events", "deadletter/events")
            for row in raw_rows(self.lake, dataset)
        }
        missing = set(batch.message_ids) - on_disk
        assert not missing, f"{len(missing)} messages acknowledged before their file was committed"
        self.acked.extend(batch.message_ids)
        self.inner.acknowledge_batch(batch)

    def receive(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        return self.receive_batch(max_messages, timeout_seconds).messages()

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self.acknowledge_batch(MessageBatch.from_messages(messages))

    def close(self) -> None:
        self.inner.close()


def test_a_batch_is_acknowledged_only_once_its_files_are_committed(bus_settings: Settings) -> None:
    """Files are written while the next batch is read: acknowledgements still wait for them."""
    valid = valid_payloads(6000, "a")
    publish(bus_settings, valid + MALFORMED)
    consumer = CheckedAcks(make_consumer(bus_settings), bus_settings.lake_url)
    try:
        report = land_events(
            consumer,
            LakeLayout.from_settings(bus_settings),
            LandingLimits(batch_max_messages=500, batch_max_seconds=2.0, idle_stop_seconds=5.0),
        )
    finally:
        consumer.close()
    assert report.read >= len(valid) + len(MALFORMED)
    assert len(consumer.acked) == report.read  # every batch read was acknowledged, once
    landed = {row["event_id"] for row in raw_rows(bus_settings.lake_url, "raw/events")}
    assert landed == {f"a-{n:07d}" for n in range(6000)}
