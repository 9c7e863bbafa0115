"""A staged landing batch written to the lake: one raw file per event hour, one dead-letter file.

Every file is committed atomically (`write_parquet_atomic`: fsync'd temp file, rename, folder
fsync); the files of a batch are written concurrently (the waits for the disk overlap), and a batch
counts as written only when all of them are committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.contracts import DEADLETTER_SCHEMA, RAW_EVENT_SCHEMA
from shopflow.ingest.report import IngestReport
from shopflow.ingest.staging import StagedBatch
from shopflow.lake import LakeLayout, write_parquet_atomic
from shopflow.lake.commit_log import register_files
from shopflow.sources.bus.base import ReceivedMessage, to_epoch_us


def dead_letters_table(
    dead_letters: Sequence[tuple[ReceivedMessage, str]], ingest_ts: datetime
) -> pa.Table:
    """Rejected messages with their raw payload and reason."""
    return pa.Table.from_pydict(
        {
            "payload": [m.payload for m, _ in dead_letters],
            "reason": [reason for _, reason in dead_letters],
            "message_id": [m.message_id for m, _ in dead_letters],
            "publish_ts": [m.publish_ts for m, _ in dead_letters],
            "ingest_ts": [ingest_ts] * len(dead_letters),
        },
        schema=DEADLETTER_SCHEMA,
    )


def hour_parts(table: pa.Table) -> Iterator[tuple[datetime, pa.Table]]:
    """The (hour, rows) runs of a staged table, which is ordered by event hour."""
    if not table.num_rows:
        return
    runs = pc.value_counts(pc.floor_temporal(table["event_ts"], unit="hour"))
    offset = 0
    for hour, count in zip(
        runs.field("values").to_pylist(), runs.field("counts").to_pylist(), strict=True
    ):
        yield hour.astimezone(UTC), table.slice(offset, count)
        offset += count


@dataclass(frozen=True, slots=True)
class _File:
    url: str
    table: pa.Table
    events: int
    dead_letters: int


def _files(layout: LakeLayout, staged: StagedBatch, ingest_ts: datetime) -> list[_File]:
    """The files of one staged batch, in partition order, dead letters last."""
    files = []
    ingest_type = RAW_EVENT_SCHEMA.field("ingest_ts").type
    for hour, part in hour_parts(staged.table):
        # Publish time, not ingest time, so a redelivered identical batch gets the same file name.
        first_ts = pc.min(part["publish_ts"]).as_py() or pc.min(part["event_ts"]).as_py()
        url = layout.event_batch_file_in(
            hour.date(), hour.hour, first_ts, part["message_id"].to_pylist()
        )
        ingest = pa.array([to_epoch_us(ingest_ts)] * part.num_rows, pa.int64()).cast(ingest_type)
        table = pa.Table.from_arrays([*part.columns, ingest], schema=RAW_EVENT_SCHEMA)
        files.append(_File(url, table, part.num_rows, 0))
    if staged.dead_letters:
        messages = [m for m, _ in staged.dead_letters]
        stamps = [m.publish_ts for m in messages if m.publish_ts is not None]
        first_ts = min(stamps) if stamps else ingest_ts
        url = layout.deadletter_file("events", first_ts, (m.message_id for m in messages))
        table = dead_letters_table(staged.dead_letters, ingest_ts)
        files.append(_File(url, table, 0, len(staged.dead_letters)))
    return files


def _register(layout: LakeLayout, files: list[_File]) -> None:
    # After the files are durable, before anything is acknowledged: the ETL reads what is recorded.
    register_files(layout, "events", [f.url for f in files if f.events])


def _write(file: _File) -> _File:
    write_parquet_atomic(file.table, file.url)
    return file


class PendingWrite:
    """The files of one batch being written on an executor; `wait` returns once all are committed."""

    def __init__(self, layout: LakeLayout, futures: list[Future[_File]]) -> None:
        self._layout = layout
        self._futures = futures

    def done(self) -> bool:
        """Whether every file is committed (or one failed: `wait` raises then)."""
        return all(f.done() for f in self._futures)

    def wait(self, report: IngestReport) -> None:
        """Block until every file is committed, record the event files in the lake's commit log,
        then count them in `report`; raise if one failed."""
        written = [f.result() for f in self._futures]
        _register(self._layout, written)
        for file in written:
            report.files.append(file.url)
            report.written += file.events
            report.deadlettered += file.dead_letters


def start_write(
    layout: LakeLayout, staged: StagedBatch, ingest_ts: datetime, executor: Executor
) -> PendingWrite:
    """Start writing one staged batch on `executor` (see `write_batch`)."""
    futures = [executor.submit(_write, f) for f in _files(layout, staged, ingest_ts)]
    return PendingWrite(layout, futures)


def write_batch(
    layout: LakeLayout,
    staged: StagedBatch,
    report: IngestReport,
    ingest_ts: datetime | None = None,
) -> None:
    """Write one staged batch durably, one file after the other: a file per event hour, one
    dead-letter file.

    `ingest_ts` defaults to now; a replay of simulated time (benchmarks) passes its own clock.
    """
    files = [_write(file) for file in _files(layout, staged, ingest_ts or datetime.now(UTC))]
    _register(layout, files)
    for file in files:
        report.files.append(file.url)
        report.written += file.events
        report.deadlettered += file.dead_letters
