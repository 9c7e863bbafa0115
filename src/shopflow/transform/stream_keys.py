"""The stream table's key index: per hourly partition, the few keys a micro-batch's sessions
depend on, so that a micro-batch need not scan the stored rows of its dates.

`_state/streaming/events_clean_stream-keys/date=D/hour=HH/keys-<G>m-<digest>.parquet` holds, of
the stream table partition (D, HH) whose data files (names, sizes and modification times) have
that digest, the first and last key (`event_ts`, `event_id`) of each user's derived rows per date and
`G`-minute bucket of event time, and of each user's client session per date (`summarise`). These
are the stand-ins `stream_plan.context_rows` keeps of the rows before a user's first new key, and
min and max compose, so `context_rows` over a partition's keys gives what it gives over the
partition's rows. A user whose first new key sorts after every key of theirs in the index (an
in-order user: the usual case) needs nothing else; only the other users' stored rows are read.

Why the file name carries a digest of the table files: the index is a cache of the table, and
a stale one would give wrong sessions. A partition's keys count only if their name matches the
partition's files as listed now; otherwise (a crash between the table's write and the index's, a lake
from before the index, a different session gap) they are rebuilt from the table partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.lake import DataFile, LakeLayout, list_data_files, list_partitions, read_dataset
from shopflow.lake.io import resolve, write_parquet_atomic
from shopflow.transform.stream_plan import FIRST_ID, FIRST_TS, HourKey, hour_keys, hour_rows

#: Columns of an index file (`date` and `hour` are in its path).
KEY_COLUMNS: Final = ("user_id", "session_id", "session_source", "event_ts", "event_id")
_MICROS_PER_MINUTE: Final = 60 * 1_000_000


def keys_root(layout: LakeLayout, table: str) -> str:
    """Where the index of stream table `table` lives (hidden from readers of the lake)."""
    return f"{layout.state_root()}/streaming/{table}-keys"


def keys_file_name(table_files: Iterable[DataFile], bucket_minutes: int) -> str:
    """The index file name for a table partition's data files as listed (`DataFile`s)."""
    listing = sorted(
        f"{f.url.rsplit('/', 1)[-1]}:{f.size}:{int(f.mtime.timestamp() * 1_000_000)}"
        for f in table_files
    )
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:24]
    return f"keys-{bucket_minutes}m-{digest}.parquet"


def _ends(rows: pa.Table, group: Sequence[str], *, last: bool) -> pa.Table:
    """The first (and with `last`, the last) row of each `group` by (`event_ts`, `event_id`)."""
    if rows.num_rows == 0:
        return rows
    order = [(name, "ascending") for name in (*group, "event_ts", "event_id")]
    rows = rows.sort_by(order)
    n = rows.num_rows
    changed = pa.array([False] * (n - 1), pa.bool_())
    for name in group:
        column = rows[name]
        changed = pc.or_(changed, pc.not_equal(column.slice(1), column.slice(0, n - 1)))
    starts = pa.concat_arrays([pa.array([True]), changed.combine_chunks()])
    keep = starts
    if last:
        keep = pc.or_(starts, pa.concat_arrays([changed.combine_chunks(), pa.array([True])]))
    return rows.filter(keep)


def summarise(rows: pa.Table, bucket_minutes: int) -> pa.Table:
    """The index rows of stream table rows (with `date` and `KEY_COLUMNS`): the first and last
    key of each user's derived rows per date and bucket, and of each user's client session per
    date, each key once, with `date`."""
    rows = rows.select(["date", *KEY_COLUMNS])
    derived = rows.filter(pc.equal(rows["session_source"], "derived"))
    micros = pc.cast(derived["event_ts"], pa.int64()).cast(pa.float64())
    bucket = pc.floor(pc.divide(micros, float(bucket_minutes * _MICROS_PER_MINUTE)))
    derived_ends = _ends(
        derived.append_column("_bucket", bucket), ("user_id", "date", "_bucket"), last=True
    ).drop_columns(["_bucket"])
    client = rows.filter(pc.equal(rows["session_source"], "client"))
    client_ends = _ends(client, ("user_id", "session_id", "date"), last=True)
    ends = pa.concat_tables([derived_ends, client_ends])
    # A group whose rows all share one key (a row merged with its own index entry) keeps it once.
    return ends.group_by(["date", *KEY_COLUMNS], use_threads=False).aggregate([])


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """A stream table partition's data files as listed and its index rows (with `date`)."""

    table_files: tuple[DataFile, ...]
    keys: pa.Table


def read_keys(
    layout: LakeLayout,
    table: str,
    dates: Iterable[date],
    bucket_minutes: int,
    schema: pa.Schema,
) -> dict[HourKey, PartitionKeys]:
    """The index of every partition of `table` in `dates`: read where it matches the table file,
    rebuilt from the partition's rows (and written) where it does not. `schema` is the table's
    lake schema (without `date`/`hour`)."""
    wanted = set(dates)
    index_root = keys_root(layout, table)
    stored_keys: dict[str, list[DataFile]] = {}
    for data_file in list_data_files(index_root):
        stored_keys.setdefault(data_file.url.rsplit("/", 1)[0], []).append(data_file)
    found: dict[HourKey, PartitionKeys] = {}
    for partition in list_partitions(layout.curated_root(table)):
        day, hour = partition.date, partition.hour
        if day is None or hour is None or day not in wanted:
            continue
        table_files = tuple(partition.files)
        folder = f"{index_root}/date={day.isoformat()}/hour={hour:02d}"
        name = keys_file_name(table_files, bucket_minutes)
        match = [f for f in stored_keys.get(folder, []) if f.url.rsplit("/", 1)[-1] == name]
        keys = _read_index_file(match[0].url) if match else None
        if keys is None:
            rows = read_dataset(partition.url, schema=schema, columns=list(KEY_COLUMNS))
            keys = summarise(_with_date(rows, day), bucket_minutes).drop_columns(["date"])
            write_keys(keys, layout, table, (day, hour), table_files, bucket_minutes)
        found[(day, hour)] = PartitionKeys(table_files, _with_date(keys, day))
    return found


def _read_index_file(url: str) -> pa.Table | None:
    """An index file's `KEY_COLUMNS`, or None if it cannot be read as one (then it is rebuilt)."""
    try:
        return read_dataset(url).select(list(KEY_COLUMNS))
    except (pa.ArrowException, OSError, KeyError):
        return None


def _with_date(rows: pa.Table, day: date) -> pa.Table:
    return rows.append_column("date", pa.array([day] * rows.num_rows, pa.date32()))


def write_keys(
    keys: pa.Table,
    layout: LakeLayout,
    table: str,
    partition: HourKey,
    table_files: Iterable[DataFile],
    bucket_minutes: int,
) -> str:
    """Write a partition's index (`KEY_COLUMNS`) named for its `table_files`; remove its older
    files."""
    day, hour = partition
    folder = f"{keys_root(layout, table)}/date={day.isoformat()}/hour={hour:02d}"
    url = f"{folder}/{keys_file_name(table_files, bucket_minutes)}"
    write_parquet_atomic(keys.select(list(KEY_COLUMNS)), url)
    fs, path = resolve(folder)
    for entry in fs.ls(path, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "file" and name.endswith(".parquet") and f"{folder}/{name}" != url:
            fs.rm_file(entry["name"])
    return url


def table_files(layout: LakeLayout, table: str, partition: HourKey) -> list[DataFile]:
    """A stream table partition's data files as listed now."""
    return list_data_files(layout.curated_partition(table, *partition))


def out_of_order_users(firsts: pa.Table, keys: pa.Table) -> set[str]:
    """The users of `firsts` (`user_id`, `_first_ts`, `_first_id`: each one's earliest new key)
    whose first new key is at or before a key of theirs in the index `keys`: their stored rows
    from that key on may change, so the index alone does not stand in for them."""
    latest: dict[str, tuple[object, str]] = {}
    ends = _ends(keys.select(["user_id", "event_ts", "event_id"]), ("user_id",), last=True)
    for user, ts, event_id in zip(
        ends["user_id"].to_pylist(),
        ends["event_ts"].to_pylist(),
        ends["event_id"].to_pylist(),
        strict=True,
    ):
        latest[user] = (ts, event_id)  # sorted: a user's last row is their latest key
    late = set()
    for user, ts, event_id in zip(
        firsts["user_id"].to_pylist(),
        firsts[FIRST_TS].to_pylist(),
        firsts[FIRST_ID].to_pylist(),
        strict=True,
    ):
        if user in latest and (ts, event_id) <= latest[user]:  # type: ignore[operator]
            late.add(user)
    return late


def update_keys(
    index: dict[HourKey, PartitionKeys],
    changed: pa.Table,
    layout: LakeLayout,
    table: str,
    bucket_minutes: int,
) -> list[str]:
    """After a micro-batch replaced `changed`'s partitions of `table`: write each one's index,
    its keys as read (`index`) merged with `changed`'s rows there. Min and max compose, and a
    changed row keeps its key (an event's copies share their time), so that is the index of the
    partition as written. Return the files written."""
    written = []
    for key in hour_keys(changed):
        parts = [hour_rows(changed, key).select(["date", *KEY_COLUMNS])]
        if key in index:
            parts.append(index[key].keys.select(["date", *KEY_COLUMNS]))
        merged = pa.concat_tables(parts, promote_options="permissive")
        keys = summarise(merged, bucket_minutes).drop_columns(["date"])
        written.append(
            write_keys(keys, layout, table, key, table_files(layout, table, key), bucket_minutes)
        )
    return written
