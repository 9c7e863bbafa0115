"""Committing files an engine wrote itself (Spark's executors) into the lake's partitions.

A Spark job writes a run's outputs with its own partitioned writer under the run's staging prefix
(`_staging/<run>/<table>/date=D[/hour=H]/part-*.parquet`, `LakeLayout.staging_url`); nothing
there is visible to a reader of `curated/`. The driver then commits each staged file into its
partition as the partition's one data file, with the guarantees of `replace_partition`:

* Local file system: the staged file is fsynced, renamed over `part-00000.parquet` (`os.replace`,
  atomic; staging lives in the same lake, hence the same file system) and the folder fsynced.
* GCS: a server-side copy (rewrite) onto `part-00000.parquet`, conditional on the generation the
  partition file had when the commit began (a racing writer is refused with `WriteConflictError`,
  as in `replace_partition`), then the staged object is deleted. The generation is also checked
  just before the rewrite: fake-gcs-server, which the tests run against, does not enforce
  preconditions on rewrites, so only that check is tested here; real GCS enforces both.

Either way a reader sees the old complete partition or the new one; a crash leaves staged files,
which the next run under the writer lock removes (`remove_staging`).
"""

from __future__ import annotations

import contextlib
import os
from datetime import date
from pathlib import Path
from typing import Any

from shopflow.lake.errors import LakeError, WriteConflictError
from shopflow.lake.gcs import gcs_blob
from shopflow.lake.io import (
    StorageOptions,
    is_hidden,
    is_local,
    object_generation,
    partition_values,
    resolve,
)
from shopflow.lake.layout import PARTITION_FILE

#: A staged partition: its `date` and, for hourly tables, its `hour` (None: daily; a snapshot
#: staged without partitions has the key (None, None)).
StagedKey = tuple[date | None, int | None]


def staged_files(
    staging_url: str, storage_options: StorageOptions | None = None
) -> dict[StagedKey, str]:
    """The data file of each partition an engine wrote under `staging_url` (none: {}).

    Raises `LakeError` if a partition holds more than one data file: a partition is committed as
    one file, so the writer must put each partition's rows in one task.
    """
    fs, root = resolve(staging_url, storage_options)
    fs.invalidate_cache(root)
    if not fs.exists(root):
        return {}
    found: dict[StagedKey, str] = {}
    for path in sorted(fs.find(root)):
        relative = path[len(root.rstrip("/")) + 1 :]
        if not path.endswith(".parquet") or any(is_hidden(p) for p in relative.split("/")):
            continue
        values = partition_values(relative.rsplit("/", 1)[0] if "/" in relative else "")
        key: StagedKey = (
            date.fromisoformat(values["date"]) if "date" in values else None,
            int(values["hour"]) if "hour" in values else None,
        )
        if key in found:
            raise LakeError(
                f"{staging_url} holds more than one data file for partition {key}: the engine "
                "must write each partition from one task"
            )
        found[key] = fs.unstrip_protocol(path) if not is_local(fs) else path
    return found


def staged_row_count(staged_url: str, storage_options: StorageOptions | None = None) -> int:
    """The rows of a staged Parquet file, from its footer."""
    import pyarrow.parquet as pq

    fs, path = resolve(staged_url, storage_options)
    with fs.open(path, "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def commit_staged_file(
    staged_url: str,
    partition_url: str,
    *,
    storage_options: StorageOptions | None = None,
    if_generation_match: int | None = None,
) -> str:
    """Make a staged Parquet file the one data file of a partition; return its URL.

    The staged file must hold only the partition's rows, without its partition columns (Spark's
    partitioned writer leaves them out). On GCS the commit is refused with `WriteConflictError` if
    the partition file is no longer at `if_generation_match` (default: its generation now).
    """
    target = f"{partition_url.rstrip('/')}/{PARTITION_FILE}"
    fs, target_path = resolve(target, storage_options)
    _, staged_path = resolve(staged_url, storage_options)
    if is_local(fs):
        _commit_local(Path(staged_path), Path(target_path))
    else:
        if if_generation_match is None:
            if_generation_match = object_generation(target, storage_options)
        _copy_if_generation(fs, staged_path, target_path, if_generation_match or 0)
        fs.rm_file(staged_path)
    _remove_other_files(
        fs, str(Path(target_path).parent) if is_local(fs) else fs._parent(target_path)
    )
    return target


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit_local(staged: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Spark's local writer does not fsync: make the data durable before it becomes visible.
    _fsync(staged)
    # The modification time is the commit time, as for every other lake write.
    os.utime(staged)
    os.replace(staged, target)
    _fsync(target.parent, os.O_RDONLY | os.O_DIRECTORY)


def _copy_if_generation(fs: Any, staged_path: str, target_path: str, generation: int) -> None:
    from google.api_core.exceptions import NotFound, PreconditionFailed

    source = gcs_blob(fs, staged_path)
    destination = gcs_blob(fs, target_path)
    # Checked first as well: fake-gcs-server ignores preconditions on rewrites (real GCS enforces
    # them), so the emulator tests see a race that happened before this commit began.
    try:
        destination.reload()
        current = int(destination.generation)
    except NotFound:
        current = 0
    if current != generation:
        raise _conflict(fs, target_path, generation)
    try:
        token, _, _ = destination.rewrite(source, if_generation_match=generation)
        while token is not None:
            token, _, _ = destination.rewrite(source, token=token, if_generation_match=generation)
    except PreconditionFailed:
        # A retried rewrite whose first answer was lost meets its own commit: same bytes, no loss.
        with contextlib.suppress(NotFound):
            source.reload()
            destination.reload()
            if destination.md5_hash == source.md5_hash:
                return
        raise _conflict(fs, target_path, generation) from None
    fs.invalidate_cache(fs._parent(target_path))


def _conflict(fs: Any, target_path: str, generation: int) -> WriteConflictError:
    return WriteConflictError(
        f"{fs.unstrip_protocol(target_path)} was changed by another writer (it is no longer at "
        f"generation {generation}): this commit was refused and wrote nothing; is a second "
        "writer running without the lake's writer lock? Run again once it is done"
    )


def _remove_other_files(fs: Any, folder: str) -> None:
    fs.invalidate_cache(folder)
    for entry in fs.ls(folder, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] == "file" and name != PARTITION_FILE and not is_hidden(name):
            fs.rm_file(entry["name"])


def remove_staging(staging_url: str, storage_options: StorageOptions | None = None) -> None:
    """Delete a staging prefix and everything under it (no error if there is none)."""
    fs, root = resolve(staging_url, storage_options)
    fs.invalidate_cache(root)
    with contextlib.suppress(FileNotFoundError):
        if fs.exists(root):
            fs.rm(root, recursive=True)
