"""The DuckDB engine reads a `gs://` lake (fake-gcs-server) through the lake's gcsfs."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pyarrow as pa
import pytest

from shopflow.lake import replace_partition, resolve
from shopflow.transform.engine import read_parquet, to_arrow
from tests.gcs_fixtures import fake_gcs_endpoint

__all__ = ["fake_gcs_endpoint"]

pytestmark = pytest.mark.integration

SCHEMA = pa.schema([("event_id", pa.string()), ("date", pa.date32()), ("hour", pa.int32())])


def test_duckdb_reads_hive_partitions_on_gcs_and_sees_later_commits(
    duckdb_session: Any, fake_gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_endpoint)
    bucket = f"engine-{uuid.uuid4().hex[:10]}"
    resolve(f"gs://{bucket}")[0].mkdir(bucket)
    root = f"gs://{bucket}/lake/raw/events"
    replace_partition(pa.table({"event_id": ["a", "b"]}), f"{root}/date=2026-01-01/hour=03")
    replace_partition(pa.table({"event_id": ["c"]}), f"{root}/date=2026-01-02/hour=23")

    def rows() -> list[tuple[str, date, int]]:
        table = to_arrow(read_parquet(duckdb_session, [root], SCHEMA, base_path=root))
        assert table.schema.equals(SCHEMA)
        return sorted((r["event_id"], r["date"], r["hour"]) for r in table.to_pylist())

    assert rows() == [
        ("a", date(2026, 1, 1), 3),
        ("b", date(2026, 1, 1), 3),
        ("c", date(2026, 1, 2), 23),
    ]
    # A partition committed after the first read (by any writer) is in the next one: no stale
    # listing in the file system DuckDB was given.
    replace_partition(pa.table({"event_id": ["d"]}), f"{root}/date=2026-01-02/hour=05")
    replace_partition(pa.table({"event_id": ["b2"]}), f"{root}/date=2026-01-01/hour=03")
    assert rows() == [
        ("b2", date(2026, 1, 1), 3),
        ("c", date(2026, 1, 2), 23),
        ("d", date(2026, 1, 2), 5),
    ]
