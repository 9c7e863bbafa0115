"""What the stream does when a micro-batch fails on a file it cannot read.

Spark's file source replays a failed micro-batch with the same files after a restart, so one
unreadable raw file (truncated, garbage, a foreign schema) would stop the stream at every restart,
for good. Instead, once a micro-batch fails, the files it had to read are screened as the batch ETL
screens its inputs (`shopflow.lake.quarantine`): the raw files of the pending micro-batch (every
page decoded), and the stream's own tables (`events_clean_stream`, `user_behavior_live`) in the
dates those files can touch (footers). Each file that cannot be read moves to `quarantine/<its path>` with a reason,
and the stream starts again: the replay skips the moved files (the readers take missing files as
gone, `ignoreMissingFiles`). When that screen finds nothing, the pending raw files are read with
Spark itself (pyarrow reads some files Spark cannot: a codec Spark lacks, column names equal but
for case), and then the raw zone is searched for files outside a `date=/hour=` folder (Spark fails
to plan a micro-batch over them, before it has any files). Nothing is deleted. A quarantined raw
file's events reach the warehouse through the hourly batch once it is fixed and moved back; the
stream takes a fixed file only under a new name (Spark's file source remembers every path it has
read). Rows of a moved stream table file are the hourly batch's (their raw events are intact).
When no file is to blame, the failure is not the data's and the stream stops with it.

A damaged file of the stream's tables that no micro-batch reads (an hour no new event touches)
would not fail the stream, but it fails every query of the warehouse's live view; the running
stream screens the footers of their files at each retention check (`screen_stream_tables`): all
of them at the first, then those new or changed since.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Final

import pyarrow as pa

from shopflow.contracts import RAW_EVENT_SCHEMA
from shopflow.lake import LakeLayout, list_data_files
from shopflow.lake.io import partition_values, resolve
from shopflow.lake.quarantine import Quarantined, misplaced_reason, quarantine, screen_files
from shopflow.transform.stream_merge import STREAM_FILE_SCHEMA, STREAM_TABLE

_KEYS: Final = ("date", "hour")
#: The file source's log of the files each micro-batch read (Spark's layout of a checkpoint).
_SOURCE_LOG: Final = "sources/0"


def _read_text(url: str) -> str | None:
    fs, path = resolve(url)
    try:
        with fs.open(path, "rb") as handle:
            data: bytes = handle.read()
    except FileNotFoundError:
        return None
    return data.decode("utf-8", errors="replace")


def _batch_ids(checkpoint: str, folder: str) -> list[int]:
    fs, path = resolve(f"{checkpoint}/{folder}")
    try:
        names = [entry.rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


def pending_batch_files(checkpoint: str) -> list[str]:
    """The raw files of the micro-batch a checkpoint has planned but not committed (the one a
    restart replays); none when every planned batch is committed."""
    offsets = _batch_ids(checkpoint, "offsets")
    committed = set(_batch_ids(checkpoint, "commits"))
    pending = [batch for batch in offsets if batch not in committed]
    if not pending:
        return []
    text = _read_text(f"{checkpoint}/offsets/{pending[-1]}") or ""
    try:
        log_offset = int(json.loads(text.strip().splitlines()[-1])["logOffset"])
    except (IndexError, KeyError, TypeError, ValueError):
        return []
    files: list[str] = []
    # The entry is in the batch's own log file or, once compacted, in a `.compact` one.
    for name in (str(log_offset), f"{log_offset}.compact"):
        for line in (_read_text(f"{checkpoint}/{_SOURCE_LOG}/{name}") or "").splitlines()[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("batchId") == log_offset:
                files.append(str(entry["path"]))
    return sorted(set(files))


def _lake_url(layout: LakeLayout, path: str) -> str:
    """A path as Spark logs it (`file:///...`) in the lake's own spelling."""
    if path.startswith("file://") and not layout.root.startswith("file://"):
        return path[len("file://") :]
    return path


def _dates_of(urls: Iterable[str]) -> set[date]:
    """The dates of the `date=` folders of `urls` (a folder that is no date is left out)."""
    dates = set()
    for url in urls:
        try:
            dates.add(date.fromisoformat(partition_values(url).get("date", "")))
        except ValueError:
            continue
    return dates


def _exists(url: str) -> bool:
    fs, path = resolve(url)
    return bool(fs.exists(path))


def root_cause_line(error: BaseException) -> str:
    """One line of a (Spark) error worth printing: the last `Caused by:` of a Java trace, else
    the first line of the message; at most 300 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    line = causes[-1] if causes else (lines[0] if lines else type(error).__name__)
    return line[:300]


def screen_after_failure(
    layout: LakeLayout,
    checkpoints: Sequence[str],
    live_table: str,
    live_schema: pa.Schema,
    spark_failures: Callable[[list[str]], dict[str, str]] | None = None,
) -> list[Quarantined]:
    """Quarantine the files a failed micro-batch could not read: the pending raw files of each
    checkpoint (every page decoded), and the stream table's and `live_table`'s files of the
    dates around theirs (footers only: those tables hold days of events, and the stream writes
    them whole and atomically).

    When none fails the screen: the pending raw files Spark itself cannot read
    (`spark_failures(urls)` gives each one's reason; e.g. a codec Spark lacks, or column names
    equal but for case), else raw files outside a `date=/hour=` folder (Spark fails to plan over
    them, before any micro-batch has files)."""
    raw = sorted({_lake_url(layout, p) for c in checkpoints for p in pending_batch_files(c)})
    present = [url for url in raw if _exists(url)]  # one quarantined before is gone already
    moved = screen_files(layout, present, RAW_EVENT_SCHEMA, partition_keys=_KEYS, deep=True)
    days = _dates_of(raw)
    around = {d + timedelta(days=step) for d in days for step in (-1, 0, 1)}
    for table, schema in ((STREAM_TABLE, STREAM_FILE_SCHEMA), (live_table, live_schema)):
        root = layout.curated_root(table)
        files = [
            f.url
            for day in sorted(around)
            for f in list_data_files(f"{root}/date={day.isoformat()}")
        ]
        moved += screen_files(layout, files, schema, partition_keys=_KEYS)
    if moved:
        return moved
    if spark_failures is not None and present:
        moved += [quarantine(layout, url, why) for url, why in spark_failures(present).items()]
    if not moved:
        root = layout.events_root()
        for url in (f.url for f in list_data_files(root)):
            if (where := misplaced_reason(url[len(root) :], _KEYS)) is not None:
                moved.append(quarantine(layout, url, where))
    return moved


#: Files of the stream's tables that passed a screen, by URL: (size, modification time).
ScreenedFiles = dict[str, tuple[int, datetime]]


def screen_stream_tables(
    layout: LakeLayout, tables: Mapping[str, pa.Schema], screened: ScreenedFiles | None = None
) -> list[Quarantined]:
    """Quarantine every file of the stream's tables (name: file schema) whose footer cannot be
    read as the table. The stream writes them atomically, so this catches damage from outside;
    run now and then (a damaged live file fails every query of the warehouse's live view).

    With `screened` (kept by the caller between checks, updated here), a file whose size and
    modification time are those it passed with is not read again: a check then reads the files
    written or replaced since the last one, not every file of the days kept (about 1,700 at
    3 days, each footer a round trip or two on GCS).
    """
    moved: list[Quarantined] = []
    listed: ScreenedFiles = {}
    for table, schema in tables.items():
        files = list_data_files(layout.curated_root(table))
        listed |= {f.url: (f.size, f.mtime) for f in files}
        todo = [f.url for f in files if screened is None or screened.get(f.url) != listed[f.url]]
        moved += screen_files(layout, todo, schema, partition_keys=_KEYS)
    if screened is not None:
        gone = {q.url for q in moved}
        screened.clear()
        screened.update({url: key for url, key in listed.items() if url not in gone})
    return moved
