"""A micro-batch's write of the stream table as its hour fills: one file per hour against 5-minute
slices (`shopflow.transform.stream_slices`).

Each case runs in a fresh spawned process over a fresh local lake. Set-up (not timed): the hour
of `events_clean_stream` filled with `rate` events/s of in-order events from the start of the
hour up to `minute`, as 10-s micro-batches would have left it. Timed: one more micro-batch of
10 s of events (`rate` x 10 rows), read, merged and rewritten in the layout of the case:

* *one file per hour* (the layout before slices, as its code did it): the hour's partition is
  read whole, the batch merged in by `event_id` (`merge_partition`) and the partition replaced
  (`replace_partition`);
* *5-minute slices*: `read_merged_slices` + `replace_slices`, as `apply_micro_batch` does now.

The live table (`user_behavior_live`) is written the same way each micro-batch, so a micro-batch
costs about twice the figure. Rows are synthetic with the stream table's schema (ids and names
of ~20 characters, prices); only the layout differs between the two rows of a minute.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from bench._harness import BenchContext, BenchResult, Row, benchmark, run_isolated
from shopflow.lake import LakeLayout, read_dataset, replace_partition
from shopflow.settings import load_settings
from shopflow.transform.stream_merge import STREAM_SCHEMA, STREAM_TABLE
from shopflow.transform.stream_plan import merge_partition
from shopflow.transform.stream_slices import SLICE_MINUTES, read_merged_slices, replace_slices

HOUR_START: Final = datetime(2026, 11, 29, 10, tzinfo=UTC)
BATCH_SECONDS: Final = 10
LAYOUTS: Final = ("one file per hour", f"{SLICE_MINUTES}-minute slices")


def _rows(start_second: int, count: int, seed: int) -> pa.Table:
    """`count` stream rows evenly over the 10 s from `start_second` of the hour."""
    rng = np.random.default_rng(seed)
    step_us = BATCH_SECONDS * 1_000_000 // max(count, 1)
    start_us = int(HOUR_START.timestamp() * 1_000_000) + start_second * 1_000_000
    micros = start_us + np.arange(count, dtype=np.int64) * step_us
    columns: dict[str, pa.Array] = {}
    for field in STREAM_SCHEMA:
        if field.name == "date":
            columns[field.name] = pa.array([HOUR_START.date()] * count, field.type)
        elif field.name == "hour":
            columns[field.name] = pa.array([HOUR_START.hour] * count, field.type)
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = pa.array(micros, pa.int64()).cast(field.type)
        elif pa.types.is_string(field.type):
            ids = rng.integers(0, 10**12, count).astype("U12")
            columns[field.name] = pa.array(np.char.add(f"{field.name[:6]}-", ids), field.type)
        elif pa.types.is_floating(field.type):
            columns[field.name] = pa.array(rng.random(count) * 1000.0, field.type)
        else:
            columns[field.name] = pa.nulls(count, field.type)
    return pa.table(columns, schema=STREAM_SCHEMA)


def _write(layout: LakeLayout, kind: str, batch: pa.Table) -> None:
    if kind == LAYOUTS[0]:
        partition = layout.curated_partition(STREAM_TABLE, HOUR_START.date(), HOUR_START.hour)
        columns = [c for c in batch.column_names if c not in ("date", "hour")]
        schema = pa.schema([batch.schema.field(c) for c in columns])
        stored = read_dataset(partition, schema=schema, columns=columns)
        replace_partition(merge_partition(stored, batch.select(columns)), partition)
    else:
        replace_slices(read_merged_slices(batch, layout, STREAM_TABLE), layout, STREAM_TABLE)


def measure(kind: str, rate: int, minute: int) -> tuple[float, int]:
    """In a fresh process: fill the hour to `minute`, then time one micro-batch; return its
    seconds and the rows stored before it."""
    with tempfile.TemporaryDirectory() as scratch:
        layout = LakeLayout.from_settings(load_settings(home=Path(scratch)))
        per_batch = rate * BATCH_SECONDS
        # The hour as micro-batches would have left it, written at once (one file per hour, or
        # one per slice): the set-up is not what is measured.
        filled = [_rows(start, per_batch, start) for start in range(0, minute * 60, BATCH_SECONDS)]
        stored = sum(t.num_rows for t in filled)
        if filled:
            _write(layout, kind, pa.concat_tables(filled))
        del filled
        batch = _rows(minute * 60, per_batch, minute * 60)
        started = time.perf_counter()
        _write(layout, kind, batch)
        return time.perf_counter() - started, stored


@benchmark(
    "stream_write",
    title="A micro-batch's write of the stream table as the hour fills",
    description=__doc__ or "",
)
def run(ctx: BenchContext) -> BenchResult:
    """Both layouts at each minute of the hour."""
    rate = ctx.int_param("rate", 5_000, 200)
    default_minutes = ("4", "34") if ctx.quick else ("4", "14", "34", "59")
    minutes = [int(m) for m in ctx.list_param("minutes", default_minutes)]
    if rate < 1 or any(not 0 <= m <= 59 for m in minutes):
        raise ValueError("--param rate must be at least 1 and minutes between 0 and 59")
    rows = []
    for minute in minutes:
        for kind in LAYOUTS:
            result = run_isolated(measure, kind, rate, minute)
            seconds, stored = result.value
            rows.append(
                Row(
                    case=f"{kind}, minute {minute} of the hour",
                    params={"rate": rate, "minute": minute, "stored_rows": stored},
                    wall_seconds=seconds,
                    items=rate * BATCH_SECONDS,
                    unit="rows",
                    peak_rss_bytes=result.peak_rss_bytes,
                    notes=f"{stored:,} rows of the hour stored before the micro-batch",
                )
            )
    return BenchResult(
        rows=rows,
        settings={
            "rate": f"{rate:,} events/s, in order; a micro-batch = {BATCH_SECONDS} s of events",
            "lake": "local file system under a temporary directory",
        },
        notes=(
            "wall s: one micro-batch's read + merge + rewrite of the stream table (the live "
            "table costs about as much again).",
            "peak RSS: the whole case's process, the set-up (filling the hour) included.",
        ),
    )
