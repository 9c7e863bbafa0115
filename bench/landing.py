"""Landing throughput per bus: publish simulated events to a fresh topic, then time `land_events`."""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench._bus_ceiling import drain
from bench._harness import (
    BenchContext,
    BenchResult,
    Row,
    benchmark,
    current_rss_bytes,
    run_isolated,
)
from bench._landing_baseline import Baseline, extract_baseline, land_with_baseline
from bench._landing_topics import CASES, case_settings, drop_topic
from shopflow.ingest.events import LandingLimits, land_events
from shopflow.ingest.report import IngestReport
from shopflow.lake import LakeLayout
from shopflow.settings import BusKind, Settings, load_settings
from shopflow.simulator import ShopSimulator, SimulationConfig
from shopflow.sources.bus.base import EventConsumer, MessageBatch, ReceivedMessage

DEFAULT_EVENTS: Final = 200_000
QUICK_EVENTS: Final = 2_000
#: Landing gives up after this long without a message, so a lost message cannot hang the run.
#: Longer than the Pub/Sub ack deadline (120 s), so a delivery lost in transit is redelivered first.
IDLE_STOP_SECONDS: Final = 180.0
MIB: Final = 1024**2


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What the publishing process did."""

    published: int
    seconds: float


@dataclass(frozen=True, slots=True)
class LandOutcome:
    """What the landing process did; times from the start of `land_events`."""

    read: int
    written: int
    deadlettered: int
    files: int
    seconds: float
    first_message_seconds: float | None
    longest_pause_seconds: float
    rss_before_bytes: int


class _FirstMessageClock:
    """An `EventConsumer` that notes when the first message arrived (start-up cost, e.g. a group join)."""

    def __init__(self, inner: EventConsumer) -> None:
        self.inner = inner
        self.first_at: float | None = None

    def receive_batch(self, max_messages: int, timeout_seconds: float) -> MessageBatch:
        received = self.inner.receive_batch(max_messages, timeout_seconds)
        if len(received) and self.first_at is None:
            self.first_at = time.perf_counter()
        return received

    def acknowledge_batch(self, batch: MessageBatch) -> None:
        self.inner.acknowledge_batch(batch)

    def receive(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        return self.receive_batch(max_messages, timeout_seconds).messages()

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        self.inner.acknowledge(messages)

    def close(self) -> None:
        self.inner.close()


def generate_payloads(events: int, seed: int, path: Path) -> tuple[int, float]:
    """Write the simulator's payloads (default dirt) for `events` valid events; (count, mean bytes)."""
    simulator = ShopSimulator(SimulationConfig(seed=seed, events=events))
    payloads = [payload for batch in simulator.batches() for payload in batch.payloads]
    path.write_bytes(pickle.dumps(payloads, protocol=pickle.HIGHEST_PROTOCOL))
    mean = sum(map(len, payloads)) / len(payloads) if payloads else 0.0
    return len(payloads), mean


def publish_payloads(settings: Settings, path: Path) -> PublishOutcome:
    """Publish every payload in `path` and wait until the bus accepted all (runs in a child)."""
    from shopflow.sources.bus.factory import make_publisher

    payloads: list[bytes] = pickle.loads(path.read_bytes())
    publisher = make_publisher(settings)
    started = time.perf_counter()
    try:
        published = publisher.publish(payloads)
    finally:
        publisher.close()
    return PublishOutcome(published, time.perf_counter() - started)


def land_all(settings: Settings, expected: int) -> LandOutcome:
    """Run `land_events` until `expected` messages are landed (runs in a child)."""
    from shopflow.sources.bus.factory import make_consumer

    consumer = _FirstMessageClock(make_consumer(settings))
    layout = LakeLayout.from_settings(settings)
    limits = LandingLimits.from_settings(
        settings, max_messages=expected, idle_stop_seconds=IDLE_STOP_SECONDS
    )
    batch_ends: list[float] = []

    def on_batch(report: IngestReport) -> None:
        batch_ends.append(time.perf_counter())

    rss_before = current_rss_bytes()
    started = time.perf_counter()
    try:
        report = land_events(consumer, layout, limits, on_batch=on_batch)
    finally:
        consumer.close()
    # Up to the last written batch: an idle tail (only if messages went missing) is not landing.
    ended = batch_ends[-1] if batch_ends else time.perf_counter()
    pauses = [b - a for a, b in zip([started, *batch_ends], batch_ends, strict=False)]
    return LandOutcome(
        read=report.read,
        written=report.written,
        deadlettered=report.deadlettered,
        files=len(report.files),
        seconds=ended - started,
        first_message_seconds=None if consumer.first_at is None else consumer.first_at - started,
        longest_pause_seconds=max(pauses, default=0.0),
        rss_before_bytes=rss_before,
    )


def _from_first_message(read: int, seconds: float, first: float | None, unit: str) -> str:
    """The notes' start-up part: when the first message came and the rate from it on."""
    if first is None:
        return ""
    steady = read / max(seconds - first, 1e-9)
    return f"first message after {first:.2f} s ({steady:,.0f} {unit}/s from it); "


def _land_row(label: str, land: LandOutcome, peak_rss: int | None, batch: str) -> Row:
    first = _from_first_message(land.read, land.seconds, land.first_message_seconds, "events")
    return Row(
        case=label,
        params={"messages": land.read, "batch": batch},
        wall_seconds=land.seconds,
        items=land.read,
        unit="events",
        peak_rss_bytes=peak_rss,
        notes=(
            f"{first}longest pause between batches {land.longest_pause_seconds:.1f} s; "
            f"{land.written:,} valid + {land.deadlettered:,} dead-lettered in "
            f"{land.files} files; RSS {land.rss_before_bytes / MIB:,.0f} MiB before landing"
        ),
    )


def _publish(settings: Settings, case: str, payload_file: Path, payloads: int) -> Row:
    from shopflow.sources.bus.factory import ensure_event_topic

    ensure_event_topic(settings)
    print(f"bench landing: {case}: publishing {payloads:,} payloads", flush=True)
    published = run_isolated(publish_payloads, settings, payload_file)
    pub = published.value
    return Row(
        case=f"{case}: publish",
        params={"messages": pub.published},
        wall_seconds=pub.seconds,
        items=pub.published,
        unit="msgs",
        peak_rss_bytes=published.peak_rss_bytes,
        notes="publisher process; includes the payload list in memory",
    )


def _checks(case: str, settings: Settings, land: LandOutcome, published: int) -> list[str]:
    notes = []
    if land.longest_pause_seconds > 2 * settings.landing_batch_max_seconds:
        notes.append(
            f"{case}: landing paused {land.longest_pause_seconds:.0f} s between two batches "
            "(a delivery held back until its ack deadline passed, or the machine was starved); "
            "the wall time includes the pause"
        )
    if land.read < published:
        notes.append(
            f"{case}: only {land.read:,} of {published:,} messages arrived within "
            f"{IDLE_STOP_SECONDS:.0f} s of idling; its landing figure covers those only"
        )
    return notes


def _run_baseline(
    baseline: Baseline, base: Settings, case: str, scratch: Path, payload_file: Path, payloads: int
) -> tuple[list[Row], list[str]]:
    """Publish to a fresh topic and land it with the baseline commit's code."""
    settings = case_settings(base, case, scratch / f"baseline-{case}")
    label = f"{case}: land, before ({baseline.commit})"
    try:
        publish = _publish(settings, f"{case} (for the baseline)", payload_file, payloads)
        print(f"bench landing: {case}: landing with {baseline.commit}", flush=True)
        values, peak = land_with_baseline(baseline, settings, publish.items)
    finally:
        drop_topic(settings)
    land = LandOutcome(**values)  # type: ignore[arg-type]
    # The baseline's batch limits are its own defaults, not this run's settings.
    row = _land_row(label, land, peak, "its defaults")
    return [row], _checks(label, settings, land, publish.items)


def _run_ceiling(
    base: Settings, case: str, scratch: Path, payload_file: Path, payloads: int
) -> tuple[list[Row], list[str]]:
    """Publish to a fresh topic and drain it with the landing's consumer, nothing written."""
    settings = case_settings(base, case, scratch / f"ceiling-{case}")
    try:
        publish = _publish(settings, f"{case} (for the ceiling)", payload_file, payloads)
        print(f"bench landing: {case}: draining (bus ceiling)", flush=True)
        drained = run_isolated(drain, settings, publish.items, IDLE_STOP_SECONDS)
    finally:
        drop_topic(settings)
    outcome = drained.value
    first = _from_first_message(
        outcome.read, outcome.seconds, outcome.first_message_seconds, "msgs"
    )
    row = Row(
        case=f"{case}: bus ceiling (read + acknowledge only)",
        params={"messages": outcome.read},
        wall_seconds=outcome.seconds,
        items=outcome.read,
        unit="msgs",
        peak_rss_bytes=drained.peak_rss_bytes,
        notes=f"{first}{outcome.receive_calls:,} receive calls; nothing validated or written",
    )
    notes = []
    if outcome.read < publish.items:
        notes.append(
            f"{case}: the ceiling drain got only {outcome.read:,} of {publish.items:,} messages"
        )
    return [row], notes


def _run_case(
    settings: Settings, case: str, payload_file: Path, payloads: int
) -> tuple[list[Row], list[str]]:
    try:
        publish = _publish(settings, case, payload_file, payloads)
        print(f"bench landing: {case}: landing", flush=True)
        landed = run_isolated(land_all, settings, publish.items)
    finally:
        drop_topic(settings)
    land = landed.value
    batch = f"{settings.landing_batch_max_messages} msgs / {settings.landing_batch_max_seconds:g} s"
    row = _land_row(f"{case}: land", land, landed.peak_rss_bytes, batch)
    return [publish, row], _checks(case, settings, land, publish.items)


@benchmark(
    "landing",
    title="Landing throughput",
    description=(
        "For each bus, N simulated events (the simulator's payloads with its default dirt: "
        "duplicates, late and malformed deliveries) are published to a fresh topic, then "
        "`shopflow.ingest.events.land_events` drains them into a temporary local lake with the "
        "batch limits from settings. *publish* rows: messages accepted by the bus per second "
        "(one process, publish call until every message is acknowledged by the bus). *land* "
        "rows: messages read, validated, written as Parquet and acknowledged per second, timed "
        "from the call of `land_events` (consumer already connected, so a Kafka group join is "
        "included) to the last acknowledged batch. Peak RSS: the high-water mark of that "
        "process over its whole life (interpreter and imports included), measured in a fresh "
        "spawned process per row. The notes give the rate from the first message on, which "
        "leaves out the start-up (for Kafka, the consumer group join: about 3 s on Tansu). "
        "With `--param baseline=REV` each bus also gets a *land, before* row: the same payloads "
        "landed by commit REV's code (extracted with `git archive`), run just before. The *bus "
        "ceiling* row (leave it out with `--param ceiling=0`) drains another fresh topic of the "
        "same payloads with the landing's own consumer, batch limits and acknowledgements but "
        "nothing validated or written: what the bus and its client deliver at that backlog, run "
        "just after the landing."
    ),
)
def run(context: BenchContext) -> BenchResult:
    """Publish and land N events on each selected bus."""
    from shopflow.services import ensure_services, service_statuses, stop_services

    events = context.int_param("events", DEFAULT_EVENTS, QUICK_EVENTS)
    cases = context.list_param("buses", list(CASES))
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"--param buses: unknown {', '.join(unknown)}; known: {', '.join(CASES)}")
    base = load_settings().model_copy(update={"home": context.scratch})
    services = sorted({"kafka" if CASES[c][0] is BusKind.KAFKA else "pubsub" for c in cases})
    ours = [s.name for s in service_statuses(base, services) if s.state == "stopped"]
    ensure_services(base, services)
    rows: list[Row] = []
    notes: list[str] = []
    rev = context.params.get("baseline")
    with_ceiling = context.flag_param("ceiling", default=True)
    baseline = extract_baseline(rev, context.scratch) if rev else None
    try:
        payload_file = context.scratch / "payloads.pickle"
        count, mean_bytes = generate_payloads(events, base.seed, payload_file)
        for case in cases:
            if baseline is not None:
                case_rows, case_notes = _run_baseline(
                    baseline, base, case, context.scratch, payload_file, count
                )
                rows += case_rows
                notes += case_notes
            case_rows, case_notes = _run_case(
                case_settings(base, case, context.scratch), case, payload_file, count
            )
            rows += case_rows
            notes += case_notes
            if with_ceiling:
                case_rows, case_notes = _run_ceiling(
                    base, case, context.scratch, payload_file, count
                )
                rows += case_rows
                notes += case_notes
    finally:
        if ours:
            stop_services(base, ours)
    from shopflow.sources.bus.kafka import DEFAULT_PARTITIONS
    from shopflow.sources.bus.pubsub_consumer import PULL_BATCH

    dirt = SimulationConfig().dirt
    settings: dict[str, object] = {
        "events": f"{events:,} valid events from the simulator (seed {base.seed}) = {count:,} payloads, mean {mean_bytes:.0f} bytes",
        "dirt": f"duplicates {dirt.duplicate_rate:.1%}, late {dirt.late_rate:.1%}, malformed {dirt.malformed_rate:.1%}",
        "landing batch": f"closes at {base.landing_batch_max_messages:,} messages or {base.landing_batch_max_seconds:g} s (settings)",
        "Pub/Sub": f"emulator at {base.pubsub_emulator_host}; sync pull = unary Pull of up to {PULL_BATCH:,} per call, {base.pubsub_pull_concurrency} kept in flight by a background thread (also while a batch is written) until {base.landing_batch_max_messages:,} pulled messages wait; streaming pull = StreamingPull with flow control of 20,000 outstanding",
        "Kafka": f"Tansu at {base.kafka_bootstrap_servers}, topic with {DEFAULT_PARTITIONS} partitions, one consumer (fetches of up to 16 MiB a partition)",
        "services started by this run": ", ".join(ours) or "none (already running)",
        "lake": "local file system under a temporary directory",
    }
    if baseline is not None:
        settings["baseline"] = (
            f"`--param baseline={rev}` = commit {baseline.commit}: each bus's *before* row lands "
            "a fresh topic of the same payloads with that commit's code and default settings, "
            "just before the current code's rows"
        )
    return BenchResult(rows=rows, settings=settings, notes=notes)
