"""The engine module's DuckDB performance helpers: `duckdb_sql`, `union_all`, `materialize`."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from shopflow.transform.engine import (
    create_dataframe,
    duckdb_sql,
    materialize,
    release,
    to_arrow,
    transforms,
    union_all,
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


@pytest.mark.parametrize("engine", ["spark", "duckdb"])
def test_union_all_matches_union_by_name(
    engine: str, spark: SparkSession, duckdb_session: Any
) -> None:
    session = spark if engine == "spark" else duckdb_session
    f = transforms(session).functions
    base = (
        spark.createDataFrame(TABLE)
        if engine == "spark"
        else create_dataframe(duckdb_session, TABLE)
    )
    # The parts name the same columns in different orders: matched by name, first part's order.
    parts = [
        base.where(f.col("v") == f.lit(1)).select("k", "v", "x", f.lit(1).alias("part")),
        base.where(f.col("v") > f.lit(2)).select(f.lit(2).alias("part"), "x", "k", "v"),
        base.where(f.col("v") == f.lit(2)).select("v", f.lit(3).alias("part"), "k", "x"),
    ]
    expected = parts[0].unionByName(parts[1]).unionByName(parts[2])
    got = union_all(parts)
    got_table, expected_table = to_arrow(got), to_arrow(expected)
    assert got_table.column_names == ["k", "v", "x", "part"]
    assert got_table.schema == expected_table.schema
    assert _sorted(got_table) == _sorted(expected_table)
    assert to_arrow(union_all(parts[:1])).num_rows == 1
    with pytest.raises(ValueError):
        union_all([])
