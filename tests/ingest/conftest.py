"""Fixtures of the ingest tests: a real orders API and a fresh shop database per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from shopflow.settings import Settings
from tests.conftest import TEST_PG_ADMIN_URL
from tests.sources.orders_api.conftest import orders_api, start_orders_api

__all__ = ["orders_api", "start_orders_api"]


@pytest.fixture
def shop_db_settings(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a shop database of this test's own, dropped afterwards."""
    from shopflow.sources.shop_db import ensure_shop_db

    dbname = f"shopflow_test_{uuid.uuid4().hex[:12]}"
    shop = settings.model_copy(
        update={"source_db_url": make_conninfo(TEST_PG_ADMIN_URL, dbname=dbname)}
    )
    ensure_shop_db(shop)
    yield shop
    with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def raw_rows(lake: str, dataset: str) -> list[dict[str, object]]:
    """Every row of a raw dataset, read file by file (so duplicates across files stay visible)."""
    rows: list[dict[str, object]] = []
    for path in sorted(Path(lake, *dataset.split("/")).rglob("*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def visible_temp_files(lake: str) -> list[Path]:
    """Files a reader could mistake for data: visible files that are not committed Parquet.

    A writer killed mid-write leaves its temp file behind, but hidden (a leading `.`), which every
    reader of the lake (and Spark, DuckDB, pyarrow datasets) skips; those do not count.
    """
    return [
        path
        for path in Path(lake).rglob("*")
        if path.is_file()
        and path.suffix != ".parquet"
        and not path.name.startswith((".", "_"))
        and "_state" not in path.parts
    ]


def state_record(lake: str, name: str) -> dict[str, object] | None:
    """A stored state record, or None."""
    path = Path(lake, "_state", f"{name}.json")
    return json.loads(path.read_text()) if path.exists() else None
