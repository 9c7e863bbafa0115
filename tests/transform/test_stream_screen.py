"""The stream's periodic screen of its own tables: damaged files quarantined, unchanged files that
passed before not read again."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from shopflow.lake import LakeLayout
from shopflow.lake.io import write_parquet_atomic
from shopflow.lake.quarantine import screen_files
from shopflow.settings import Settings
from shopflow.transform import stream_recovery
from shopflow.transform.stream_recovery import ScreenedFiles, screen_stream_tables
from shopflow.warehouse.live import LIVE_TABLE, live_file_schema


def _slice(layout: LakeLayout, minute: int) -> str:
    return f"{layout.curated_root(LIVE_TABLE)}/date=2026-11-20/hour=10/part-m{minute:02d}.parquet"


def test_a_check_reads_only_files_new_or_changed_since_the_last(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = LakeLayout.from_settings(settings)
    schema = live_file_schema()
    good, other, bad = _slice(layout, 0), _slice(layout, 5), _slice(layout, 10)
    for url in (good, other):
        write_parquet_atomic(schema.empty_table(), url)
    Path(bad).write_bytes(b"not parquet at all")
    read: list[str] = []

    def counting(layout: LakeLayout, urls: list[str], schema: pa.Schema, **kw: object) -> object:
        read.extend(urls)
        return screen_files(layout, urls, schema, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(stream_recovery, "screen_files", counting)
    screened: ScreenedFiles = {}
    tables = {LIVE_TABLE: schema}

    moved = screen_stream_tables(layout, tables, screened)
    assert [q.url for q in moved] == [bad] and not Path(bad).exists()
    assert sorted(read) == sorted([good, other, bad])
    assert set(screened) == {good, other}

    read.clear()
    assert screen_stream_tables(layout, tables, screened) == []
    assert read == []  # nothing changed: nothing read

    # Damage from outside changes a file's size: the next check reads that file only.
    Path(other).write_bytes(b"PAR1 truncated")
    read.clear()
    moved = screen_stream_tables(layout, tables, screened)
    assert [q.url for q in moved] == [other] and read == [other]
    assert set(screened) == {good}

    # Without a record of earlier checks, every file is read.
    read.clear()
    screen_stream_tables(layout, tables)
    assert read == [good]
