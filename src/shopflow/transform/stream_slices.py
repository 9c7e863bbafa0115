"""How the stream stores an hour: one file per slice of `SLICE_MINUTES` of event time.

`curated/<table>/date=D/hour=HH/part-mMM.parquet` holds the rows of `events_clean_stream` (or
`user_behavior_live`) whose `event_ts` falls in minutes MM to MM + `SLICE_MINUTES` - 1 of that
hour. A micro-batch reads, merges and atomically rewrites only the slices holding a row it
changed (`read_merged_slices`, `replace_slices`). Why not one file per hour, as the batch job
writes: the current hour's file grows all hour, and rewriting it every micro-batch grew with it
(at 5,000 events/s, 6 M rows an hour in: ~9 s per table per micro-batch, measured; the end of
the hour would have been several times that). A slice holds at most `SLICE_MINUTES` of events, so
a micro-batch's cost is bounded by the slices it touches, not by the hour.

A reader of a partition reads all its files; each row is in exactly one (its slice follows from
its `event_ts`, which a row keeps through every rewrite). The key index (`stream_keys`) is named
for the partition's files as listed, so it is rebuilt when any of them changes outside a
micro-batch.

Partitions written before slices (one `part-00000.parquet` per hour) are split into slices once,
when the stream starts (`split_legacy_partitions`): each slice is written, then the old file
removed; a crash in between leaves both, and the next start writes the same slices again and
removes it. An old file that cannot be read as the table is quarantined instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.lake import LakeLayout, list_partitions, read_dataset
from shopflow.lake.io import resolve, write_parquet_atomic
from shopflow.lake.quarantine import Quarantined, quarantine, screen_files
from shopflow.transform.stream_plan import merge_partition

#: Minutes of event time per file of a stream table's hourly partition (divides 60).
SLICE_MINUTES: Final = 5
#: A slice: its partition's date and hour, and its first minute.
SliceKey = tuple[date, int, int]

_SLICE_NAME: Final = re.compile(r"part-m(\d\d)\.parquet")
_PARTITION_COLUMNS: Final = ("date", "hour")


def slice_file_name(first_minute: int) -> str:
    """The file name of the slice starting at `first_minute` of its hour."""
    return f"part-m{first_minute:02d}.parquet"


def is_slice_file(url: str) -> bool:
    """Whether a data file is named as a slice (rather than, say, an hourly file of old)."""
    match = _SLICE_NAME.fullmatch(url.rsplit("/", 1)[-1])
    return match is not None and int(match.group(1)) % SLICE_MINUTES == 0


def slice_minutes(event_ts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each timestamp's slice: the first minute of its `SLICE_MINUTES` within the hour."""
    minute = pc.minute(event_ts)
    return pc.multiply(pc.divide(minute, SLICE_MINUTES), SLICE_MINUTES)


def slice_url(layout: LakeLayout, table: str, key: SliceKey) -> str:
    """Where slice `key` of stream table `table` lives."""
    day, hour, first_minute = key
    return f"{layout.curated_partition(table, day, hour)}/{slice_file_name(first_minute)}"


def _split(rows: pa.Table) -> dict[SliceKey, pa.Table]:
    """`rows` (with `date`, `hour` and `event_ts`) by slice, without `date` and `hour`."""
    minutes = slice_minutes(rows["event_ts"])
    keys = sorted(
        set(
            zip(
                rows["date"].to_pylist(), rows["hour"].to_pylist(), minutes.to_pylist(), strict=True
            )
        )
    )
    file_columns = [name for name in rows.column_names if name not in _PARTITION_COLUMNS]
    split = {}
    for day, hour, first_minute in keys:
        mask = pc.and_(
            pc.and_(
                pc.equal(rows["date"], pa.scalar(day, pa.date32())),
                pc.equal(rows["hour"], pa.scalar(hour, pa.int32())),
            ),
            pc.equal(minutes, pa.scalar(first_minute, minutes.type)),
        )
        split[(day, hour, first_minute)] = rows.filter(mask).select(file_columns)
    return split


def read_merged_slices(
    changed: pa.Table, layout: LakeLayout, table: str
) -> dict[SliceKey, pa.Table]:
    """Each slice of stream table `table` holding a row of `changed` (with `date`, `hour` and
    `event_ts`), as stored with `changed`'s rows merged in (`merge_partition`), without the
    partition columns."""
    merged: dict[SliceKey, pa.Table] = {}
    for key, rows in _split(changed).items():
        stored = read_dataset(
            [slice_url(layout, table, key)], schema=rows.schema, columns=rows.column_names
        )
        merged[key] = merge_partition(stored, rows)
    return merged


def replace_slices(slices: dict[SliceKey, pa.Table], layout: LakeLayout, table: str) -> list[str]:
    """Replace each slice of stream table `table` whole (one atomic file write each); return the
    files written."""
    written = []
    for key, rows in sorted(slices.items()):
        url = slice_url(layout, table, key)
        write_parquet_atomic(rows, url)
        written.append(url)
    return written


def _first_of_each_event(rows: pa.Table) -> pa.Table:
    """One row per `event_id`: the first in `rows`' order."""
    seen: set[object] = set()
    keep = []
    for index, event_id in enumerate(rows["event_id"].to_pylist()):
        if event_id not in seen:
            seen.add(event_id)
            keep.append(index)
    return rows.take(pa.array(keep, pa.int64()))


def split_legacy_partitions(
    layout: LakeLayout, tables: Mapping[str, pa.Schema]
) -> tuple[list[str], list[Quarantined]]:
    """Split every partition of `tables` (name: file schema) that still holds a file not named
    as a slice into slices, and remove that file; return the partitions split, and the files of
    those partitions (of old or slices) that could not be read as the table (quarantined,
    `shopflow.lake.quarantine`). A file of no rows (the live table's placeholder) is left as it
    is."""
    split: list[str] = []
    moved: list[Quarantined] = []
    for table, schema in tables.items():
        for partition in list_partitions(layout.curated_root(table)):
            legacy = [f.url for f in partition.files if not is_slice_file(f.url)]
            if not legacy:
                continue
            # The slices too: a split cut short leaves them beside the file of old.
            every = [f.url for f in partition.files]
            bad = screen_files(layout, every, schema, partition_keys=_PARTITION_COLUMNS, deep=True)
            legacy = [url for url in legacy if url not in {q.url for q in bad}]
            for url in legacy:
                # Readable, but a row without these has no slice (nor a place in the table).
                keys = read_dataset([url], schema=schema, columns=["event_id", "event_ts"])
                if keys["event_id"].null_count or keys["event_ts"].null_count:
                    bad.append(quarantine(layout, url, "rows without event_id or event_ts"))
            moved += bad
            legacy = [url for url in legacy if url not in {q.url for q in bad}]
            slices = [
                url for url in every if is_slice_file(url) and url not in {q.url for q in bad}
            ]
            # Read in this order, a slice already written (a split cut short) comes first.
            rows = read_dataset([*slices, *legacy], schema=schema) if legacy else None
            if rows is None or rows.num_rows == 0:
                continue
            replace_slices(_split(_first_of_each_event(rows)), layout, table)
            for url in legacy:
                fs, path = resolve(url)
                fs.rm_file(path)
            split.append(partition.url)
    return split, moved
