"""Listing and reading the lake's committed files: data files, Hive partitions, datasets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shopflow.lake.errors import LakeError
from shopflow.lake.io import (
    PARTITION_TYPES,
    StorageOptions,
    as_utc,
    is_hidden,
    is_local,
    partition_values,
    resolve,
)


@dataclass(frozen=True, slots=True)
class DataFile:
    """A committed data file: its URL, size in bytes and modification (GCS: `updated`) time."""

    url: str
    size: int
    mtime: datetime


@dataclass(frozen=True, slots=True)
class Partition:
    """A partition folder that holds data files, with its Hive values and newest file time."""

    url: str
    values: dict[str, str]
    latest_mtime: datetime
    files: tuple[DataFile, ...]

    @property
    def date(self) -> date | None:
        """The `date` (or `cursor_date`) value, if the partition has one."""
        value = self.values.get("date", self.values.get("cursor_date"))
        return date.fromisoformat(value) if value is not None else None

    @property
    def hour(self) -> int | None:
        """The `hour` value, if the partition has one."""
        value = self.values.get("hour")
        return int(value) if value is not None else None


def _url_of(fs: Any, path: str) -> str:
    return path if is_local(fs) else str(fs.unstrip_protocol(path))


def list_data_files(
    prefix_url: str,
    *,
    suffix: str = ".parquet",
    storage_options: StorageOptions | None = None,
) -> list[DataFile]:
    """Every committed data file under `prefix_url`, sorted by URL.

    Files or folders whose name starts with `_` or `.` below the prefix (temp files, markers) are
    skipped, as Spark and pyarrow.dataset skip them. A missing prefix lists as empty.
    """
    fs, root = resolve(prefix_url, storage_options)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    try:
        found: dict[str, dict[str, Any]] = fs.find(root, detail=True, withdirs=False)
    except FileNotFoundError:
        return []
    files = []
    for path, info in found.items():
        relative = path[len(root) :].strip("/").split("/")
        if info.get("type") != "file" or not path.endswith(suffix):
            continue
        if any(is_hidden(part) for part in relative):
            continue
        mtime = info.get("mtime", info.get("updated"))
        files.append(DataFile(_url_of(fs, path), int(info["size"]), as_utc(mtime)))
    return sorted(files, key=lambda f: f.url)


def list_partitions(
    prefix_url: str,
    *,
    since: datetime | None = None,
    suffix: str = ".parquet",
    storage_options: StorageOptions | None = None,
) -> list[Partition]:
    """The partition folders under `prefix_url` holding data files, sorted by URL.

    With `since`, only those that received a file modified strictly after it: the hourly ETL's
    late-data scan. Clocks and in-flight writes make this approximate at the edge, so callers
    should pass their previous high-water mark minus a safety margin and rely on idempotent
    reprocessing.
    """
    groups: dict[str, list[DataFile]] = {}
    for data_file in list_data_files(prefix_url, suffix=suffix, storage_options=storage_options):
        groups.setdefault(data_file.url.rsplit("/", 1)[0], []).append(data_file)
    partitions = []
    for url, files in sorted(groups.items()):
        latest = max(f.mtime for f in files)
        if since is not None and latest <= since:
            continue
        partitions.append(Partition(url, partition_values(url), latest, tuple(files)))
    return partitions


def _base_of(urls: Sequence[str]) -> str:
    # The dataset root is everything before the first key=value segment.
    bases = set()
    for url in urls:
        segments = url.rstrip("/").split("/")
        cut = next((i for i, s in enumerate(segments) if "=" in s), len(segments))
        bases.add("/".join(segments[:cut]))
    if len(bases) != 1:
        raise LakeError(f"partitions from more than one dataset: {sorted(bases)}")
    return bases.pop()


def typed_partition_value(key: str, value: str) -> Any:
    """A partition folder value typed as `PARTITION_TYPES` says (ValueError if it is not)."""
    kind = PARTITION_TYPES.get(key, pa.string())
    if kind == pa.date32():
        return date.fromisoformat(value)
    if pa.types.is_integer(kind):
        return int(value)
    return value


def _read_columns(source: Any, columns: list[str] | None) -> pa.Table:
    """The file's columns among `columns` (all if None); a column the file lacks is left out."""
    parquet = pq.ParquetFile(source)
    if columns is not None:
        present = set(parquet.schema_arrow.names)
        columns = [name for name in columns if name in present]
    return parquet.read(columns=columns)


def _read_file(fs: Any, path: str, columns: list[str] | None) -> pa.Table:
    if is_local(fs):
        # One open handle: the footer and the pages come from the same inode even if the file is
        # replaced meanwhile (read_table on a path may open the file more than once).
        with pa.OSFile(path) as handle:
            return _read_columns(handle, columns)
    # One GET returns one object generation, whole: a concurrent overwrite cannot mix two of them
    # the way ranged reads through a file handle could.
    return _read_columns(pa.BufferReader(fs.cat_file(path)), columns)


def _conform(table: pa.Table, schema: pa.Schema, names: list[str], url: str) -> pa.Table:
    """`table` cast to `schema`'s fields `names`, in that order; a nullable column the file was
    written without (an older schema) is all null."""
    columns = []
    for name in names:
        field = schema.field(name)
        if name in table.column_names:
            columns.append(table.column(name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise LakeError(f"{url} has no column {name}, which {schema.names} requires")
    return pa.Table.from_arrays(columns, schema=pa.schema([schema.field(n) for n in names]))


def read_dataset(
    urls: str | Sequence[str],
    *,
    schema: pa.Schema | None = None,
    columns: Sequence[str] | None = None,
    storage_options: StorageOptions | None = None,
    attempts: int = 3,
) -> pa.Table:
    """Read a dataset, or a set of its partitions, into one table with the Hive columns added.

    `urls` is a dataset root (e.g. `raw/events`) or partition folders of one dataset. Partition
    columns come last, typed per `PARTITION_TYPES` (`date` as date32, `hour` as int32). `schema`
    (e.g. `RAW_EVENT_SCHEMA`) fixes the file columns and gives an empty result its columns; a file
    written before a nullable column was added reads with it null. Each
    file is read whole as one version; a file replaced or removed between listing and reading makes
    the read start over, up to `attempts` times.
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("no dataset or partition to read")
    base = _base_of(url_list)
    for attempt in range(attempts):
        try:
            return _read_once(url_list, base, schema, columns, storage_options)
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _read_once(
    url_list: list[str],
    base: str,
    schema: pa.Schema | None,
    columns: Sequence[str] | None,
    storage_options: StorageOptions | None,
) -> pa.Table:
    files = [f for url in url_list for f in list_data_files(url, storage_options=storage_options)]
    fs, _ = resolve(base, storage_options)
    partitions = [partition_values(f.url[len(base) :]) for f in files]
    keys = list(dict.fromkeys(key for values in partitions for key in values))
    wanted = set(columns) if columns is not None else None
    file_columns = None
    if schema is not None:
        file_columns = [n for n in schema.names if wanted is None or n in wanted]
    elif wanted is not None:
        file_columns = [n for n in columns or () if n not in keys]
    tables = []
    for data_file, values in zip(files, partitions, strict=True):
        table = _read_file(fs, resolve(data_file.url, storage_options)[1], file_columns)
        if schema is not None and file_columns is not None:
            table = _conform(table, schema, file_columns, data_file.url)
        for key in keys:
            if wanted is None or key in wanted:
                kind = PARTITION_TYPES.get(key, pa.string())
                value = values.get(key)
                scalar = pa.scalar(
                    typed_partition_value(key, value) if value is not None else None, kind
                )
                table = table.append_column(pa.field(key, kind), pa.repeat(scalar, table.num_rows))
        tables.append(table)
    if not tables:
        empty = schema if schema is not None else pa.schema([])
        table = empty.empty_table()
    else:
        table = pa.concat_tables(tables, promote_options="default")
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table
