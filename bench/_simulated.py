"""Simulated deliveries landed in a lake exactly as the landing consumer lands them."""

from __future__ import annotations

from shopflow.ingest.events import StagedBatch, stage_batch, write_batch
from shopflow.ingest.report import IngestReport
from shopflow.lake import LakeLayout
from shopflow.simulator.records import SimBatch
from shopflow.sources.bus.base import ReceivedMessage


def land_window(layout: LakeLayout, batch: SimBatch) -> tuple[StagedBatch, IngestReport]:
    """Validate and write one delivery window (ingest time = the window's end); no bus involved."""
    messages = [
        ReceivedMessage(
            d.payload, f"sim-{batch.window_start:%Y%m%d%H%M}-{n:07d}", d.deliver_ts, None
        )
        for n, d in enumerate(batch.deliveries)
    ]
    staged = stage_batch(messages, ingest_ts=batch.window_end)
    report = IngestReport("events", read=len(messages))
    write_batch(layout, staged, report, ingest_ts=batch.window_end)
    return staged, report
