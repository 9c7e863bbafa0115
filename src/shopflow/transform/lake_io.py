"""The ETL's lake I/O: reading raw and curated inputs through the engine, and committing
outputs partition by partition (atomically each), in the background while the engine computes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.contracts import (
    RAW_EVENT_SCHEMA,
)
from shopflow.lake import (
    LakeLayout,
    delete_partition,
    list_data_files,
    list_partitions,
    read_dataset,
    replace_partition,
)
from shopflow.transform import engine
from shopflow.transform.curated_tables import (
    ACTIVITY_SCHEMAS,
    CURATED_EVENTS_SCHEMA,
    REJECTS_SOURCE,
    WRITE_THREADS,
    DataFrame,
)


def _read_parquet(
    session: Any, paths: Sequence[str], schema: pa.Schema, *, base_path: str | None = None
) -> DataFrame:
    """Parquet files or Hive partition folders as one DataFrame typed by `schema`."""
    return engine.read_parquet(session, paths, schema, base_path=base_path)


def extract_raw_events(session: Any, layout: LakeLayout, urls: Sequence[str]) -> DataFrame:
    """The given raw event files (with `date` and `hour` from their paths)."""
    schema = pa.schema([*RAW_EVENT_SCHEMA, ("date", pa.date32()), ("hour", pa.int32())])
    return _read_parquet(session, list(urls), schema, base_path=layout.events_root())


def extract_pulls(session: Any, layout: LakeLayout, source: str, schema: pa.Schema) -> DataFrame:
    """Every raw pull of `orders`, `products` or `users` (duplicates across pulls included)."""
    root = layout.pull_root(source)
    urls = [p.url for p in list_partitions(root)]
    full = pa.schema([*schema, ("cursor_date", pa.date32())])
    return _read_parquet(session, urls, full, base_path=root).drop("cursor_date")


def extract_curated_events(
    session: Any, layout: LakeLayout, dates: Iterable[date] | None = None
) -> DataFrame:
    """Curated `events_clean` of the given event dates (default: all of it)."""
    root = layout.curated_root("events_clean")
    wanted = None if dates is None else set(dates)
    urls = [p.url for p in list_partitions(root) if wanted is None or p.date in wanted]
    return _read_parquet(session, urls, CURATED_EVENTS_SCHEMA, base_path=root)


def extract_activity(session: Any, layout: LakeLayout, name: str) -> DataFrame:
    """Every date of a curated activity table (`ACTIVITY_TABLES`)."""
    root = layout.curated_root(name)
    urls = [p.url for p in list_partitions(root)]
    return _read_parquet(session, urls, ACTIVITY_SCHEMAS[name], base_path=root)


def partition_keys(table: pa.Table, hourly: bool) -> list[tuple[date, int | None]]:
    columns = ["date", "hour"] if hourly else ["date"]
    keys = table.select(columns).group_by(columns).aggregate([])
    if hourly:
        pairs = zip(keys["date"].to_pylist(), keys["hour"].to_pylist(), strict=True)
        return sorted(set(pairs))
    return [(day, None) for day in sorted(set(keys["date"].to_pylist()))]


def _part(table: pa.Table, day: date, hour: int | None = None) -> pa.Table:
    mask = pc.equal(table["date"], pa.scalar(day, pa.date32()))
    if hour is not None:
        mask = pc.and_(mask, pc.equal(table["hour"], pa.scalar(hour, pa.int32())))
    return table.filter(mask)


def write_partitions(
    table: pa.Table,
    name: str,
    layout: LakeLayout,
    keys: Iterable[tuple[date, int | None]],
    *,
    delete_empty: bool = False,
) -> list[str]:
    """Replace the given partitions of a curated table with their rows of `table`; with
    `delete_empty`, a partition left without rows is deleted instead of written empty."""
    keys = list(keys)
    parts = _split(table, hourly=any(hour is not None for _, hour in keys))
    empty = table.slice(0, 0)
    writes: list[tuple[pa.Table | None, str]] = []
    for day, hour in keys:
        part = parts.get((day, hour), empty)
        deleted = delete_empty and part.num_rows == 0
        writes.append((None if deleted else part, layout.curated_partition(name, day, hour)))
    return _replace_partitions(writes)


def existing_partition_keys(
    layout: LakeLayout, name: str, dates: Iterable[date]
) -> list[tuple[date, int | None]]:
    """The partitions a curated table has now for `dates` (lists those dates only)."""
    keys: list[tuple[date, int | None]] = []
    for day in sorted(set(dates)):
        for partition in list_partitions(layout.curated_partition(name, day)):
            keys.append((day, partition.hour))
    return keys


def _replace_or_delete(table: pa.Table | None, url: str) -> str:
    if table is None:
        delete_partition(url)
        return f"{url} (deleted)"
    return replace_partition(table, url)


def _replace_partitions(writes: Sequence[tuple[pa.Table | None, str]]) -> list[str]:
    """`replace_partition` of each (table, partition URL), or its deletion for a None table, a
    few at a time; URLs in input order.

    Parquet encoding and the uploads release the GIL, so a small pool overlaps them; each
    partition is still committed atomically on its own, as in a serial loop.
    """
    if len(writes) <= 1:
        return [_replace_or_delete(table, url) for table, url in writes]
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(writes))) as pool:
        return list(pool.map(lambda write: _replace_or_delete(*write), writes))


def _split(table: pa.Table, hourly: bool) -> dict[tuple[date, int | None], pa.Table]:
    """Each partition's rows, in their order in `table` (a stable sort, then zero-copy slices)."""
    columns = ["date", "hour"] if hourly else ["date"]
    if table.num_rows == 0:
        return {}
    ordered = table.take(
        pc.sort_indices(table.select(columns), [(c, "ascending") for c in columns])
    )
    keys = [ordered[c].combine_chunks() for c in columns]
    n = ordered.num_rows
    changed = pc.not_equal(keys[0].slice(1), keys[0].slice(0, n - 1))
    for key in keys[1:]:
        changed = pc.or_(changed, pc.not_equal(key.slice(1), key.slice(0, n - 1)))
    starts = [0, *(pc.indices_nonzero(changed).to_numpy() + 1).tolist(), n]
    parts: dict[tuple[date, int | None], pa.Table] = {}
    for begin, stop in itertools.pairwise(starts):
        day = keys[0][begin].as_py()
        hour = keys[1][begin].as_py() if hourly else None
        parts[(day, hour)] = ordered.slice(begin, stop - begin)
    return parts


def _canonical(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    relaxed = pa.schema([pa.field(c, table.schema.field(c).type) for c in columns])
    projected = pa.Table.from_arrays([table[c] for c in columns], schema=relaxed)
    return projected.sort_by([(c, "ascending") for c in columns]).combine_chunks()


def write_changed_partitions(table: pa.Table, name: str, layout: LakeLayout) -> list[str]:
    """Replace the date partitions of a curated table whose rows differ from `table`'s."""
    root = layout.curated_root(name)
    stored = read_dataset(root) if list_data_files(root) else None
    columns = [c for c in table.column_names if c != "date"]
    changed: list[tuple[pa.Table | None, str]] = []
    if stored is not None and "date" in stored.column_names:
        # Dates that no longer have rows (their orders or events are gone) are deleted.
        gone = set(stored["date"].to_pylist()) - set(table["date"].to_pylist())
        changed += [(None, layout.curated_partition(name, day)) for day in sorted(gone)]
    for day, _ in partition_keys(table, hourly=False):
        new = _part(table, day)
        if stored is not None and stored.num_rows and set(columns) <= set(stored.column_names):
            old = _part(stored, day)
            if old.num_rows == new.num_rows and _canonical(old, columns).equals(
                _canonical(new, columns)
            ):
                continue
        changed.append((new, layout.curated_partition(name, day)))
    return _replace_partitions(changed)


def write_snapshot(table: pa.Table, name: str, layout: LakeLayout) -> str:
    """Replace a whole-table snapshot: `curated/<table>/part-00000.parquet`."""
    return replace_partition(table, layout.curated_root(name))


def write_rejects(table: pa.Table, layout: LakeLayout, dates: Iterable[date]) -> list[str]:
    """Replace the ETL dead letters of each date (an empty date clears an older file)."""
    writes: list[tuple[pa.Table | None, str]] = []
    for day in dates:
        part = _part(table, day)
        url = layout.deadletter_partition(REJECTS_SOURCE, day)
        if part.num_rows or list_data_files(url):
            writes.append((part, url))
    return _replace_partitions(writes)


class BackgroundCommits:
    """Outputs committed on one background thread while the engine computes the next.

    The commits (Arrow written as Parquet, or files Spark staged moved into place) are lake I/O
    with no engine call, so they overlap the engine's
    work. Leaving the `with` block waits for every write, re-raises the first failure, and only
    then records what was written; nothing that reads the lake may run inside the block.
    """

    def __init__(self, record: Callable[[str, list[str], int], None]) -> None:
        self._record = record
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopflow-commit")
        self._pending: list[tuple[str, Future[list[str]], int]] = []

    def submit(self, name: str, rows: int, write: Callable[[], list[str]]) -> None:
        """Write in the background; `rows` is recorded with the written URLs."""
        self._pending.append((name, self._pool.submit(write), rows))

    def __enter__(self) -> BackgroundCommits:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)
        if exc_info[0] is None:
            for name, future, rows in self._pending:
                self._record(name, future.result(), rows)
