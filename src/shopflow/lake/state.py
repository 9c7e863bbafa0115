"""Watermarks and cursors: small JSON records under `_state/`, written atomically.

Each record is stored as `{"version": n, "written_at": ISO-8601, "value": {...}}`. A store
remembers, per name, which version (GCS: object generation) it last read or wrote, and `put` only
succeeds if the record is still at that version: a concurrent writer makes it raise
`StateConflictError` instead of being overwritten silently. Call `get` before `put` to get this
compare-and-swap; a `put` of a name the store has never seen reads the current version first.

Locally the check and the write happen under an exclusive `flock` on a hidden lock file next to the
record (processes on one machine). On GCS the write is conditional on the object generation
(`ifGenerationMatch`; 0 = must not exist yet), through `shopflow.lake.gcs`.

Advance a watermark only after the data it covers is written.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shopflow.lake.errors import LakeError, StateConflictError
from shopflow.lake.gcs import gcs_blob
from shopflow.lake.io import StorageOptions, is_local, resolve, write_bytes_atomic
from shopflow.lake.layout import LakeLayout
from shopflow.settings import Settings

_MISSING = 0


def _encode(version: int, value: dict[str, Any]) -> bytes:
    envelope = {"version": version, "written_at": datetime.now(UTC).isoformat(), "value": value}
    return json.dumps(envelope, sort_keys=True, indent=1).encode()


def _decode(url: str, data: bytes) -> tuple[int, dict[str, Any]]:
    try:
        envelope = json.loads(data)
        version, value = envelope["version"], envelope["value"]
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(f"state record {url} is not readable: {exc}") from None
    if not isinstance(version, int) or not isinstance(value, dict):
        raise LakeError(f"state record {url} is malformed")
    return version, value


class StateStore:
    """Named JSON state records of one lake (`_state/<name>.json`)."""

    def __init__(
        self, lake: Settings | str, *, storage_options: StorageOptions | None = None
    ) -> None:
        root = lake.lake_url if isinstance(lake, Settings) else lake
        self._layout = LakeLayout(root)
        self._storage_options = storage_options
        self._fs, _ = resolve(self._layout.state_root(), storage_options)
        # name -> (guard, version): guard is the local version or the GCS object generation.
        self._seen: dict[str, tuple[int, int]] = {}

    def get(self, name: str) -> dict[str, Any] | None:
        """The record's value, or None if it was never written."""
        url = self._layout.state_file(name)
        if is_local(self._fs):
            version, value = self._read_local(url)
            self._seen[name] = (version, version)
        else:
            generation, version, value = self._read_gcs(url)
            self._seen[name] = (generation, version)
        return value

    def put(self, name: str, value: dict[str, Any]) -> None:
        """Write the record atomically; raise StateConflictError if someone else changed it."""
        url = self._layout.state_file(name)
        if name not in self._seen:
            self.get(name)
        guard, version = self._seen[name]
        if is_local(self._fs):
            new_version = self._put_local(url, guard, value)
            self._seen[name] = (new_version, new_version)
        else:
            generation = self._put_gcs(url, guard, version + 1, value)
            self._seen[name] = (generation, version + 1)

    # local
    def _read_local(self, url: str) -> tuple[int, dict[str, Any] | None]:
        _, path = resolve(url, self._storage_options)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return _MISSING, None
        return _decode(url, data)

    @contextmanager
    def _locked(self, url: str) -> Iterator[None]:
        _, path = resolve(url, self._storage_options)
        lock = Path(path).with_name(f".{Path(path).name}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _put_local(self, url: str, expected: int, value: dict[str, Any]) -> int:
        with self._locked(url):
            current, _ = self._read_local(url)
            if current != expected:
                raise StateConflictError(
                    f"state {url} changed under us (version {current}, expected {expected}); "
                    "another writer is running: re-read it and retry"
                )
            write_bytes_atomic(
                _encode(current + 1, value), url, storage_options=self._storage_options
            )
        return current + 1

    # GCS
    def _blob(self, url: str) -> Any:
        _, path = resolve(url, self._storage_options)
        return gcs_blob(self._fs, path)

    def _read_gcs(self, url: str) -> tuple[int, int, dict[str, Any] | None]:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self._blob(url)
        for _ in range(5):
            try:
                blob.reload()
            except NotFound:
                return _MISSING, _MISSING, None
            generation = int(blob.generation)
            try:
                # Pin the generation whose number we keep, in case it is replaced meanwhile.
                data = blob.download_as_bytes(if_generation_match=generation)
            except (NotFound, PreconditionFailed):
                continue
            version, value = _decode(url, data)
            return generation, version, value
        raise StateConflictError(f"state {url} keeps changing while being read; retry later")

    def _put_gcs(self, url: str, expected: int, version: int, value: dict[str, Any]) -> int:
        from google.api_core.exceptions import PreconditionFailed

        blob = self._blob(url)
        try:
            blob.upload_from_string(
                _encode(version, value),
                content_type="application/json",
                if_generation_match=expected,
            )
        except PreconditionFailed:
            raise StateConflictError(
                f"state {url} changed under us (expected generation {expected}); "
                "another writer is running: re-read it and retry"
            ) from None
        return int(blob.generation)
