"""Atomic writes and partition replacement in the lake, through fsspec (listing and reading:
`shopflow.lake.reading`).

Guarantees (a "reader" is a listing here, pyarrow.dataset, Spark or DuckDB):

* Local file system: a file is written to a hidden temp file (`.<name>.<random>.tmp`) in the
  target folder, flushed and fsynced, then renamed over the target (`os.replace`), and the folder
  is fsynced. A reader sees the old complete file or the new one; a crash leaves at most a hidden
  temp file that readers skip. Create-only uses `os.link`, which fails if the target exists.
* GCS (gcsfs): an object becomes visible only when its upload completes, so a reader never sees a
  partial object. Create-only sends `ifGenerationMatch=0` (gcsfs' `mode="create"`); a lost race
  raises `AlreadyExistsError`. A write given `if_generation_match` replaces the object only if it
  is still at that generation (google-cloud-storage: gcsfs offers only the create-only form); a
  lost race raises `WriteConflictError` and nothing of the loser is written.
* A partition is replaced as one data file (`part-00000.parquet`) that is overwritten atomically,
  which is all-or-nothing on both back ends; files of other names left in the partition by an older
  writer are removed after the swap. On GCS the overwrite is conditional on the generation the
  file had when the replacement began (or the one the caller read), so a second writer racing it
  (a lock lease lost, a writer that skipped the lock) is refused instead of silently overwritten.
  Locally, writers are serialised by the lake's writer lock alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from shopflow.lake.errors import AlreadyExistsError, LakeError
from shopflow.lake.gcs import gcs_blob, is_gcs, range_read_gcs_class, upload_if_generation
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
        from gcsfs.core import GCSFileSystem  # seconds to import: only when the lake is on GCS

        if os.environ.get("STORAGE_EMULATOR_HOST") and "token" not in options:
            options["token"] = "anon"
        fs = GCSFileSystem(**options)
        return fs, fs._strip_protocol(url)
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


def engine_filesystem(url: str, storage_options: StorageOptions | None = None) -> Any:
    """The file system of `url` for a query engine reading by byte range (DuckDB).

    It keeps no listings cache, so partitions committed by other processes are seen. On GCS its
    files fetch only the ranges asked for: gcsfs' default adaptive cache starts a background
    prefetch task per file, which the engine's range reads do not need and which is destroyed,
    still pending, at every close (an asyncio warning on stderr per file).
    """
    options = {**(storage_options or {}), "use_listings_cache": False, "skip_instance_cache": True}
    fs, _ = resolve(url, options)
    if is_gcs(fs):
        fs = range_read_gcs_class()(**fs.storage_options)
    return fs


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


def object_generation(url: str, storage_options: StorageOptions | None = None) -> int | None:
    """The GCS generation of the object at `url` (0: no such object); None off GCS."""
    fs, path = resolve(url, storage_options)
    if not is_gcs(fs):
        return None
    # Imported only for GCS: the Google clients need protobuf and grpc, which a Spark runtime's
    # Python may lack (the Dataproc artefact leaves them to it) when the lake is not on GCS.
    from google.api_core.exceptions import NotFound

    blob = gcs_blob(fs, path)
    try:
        blob.reload()
    except NotFound:
        return 0
    return int(blob.generation)


def _commit_remote(
    fs: Any,
    path: str,
    write: Callable[[IO[bytes]], None],
    create_only: bool,
    if_generation_match: int | None,
) -> None:
    # Spool to a local file first: an upload interrupted half way must never be finalised, and
    # gcsfs uploads a finished local file in one (or one resumable) request.
    with tempfile.NamedTemporaryFile(prefix=".shopflow-upload-", suffix=".tmp") as spool:
        write(spool)
        spool.flush()
        if if_generation_match is not None:
            upload_if_generation(fs, path, spool.name, if_generation_match)
        else:
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
    if_generation_match: int | None = None,
) -> None:
    fs, path = resolve(url, storage_options)
    if if_generation_match is not None and (create_only or not is_gcs(fs)):
        raise LakeError(
            f"writing {url}: a generation precondition needs GCS and excludes create_only"
        )
    try:
        if is_local(fs):
            _commit_local(Path(path), write, create_only)
        else:
            _commit_remote(fs, path, write, create_only, if_generation_match)
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
    if_generation_match: int | None = None,
) -> None:
    """Write `data` to `url` so that readers see the old content or all of `data`, never part.

    With `create_only`, raise `AlreadyExistsError` instead of replacing an existing object. With
    `if_generation_match` (GCS only; 0: must not exist), raise `WriteConflictError` unless the
    object is still at that generation.
    """

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    _commit(
        url,
        write,
        create_only=create_only,
        storage_options=storage_options,
        if_generation_match=if_generation_match,
    )


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
    if_generation_match: int | None = None,
) -> None:
    """Write `table` as one Parquet file at `url`, atomically (see `write_bytes_atomic`)."""

    def write(handle: IO[bytes]) -> None:
        pq.write_table(table, handle, compression=compression, row_group_size=row_group_size)

    _commit(
        url,
        write,
        create_only=create_only,
        storage_options=storage_options,
        if_generation_match=if_generation_match,
    )


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
    if_generation_match: int | None = None,
) -> str:
    """Replace a whole partition with `table`; return the URL of its one data file.

    Columns named like the partition keys in `partition_url` (e.g. `date`, `hour`) must hold only
    this partition's value and are dropped, as Spark does: the path carries them. A reader sees the
    old complete partition or the new one (see the module docstring).

    On GCS the data file is replaced only if it is still at `if_generation_match` (the
    `partition_generation` a caller read; default: its generation when this call begins), else
    `WriteConflictError` and the partition keeps the other writer's commit.
    """
    target = f"{partition_url.rstrip('/')}/{PARTITION_FILE}"
    if if_generation_match is None:
        if_generation_match = object_generation(target, storage_options)
    for key, value in partition_values(partition_url).items():
        if key in table.column_names:
            _check_partition_column(table, key, value)
            table = table.drop_columns([key])
    write_parquet_atomic(
        table,
        target,
        compression=compression,
        storage_options=storage_options,
        if_generation_match=if_generation_match,
    )
    fs, path = resolve(partition_url, storage_options)
    fs.invalidate_cache(path)
    for entry in fs.ls(path, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "file" and name != PARTITION_FILE and not is_hidden(name):
            fs.rm_file(entry["name"])
    return target


def delete_partition(partition_url: str, *, storage_options: StorageOptions | None = None) -> bool:
    """Remove a partition's data files (and the folder, once empty); True if there was one.

    A reader sees the partition whole or not at all: it holds one data file (`replace_partition`).
    """
    fs, path = resolve(partition_url, storage_options)
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return False
    removed = False
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "file" and not is_hidden(name):
            fs.rm_file(entry["name"])
            removed = True
    if is_local(fs):
        with contextlib.suppress(OSError):  # not empty: hidden files of a writer in flight
            Path(path).rmdir()
    fs.invalidate_cache(path)
    return removed


def partition_generation(
    partition_url: str, storage_options: StorageOptions | None = None
) -> int | None:
    """The GCS generation of a partition's data file (0: none yet; None off GCS), to pass to
    `replace_partition` by a writer that read the partition before replacing it."""
    return object_generation(f"{partition_url.rstrip('/')}/{PARTITION_FILE}", storage_options)


# ---------------------------------------------------------------------------------------------
# Listing


def as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    raise LakeError(f"unexpected modification time {value!r}")


# ---------------------------------------------------------------------------------------------
# Reading


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
            if as_utc(path.stat().st_mtime) < older_than:
                path.unlink()
                removed.append(str(path))
    return removed
