"""One writer at a time on a lake and its warehouse: the ETL and the warehouse load hold this lock.

A second run refuses at once with one line naming the holder (command, pid, host, start time),
whether it comes from the command line or from Airflow.

* Local lake: an exclusive `flock` on `_state/locks/<name>.lock`, held open for the run. The kernel
  drops it when the holder exits, however it exits (kill -9 included), so a dead holder's lock is
  free at once: no lease to wait out, no stale file to clean. The file's content names the holder.
* GCS lake: an object `_state/locks/<name>.json` created only if absent (`ifGenerationMatch=0`),
  holding its holder and an expiry. A background thread renews the lease (a conditional rewrite on
  the generation it wrote) every third of `lease`; a lock whose expiry has passed belongs to a dead
  holder and is deleted (conditionally on its generation) by the next taker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from shopflow.lake.errors import LakeError
from shopflow.lake.gcs import gcs_blob
from shopflow.lake.io import StorageOptions, is_local, resolve
from shopflow.lake.layout import LakeLayout

#: The lock the ETL and the load share.
WRITER_LOCK: Final = "writer"
DEFAULT_LEASE: Final = timedelta(minutes=10)


class LakeBusyError(LakeError):
    """Another run holds the lake's writer lock."""


def _holder(command: str, lease: timedelta | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    holder: dict[str, Any] = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": now.isoformat(timespec="seconds"),
    }
    if lease is not None:
        holder["expires_at"] = (now + lease).isoformat()
    return holder


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another run (holder not recorded yet)"
    return (
        f"`{holder.get('command', '?')}` (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
    )


def _busy(root: str, holder: dict[str, Any] | None) -> LakeBusyError:
    return LakeBusyError(
        f"the lake at {root} is busy: {_describe(holder)} holds its writer lock; "
        "run again when it has finished"
    )


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@contextlib.contextmanager
def writer_lock(
    lake_root: str,
    command: str,
    *,
    name: str = WRITER_LOCK,
    lease: timedelta = DEFAULT_LEASE,
    storage_options: StorageOptions | None = None,
) -> Iterator[dict[str, Any]]:
    """Hold the lake's writer lock for the block, or raise LakeBusyError naming its holder."""
    url = f"{LakeLayout(lake_root).state_root()}/locks/{name}"
    fs, path = resolve(url, storage_options)
    if is_local(fs):
        with _local_lock(Path(f"{path}.lock"), lake_root, command) as holder:
            yield holder
    else:
        with _gcs_lock(fs, f"{path}.json", lake_root, command, lease) as holder:
            yield holder


@contextlib.contextmanager
def _local_lock(path: Path, root: str, command: str) -> Iterator[dict[str, Any]]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LakeError(
            f"cannot open the lake's writer lock {path}: {exc.strerror or exc}; "
            "it must be a writable file"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(root, _parse(path.read_bytes())) from None
        holder = _holder(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing drops the flock


@contextlib.contextmanager
def _gcs_lock(
    fs: Any, path: str, root: str, command: str, lease: timedelta
) -> Iterator[dict[str, Any]]:
    from google.api_core.exceptions import NotFound, PreconditionFailed

    blob = gcs_blob(fs, path)
    holder = _holder(command, lease)
    for _ in range(3):
        try:
            blob.upload_from_string(
                json.dumps(holder), content_type="application/json", if_generation_match=0
            )
            break
        except PreconditionFailed:
            try:
                blob.reload()
                current = _parse(blob.download_as_bytes(if_generation_match=blob.generation))
            except (NotFound, PreconditionFailed):
                continue  # released or renewed meanwhile: look again
            expires = (current or {}).get("expires_at")
            if expires and datetime.fromisoformat(expires) > datetime.now(UTC):
                raise _busy(root, current) from None
            # The holder stopped renewing: it is dead. Take the lock over from exactly that state.
            with contextlib.suppress(NotFound, PreconditionFailed):
                blob.delete(if_generation_match=blob.generation)
    else:
        raise _busy(root, None)
    generation = [int(blob.generation)]
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease.total_seconds() / 3):
            renewed = {**holder, **_holder(command, lease), "since": holder["since"]}
            try:
                blob.upload_from_string(
                    json.dumps(renewed),
                    content_type="application/json",
                    if_generation_match=generation[0],
                )
                generation[0] = int(blob.generation)
            except PreconditionFailed:
                return  # taken over: the lease had run out

    renewer = threading.Thread(target=renew, name="shopflow-lock-lease", daemon=True)
    renewer.start()
    try:
        yield holder
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(NotFound, PreconditionFailed):
            blob.delete(if_generation_match=generation[0])
