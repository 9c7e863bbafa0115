"""What raw data the ETL has not processed yet, and which raw event files each date holds.

Both come from the lake's commit logs (`shopflow.lake.commit_log`), never from file times or a
listing of the raw zone's history:

* the ETL's state keeps, per raw source, the last commit record it processed; a run reads the
  records after it (`read_pending`) and recomputes the dates of the event files they name;
* the ETL folds every event record it reads into a manifest per event date
  (`_state/manifests/events/date=D.json`: the committed files of D), and reads a date's raw events
  from its manifest: a file in a date's folder that no record names (a copy dropped in by hand, a
  write whose commit never happened) is reported, not read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from shopflow.lake import LakeLayout, list_data_files, partition_values, resolve, write_json_atomic
from shopflow.lake.commit_log import RAW_SOURCES, CommitLog, CommitRecord
from shopflow.lake.errors import LakeError

_PULL_SOURCES = tuple(s for s in RAW_SOURCES if s != "events")


@dataclass(slots=True)
class PendingChanges:
    """Commit records not processed yet, read from the cursors of the previous run."""

    #: Per source, the last record read (the cursor to store once the run has succeeded).
    cursors: dict[str, int]
    #: Newly committed raw event files by their partition date (relative to the lake root).
    event_files: dict[date, set[str]] = field(default_factory=dict)
    #: Newly committed raw event files whose folder has no valid date.
    undated: list[str] = field(default_factory=list)
    #: Whether any orders, products or users pull was committed.
    new_pulls: bool = False
    #: Event records read (folded into the manifests).
    event_records: list[CommitRecord] = field(default_factory=list)
    #: Commit records found missing below the end of their log (deleted by hand), by source.
    missing_records: list[str] = field(default_factory=list)


def _partition_date(relative_path: str) -> date | None:
    try:
        return date.fromisoformat(partition_values(relative_path).get("date", ""))
    except ValueError:
        return None


def read_pending(layout: LakeLayout, cursors: Mapping[str, int]) -> PendingChanges:
    """The records committed after `cursors` (a missing source: from the beginning)."""
    pending = PendingChanges(cursors={})
    for source in RAW_SOURCES:
        after = int(cursors.get(source, 0))
        commit_log = CommitLog(layout, source)
        records = commit_log.read_after(after)
        pending.missing_records += [commit_log.record_url(n) for n in commit_log.missing]
        pending.cursors[source] = records[-1].seq if records else after
        if source != "events":
            pending.new_pulls |= bool(records)
            continue
        pending.event_records = records
        for record in records:
            for path in record.files:
                day = _partition_date(path)
                if day is None:
                    pending.undated.append(path)
                else:
                    pending.event_files.setdefault(day, set()).add(path)
    return pending


def _manifest_url(layout: LakeLayout, day: date) -> str:
    return f"{layout.state_root()}/manifests/events/date={day.isoformat()}.json"


def _read_manifest(layout: LakeLayout, day: date) -> set[str]:
    url = _manifest_url(layout, day)
    fs, path = resolve(url)
    try:
        with fs.open(path, "rb") as handle:
            body: Any = json.load(handle)
        files = body["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError("'files' is not a list of paths")
    except FileNotFoundError:
        return set()
    except (ValueError, KeyError, TypeError) as exc:
        raise LakeError(
            f"manifest {url} is not readable ({exc}); delete it and run `shopflow lake register "
            f"{layout.events_root()}/date={day.isoformat()}` to rebuild it from the files"
        ) from None
    return set(files)


def fold_into_manifests(layout: LakeLayout, event_files: Mapping[date, set[str]]) -> None:
    """Add newly committed event files to their dates' manifests (idempotent: a set union).

    Only the ETL writes manifests, under the lake's writer lock.
    """
    for day, files in sorted(event_files.items()):
        known = _read_manifest(layout, day)
        if not files <= known:
            write_json_atomic({"files": sorted(known | files)}, _manifest_url(layout, day))


def has_manifest(layout: LakeLayout, day: date) -> bool:
    """Whether any raw event file of `day` was ever committed."""
    fs, path = resolve(_manifest_url(layout, day))
    return bool(fs.exists(path))


@dataclass(frozen=True, slots=True)
class RawEventFiles:
    """The raw event files of some dates: the committed ones present, and the others."""

    committed: tuple[str, ...]
    #: In a date's folder but named by no commit record.
    uncommitted: tuple[str, ...]
    #: Named by a record but gone (deleted, or moved to quarantine).
    missing: tuple[str, ...]


def raw_event_files(layout: LakeLayout, dates: Iterable[date]) -> RawEventFiles:
    """The raw event files of `dates`: each date's folder listed, compared with its manifest."""
    committed: list[str] = []
    uncommitted: list[str] = []
    missing: list[str] = []
    root = layout.events_root()
    for day in sorted(set(dates)):
        present = {f.url for f in list_data_files(f"{root}/date={day.isoformat()}")}
        known = {f"{layout.root}/{path}" for path in _read_manifest(layout, day)}
        committed += sorted(present & known)
        uncommitted += sorted(present - known)
        missing += sorted(known - present)
    return RawEventFiles(tuple(committed), tuple(uncommitted), tuple(missing))


def adopt_uncommitted_lake(layout: LakeLayout) -> int:
    """Register every raw file of a lake that predates the commit logs; returns how many.

    Runs only while a source's log is empty: a lake whose files were all written before the
    landing kept a record would otherwise look empty to the ETL. The run's summary says so.
    """
    adopted = 0
    for source in RAW_SOURCES:
        log_of_source = CommitLog(layout, source)
        if not log_of_source.is_empty():
            continue
        root = layout.events_root() if source == "events" else layout.pull_root(source)
        urls = [f.url for f in list_data_files(root)]
        if urls:
            log_of_source.append(urls)
            adopted += len(urls)
    return adopted
