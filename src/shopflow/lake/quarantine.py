"""Raw files the ETL cannot read are moved aside, with a reason, instead of failing every run.

A file is screened before a run reads it: its Parquet footer must open and every column the
reader expects must have the expected type (a missing nullable column is read as null). A file
that fails - truncated, garbage bytes, a foreign schema, a price stored as text - moves from
`<lake>/<path>` to `<lake>/quarantine/<path>`, next to `<path>.reason.json` saying why and when.
Nothing is deleted: fix or replace the file and move it back to reprocess it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from shopflow.lake.io import (
    PARTITION_TYPES,
    StorageOptions,
    partition_values,
    resolve,
    write_bytes_atomic,
)
from shopflow.lake.layout import LakeLayout
from shopflow.lake.reading import typed_partition_value


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A file moved aside, where it went, and why."""

    url: str
    moved_to: str
    reason: str


def _plain(kind: pa.DataType) -> pa.DataType:
    """The logical type behind encodings a reader resolves on its own."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pa.binary()
    return kind


def _compatible(expected: pa.DataType, found: pa.DataType) -> bool:
    expected, found = _plain(expected), _plain(found)
    if pa.types.is_timestamp(expected):
        # Any zone, but the unit the engines read: nanoseconds are not a type DuckDB's
        # SQLFrame session can cast.
        return bool(pa.types.is_timestamp(found) and found.unit == expected.unit)
    return bool(expected.equals(found))


def unreadable_reason(
    url: str,
    schema: pa.Schema,
    storage_options: StorageOptions | None = None,
    *,
    deep: bool = False,
) -> str | None:
    """Why the Parquet file at `url` cannot be read as `schema`, or None if it can.

    Only the footer is read, unless `deep`: then every page is decoded too (a file whose footer
    is intact but whose data pages are damaged).
    """
    fs, path = resolve(url, storage_options)
    try:
        with fs.open(path, "rb") as handle:
            found = pq.read_schema(handle)
            if deep:
                handle.seek(0)
                pq.read_table(handle)
    except Exception as exc:  # any failure to decode makes the file unreadable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"not a readable Parquet file: {first[:200]}"
    for field in schema:
        if field.name in PARTITION_TYPES:
            continue
        index = found.get_field_index(field.name)
        if index < 0:
            if not field.nullable:
                return f"column {field.name} is missing"
            continue
        found_type = found.field(index).type
        if not _compatible(field.type, found_type):
            return f"column {field.name} is {found_type}, expected {field.type}"
    return None


def quarantine(
    layout: LakeLayout, url: str, reason: str, storage_options: StorageOptions | None = None
) -> Quarantined:
    """Move one lake file to `quarantine/` with a `.reason.json` beside it. A file quarantined
    from the same path before is kept: the later one is named `<name>.<n>` (n = 1, 2, ...)."""
    relative = url[len(layout.root) :].lstrip("/")
    fs, path = resolve(url, storage_options)
    target = f"{layout.quarantine_root()}/{relative}"
    # The stream's slices keep their names (`part-m05.parquet`): the same path can go twice.
    taken = 0
    while fs.exists(resolve(f"{target}.reason.json", storage_options)[1]):
        taken += 1
        target = f"{layout.quarantine_root()}/{relative}.{taken}"
    note = {"from": relative, "reason": reason, "at": datetime.now(UTC).isoformat()}
    write_bytes_atomic(
        json.dumps(note).encode(), f"{target}.reason.json", storage_options=storage_options
    )
    _, target_path = resolve(target, storage_options)
    fs.makedirs(target_path.rsplit("/", 1)[0], exist_ok=True)
    fs.mv(path, target_path)
    return Quarantined(url, target, reason)


def misplaced_reason(url: str, partition_keys: Sequence[str]) -> str | None:
    """Why a file is not where its dataset's partition folders say it must be, or None."""
    values = partition_values(url)
    if list(values) != list(partition_keys):
        folders = "/".join(f"{key}=..." for key in partition_keys)
        return f"not in a {folders} folder"
    for key, value in values.items():
        try:
            typed = typed_partition_value(key, value)
        except ValueError:
            return f"partition folder {key}={value!r} is not a {PARTITION_TYPES[key]}"
        if key == "hour" and not 0 <= typed <= 23:
            return f"partition folder hour={value!r} is not an hour of the day"
    return None


def screen_files(
    layout: LakeLayout,
    urls: Iterable[str],
    schema: pa.Schema,
    storage_options: StorageOptions | None = None,
    *,
    partition_keys: Sequence[str] | None = None,
    deep: bool = False,
) -> list[Quarantined]:
    """Quarantine each of `urls` that cannot be read as `schema` (or that lies outside its
    `partition_keys` folders); return what was moved."""
    moved = []
    for url in urls:
        reason = misplaced_reason(url, partition_keys) if partition_keys is not None else None
        reason = reason or unreadable_reason(url, schema, storage_options, deep=deep)
        if reason is not None:
            moved.append(quarantine(layout, url, reason, storage_options))
    return moved
