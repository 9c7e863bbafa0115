"""`shopflow demo`: the whole pipeline on one machine, from an empty home to metrics.

Services up, shop seeded, simulated events (with duplicates, late and malformed ones) published,
landed, orders and catalogue ingested, the ETL run, the warehouse loaded, metrics read back, and a
closing account of how the dirt was caught.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow.compute as pc

from shopflow.ingest.catalog import ingest_catalog
from shopflow.ingest.events import ingest_events
from shopflow.ingest.orders import ingest_orders
from shopflow.lake import LakeLayout, list_data_files, read_dataset
from shopflow.metrics.results import fetch_metrics
from shopflow.quality import gated_load
from shopflow.services import ensure_services
from shopflow.settings import BusKind, Settings
from shopflow.simulator.config import SimulationConfig
from shopflow.simulator.publish import PublishReport, publish_simulation
from shopflow.transform.engine import open_etl_session, stopping
from shopflow.transform.jobs import EtlRequest, run_etl

#: How long the landing consumer waits on an empty bus before it decides the demo stream is over.
LANDING_IDLE_SECONDS: Final = 4.0

StepCallback = Callable[[str], None]


@dataclass(slots=True)
class DirtCaught:
    """How the pipeline dealt with the simulator's deliberate dirt."""

    duplicates_published: int
    raw_event_rows: int
    distinct_events: int
    late_published: int
    events_outside_their_hour: int
    malformed_published: int
    dead_lettered: int

    @property
    def duplicates_removed(self) -> int:
        """Landed rows dropped by deduplication on `event_id`."""
        return self.raw_event_rows - self.distinct_events

    def lines(self) -> list[str]:
        """The closing summary, one line per kind of dirt."""
        return [
            f"duplicates: {self.duplicates_published:,} redelivered by the simulator; "
            f"{self.duplicates_removed:,} landed copies removed by event_id "
            f"({self.raw_event_rows:,} landed rows -> {self.distinct_events:,} distinct events)",
            f"late events: {self.late_published:,} delivered hours late; "
            f"{self.events_outside_their_hour:,} landed outside their event hour",
            f"malformed: {self.malformed_published:,} published; "
            f"{self.dead_lettered:,} in deadletter/events with a reason",
        ]


@dataclass(slots=True)
class DemoReport:
    """Everything one demo run did."""

    published: PublishReport
    steps: dict[str, float] = field(default_factory=dict)
    dirt: DirtCaught | None = None
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0


def _events_outside_their_hour(layout: LakeLayout) -> tuple[int, int, int]:
    """(rows, distinct event ids, rows whose event_ts is not in their partition's hour)."""
    events = read_dataset(layout.events_root(), columns=["event_id", "event_ts", "date", "hour"])
    if events.num_rows == 0:
        return 0, 0, 0
    ts = events.column("event_ts")
    same_date = pc.equal(pc.cast(ts, "date32"), events.column("date"))
    same_hour = pc.equal(pc.cast(pc.hour(ts), "int64"), pc.cast(events.column("hour"), "int64"))
    outside = events.num_rows - pc.sum(pc.and_(same_date, same_hour)).as_py()
    return events.num_rows, pc.count_distinct(events.column("event_id")).as_py(), outside


def count_dirt_caught(layout: LakeLayout, published: PublishReport) -> DirtCaught:
    """Compare what the simulator sent with what the lake holds."""
    rows, distinct, outside = _events_outside_their_hour(layout)
    # read_dataset, not pyarrow.dataset on URLs: the lake may be on gs://.
    dead_root = layout.deadletter_root("events")
    dead = read_dataset(dead_root, columns=["reason"]).num_rows if list_data_files(dead_root) else 0
    truth = published.truth
    return DirtCaught(
        duplicates_published=truth.duplicate_deliveries,
        raw_event_rows=rows,
        distinct_events=distinct,
        late_published=truth.late_deliveries,
        events_outside_their_hour=outside,
        malformed_published=truth.malformed_deliveries,
        dead_lettered=dead,
    )


def run_demo(
    settings: Settings,
    *,
    events: int,
    seed: int,
    on_step: StepCallback | None = None,
    on_published: Callable[[int], None] | None = None,
) -> DemoReport:
    """Run the whole pipeline once on this machine."""
    started = time.monotonic()
    step_started = started
    steps: dict[str, float] = {}

    def step(name: str) -> None:
        nonlocal step_started
        now = time.monotonic()
        steps[name] = now - step_started
        step_started = now
        if on_step:
            on_step(name)

    bus_service = "kafka" if settings.bus is BusKind.KAFKA else "pubsub"
    ensure_services(settings, [bus_service, "orders-api"])
    step("services up")

    def progress(truth: Any) -> None:
        if on_published:
            on_published(truth.valid_events)

    published = publish_simulation(
        settings, SimulationConfig(seed=seed, events=events), on_progress=progress
    )
    step("shop seeded, events published")

    ingest_events(settings, idle_stop_seconds=LANDING_IDLE_SECONDS)
    step("events landed")
    ingest_orders(settings)
    step("orders ingested")

    with stopping(open_etl_session(settings, app_name="shopflow-demo")) as session:
        spark = session if settings.etl_engine == "spark" else None
        ingest_catalog(spark, settings)
        step("catalogue ingested")
        run_etl(session, settings, EtlRequest())
        step("ETL run")
    gated_load(settings)  # the data-quality checks first: an error check stops the demo here
    step("quality checks passed, warehouse loaded")

    report = DemoReport(published=published, steps=steps)
    report.metrics = fetch_metrics(settings)
    report.dirt = count_dirt_caught(LakeLayout.from_settings(settings), published)
    report.seconds = time.monotonic() - started
    return report
