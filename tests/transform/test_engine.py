"""The engine module's DuckDB performance helpers: `duckdb_sql`, `materialize`."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from shopflow.transform.engine import (
    create_dataframe,
    duckdb_sql,
    materialize,
    open_duckdb_session,
    release,
    stopping,
    to_arrow,
    transforms,
)

TABLE = pa.table({"k": ["a", "b", "c", "d"], "v": [1, 2, 3, 4], "x": [0.5, None, 1.5, 2.5]})


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.sort_by([("k", "ascending"), ("v", "ascending")]).to_pylist()
    return rows


def test_duckdb_sql_is_unoptimised_single_line_and_runs(duckdb_session: Any) -> None:
    f = transforms(duckdb_session).functions
    df = create_dataframe(duckdb_session, TABLE).where(f.col("v") > 1).withColumn("w", f.col("v"))
    sql = duckdb_sql(df)
    assert "\n" not in sql
    rows = duckdb_session._conn.execute(sql).fetchall()
    assert sorted(r[1] for r in rows) == [2, 3, 4]
    assert sql == df.sql(dialect="duckdb", optimize=False, pretty=False)


def test_materialize_keeps_rows_and_types(duckdb_session: Any) -> None:
    f = transforms(duckdb_session).functions
    df = create_dataframe(duckdb_session, TABLE).withColumn("h", f.col("v").cast("int"))
    kept = materialize(df)
    assert to_arrow(kept).equals(to_arrow(df))
    release(kept)


def test_the_duckdb_session_is_utc_unordered_and_quiet(duckdb_session: Any) -> None:
    conn = duckdb_session._conn
    settings = dict(
        conn.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('TimeZone', 'preserve_insertion_order', 'enable_progress_bar')"
        ).fetchall()
    )
    assert settings == {
        "TimeZone": "UTC",
        "preserve_insertion_order": "false",
        "enable_progress_bar": "false",
    }


def test_a_stopped_session_is_closed_and_the_next_one_is_new() -> None:
    # `stopping` closes DuckDB before the interpreter exits (duckdb/duckdb#13904).
    with stopping(open_duckdb_session()) as session:
        assert session.sql("SELECT 1 AS x").collect()[0]["x"] == 1
    # Used after its stop (which makes it SQLFrame's current session again), it fails...
    with pytest.raises(Exception, match="closed"):
        session.sql("SELECT 2 AS x").collect()
    # ...and the next ETL still gets a working session.
    fresh = open_duckdb_session()
    assert fresh is not session
    assert fresh.sql("SELECT 3 AS x").collect()[0]["x"] == 3
