"""Atomic writes, partition replacement, listing and reading of the lake, through fsspec.

Guarantees (a "reader" is a listing here, pyarrow.dataset, Spark or DuckDB):

* Local file system: a file is written to a hidden temp file (`.<name>.<random>.tmp`) in the
  target folder, flushed and fsynced, then renamed over the target (`os.replace`), and the folder
  is fsynced. A reader sees the old complete file or the new one; a crash leaves at most a hidden
  temp file that readers skip. Create-only uses `os.link`, which fails if the target exists.
* GCS (gcsfs): an object becomes visible only when its upload completes, so a reader never sees a
  partial object. Create-only sends `ifGenerationMatch=0` (gcsfs' `mode="create"`); a lost race
  raises `AlreadyExistsError`.
* A partition is replaced as one data file (`part-00000.parquet`) that is overwritten atomically,
  which is all-or-nothing on both back ends; files of other names left in the partition by an older
  writer are removed after the swap.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from shopflow.lake.errors import AlreadyExistsError, LakeError
from shopflow.lake.layout import PARTITION_FILE

StorageOptions = Mapping[str, Any]

#: Partition keys and the type a reader gives them; any other key is read as a string.
PARTITION_TYPES: dict[str, pa.DataType] = {
    "date": pa.date32(),
    "cursor_date": pa.date32(),
    "hour": pa.int32(),
}


def resolve(url: str, storage_options: StorageOptions | None = None) -> tuple[Any, str]:
    """The fsspec file system of `url` and the path inside it.

    `gs://` uses gcsfs' plain `GCSFileSystem`: the experimental subclass fsspec registers by default
    probes every bucket over gRPC for zonal storage, which the lake does not use and which stalls
    for a minute a call against an emulator. With `STORAGE_EMULATOR_HOST` set and no token given,
    the emulator is used anonymously.
    """
    options = dict(storage_options or {})
    protocol, _ = fsspec.core.split_protocol(url)
    if protocol in ("gs", "gcs"):
        from gcsfs.core import GCSFileSystem

        if os.environ.get("STORAGE_EMULATOR_HOST") and "token" not in options:
            options["token"] = "anon"
        fs = GCSFileSystem(**options)
        return fs, fs._strip_protocol(url)
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


def is_local(fs: Any) -> bool:
    """Whether `fs` is the local file system (where rename is atomic)."""
    return isinstance(fs, LocalFileSystem)


def is_hidden(name: str) -> bool:
    """Names readers skip (Spark, pyarrow.dataset): temp files, markers, `_state`."""
    return name.startswith(("_", "."))


# ---------------------------------------------------------------------------------------------
# Atomic writes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit_local(path: Path, write: Callable[[IO[bytes]], None], create_only: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file private; lake files are meant to be shared like any other output.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # The modification time is the commit time: listings for late data compare against it.
        os.utime(tmp)
        if create_only:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise AlreadyExistsError(f"{path} already exists") from None
            tmp.unlink()
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _commit_remote(
    fs: Any, path: str, write: Callable[[IO[bytes]], None], create_only: bool
) -> None:
    # Spool to a local file first: an upload interrupted half way must never be finalised, and
    # gcsfs uploads a finished local file in one (or one resumable) request.
    with tempfile.NamedTemporaryFile(prefix=".shopflow-upload-", suffix=".tmp") as spool:
        write(spool)
        spool.flush()
        try:
            fs.put_file(spool.name, path, mode="create" if create_only else "overwrite")
        except FileExistsError:
            raise AlreadyExistsError(f"{fs.unstrip_protocol(path)} already exists") from None
    fs.invalidate_cache(fs._parent(path))


def _commit(
    url: str,
    write: Callable[[IO[bytes]], None],
    *,
    create_only: bool,
    storage_options: StorageOptions | None,
) -> None:
    fs, path = resolve(url, storage_options)
    try:
        if is_local(fs):
            _commit_local(Path(path), write, create_only)
        else:
            _commit_remote(fs, path, write, create_only)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LakeError(
                f"no space left writing {url}: nothing of it was committed; free space on the "
                "device (or quota) and run again"
            ) from None
        raise


def write_bytes_atomic(
    data: bytes,
    url: str,
    *,
    create_only: bool = False,
    storage_options: StorageOptions | None = None,
) -> None:
    """Write `data` to `url` so that readers see the old content or all of `data`, never part.

    With `create_only`, raise `AlreadyExistsError` instead of replacing an existing object.
    """

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    _commit(url, write, create_only=create_only, storage_options=storage_options)


def write_json_atomic(
    value: Any,
    url: str,
    *,
    create_only: bool = False,
    storage_options: StorageOptions | None = None,
) -> None:
    """Write `value` as UTF-8 JSON to `url`, atomically (see `write_bytes_atomic`)."""
    data = json.dumps(value, sort_keys=True, indent=1, default=str).encode()
    write_bytes_atomic(data, url, create_only=create_only, storage_options=storage_options)


def write_parquet_atomic(
    table: pa.Table,
    url: str,
    *,
    create_only: bool = False,
    compression: str = "zstd",
    row_group_size: int | None = None,
    storage_options: StorageOptions | None = None,
) -> None:
    """Write `table` as one Parquet file at `url`, atomically (see `write_bytes_atomic`)."""

    def write(handle: IO[bytes]) -> None:
        pq.write_table(table, handle, compression=compression, row_group_size=row_group_size)

    _commit(url, write, create_only=create_only, storage_options=storage_options)


# ---------------------------------------------------------------------------------------------
# Partitions


def partition_values(url: str) -> dict[str, str]:
    """The Hive `key=value` segments of a path, in order."""
    values: dict[str, str] = {}
    for segment in url.rstrip("/").split("/"):
        key, sep, value = segment.partition("=")
        if sep and key and not is_hidden(key):
            values[key] = value
    return values


def _check_partition_column(table: pa.Table, key: str, value: str) -> None:
    column = table.column(key)
    if column.null_count:
        raise LakeError(f"column {key} has nulls; it must equal the partition value {value}")
    for item in column.unique().to_pylist():
        text = item.isoformat() if isinstance(item, date) else str(item)
        if key == "hour" and isinstance(item, int):
            text = f"{item:02d}"
        if text != value:
            raise LakeError(f"column {key} holds {text}, not the partition value {value}")


def replace_partition(
    table: pa.Table,
    partition_url: str,
    *,
    compression: str = "zstd",
    storage_options: StorageOptions | None = None,
) -> str:
    """Replace a whole partition with `table`; return the URL of its one data file.

    Columns named like the partition keys in `partition_url` (e.g. `date`, `hour`) must hold only
    this partition's value and are dropped, as Spark does: the path carries them. A reader sees the
    old complete partition or the new one (see the module docstring).
    """
    for key, value in partition_values(partition_url).items():
        if key in table.column_names:
            _check_partition_column(table, key, value)
            table = table.drop_columns([key])
    target = f"{partition_url.rstrip('/')}/{PARTITION_FILE}"
    write_parquet_atomic(table, target, compression=compression, storage_options=storage_options)
    fs, path = resolve(partition_url, storage_options)
    fs.invalidate_cache(path)
    for entry in fs.ls(path, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "file" and name != PARTITION_FILE and not is_hidden(name):
            fs.rm_file(entry["name"])
    return target


# ---------------------------------------------------------------------------------------------
# Listing


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


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    raise LakeError(f"unexpected modification time {value!r}")


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
        files.append(DataFile(_url_of(fs, path), int(info["size"]), _as_utc(mtime)))
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


# ---------------------------------------------------------------------------------------------
# Reading


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


def _read_file(fs: Any, path: str, columns: list[str] | None) -> pa.Table:
    if is_local(fs):
        # One open handle: the footer and the pages come from the same inode even if the file is
        # replaced meanwhile (read_table on a path may open the file more than once).
        with pa.OSFile(path) as handle:
            return pq.read_table(handle, columns=columns)
    # One GET returns one object generation, whole: a concurrent overwrite cannot mix two of them
    # the way ranged reads through a file handle could.
    return pq.read_table(pa.BufferReader(fs.cat_file(path)), columns=columns)


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
    (e.g. `RAW_EVENT_SCHEMA`) fixes the file columns and gives an empty result its columns. Each
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
        if schema is not None:
            table = table.cast(pa.schema([schema.field(n) for n in table.column_names]))
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


def remove_stale_temp_files(
    prefix_url: str,
    *,
    older_than: datetime,
    storage_options: StorageOptions | None = None,
) -> list[str]:
    """Delete temp files (`.*.tmp`) that crashed local writers left, last modified before a time."""
    fs, root = resolve(prefix_url, storage_options)
    if not is_local(fs):
        return []  # An unfinished GCS upload never becomes an object.
    removed = []
    for path in Path(root).rglob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if _as_utc(path.stat().st_mtime) < older_than:
                path.unlink()
                removed.append(str(path))
    return removed
