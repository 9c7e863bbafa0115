"""Engine parity at scale: one ≥100k-event raw zone, `run_etl` on Spark and on DuckDB (SQLFrame).

The raw zone is written straight from the simulator's deliveries (default dirt: duplicate, late
and malformed deliveries, catalogue churn), each payload parsed with `contracts.parse_event` as
the landing consumer does (`bench.etl_engines.write_raw_zone`). Each engine runs the ETL into a
lake of its own over that same raw zone; every curated table and the ETL dead letters must be
identical after a stable sort (floats within a relative 1e-9). Then each lake is loaded into a
DuckDB warehouse of its own with `load_warehouse`, and every table and metric view must match.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from bench.etl_engines import RawZone, fresh_lake, write_raw_zone
from pyspark.sql import SparkSession

from shopflow.lake import LakeLayout, list_data_files, read_dataset
from shopflow.quality import gated_load
from shopflow.settings import Settings
from shopflow.transform.engine import engine_of
from shopflow.transform.jobs import CURATED_TABLES, REJECTS_SOURCE, EtlRequest, EtlRun, run_etl
from shopflow.warehouse import duckdb_path

pytestmark = pytest.mark.integration

EVENTS = 100_000
REL_TOL = 1e-9


def _is_float(t: pa.DataType) -> bool:
    return bool(pa.types.is_floating(t))


def _float_key(value: Any) -> tuple[int, float]:
    if value is None:
        return (0, 0.0)
    if math.isnan(value):
        return (2, 0.0)
    return (1, float(f"{value:.6g}"))  # a few ulps apart must not reorder rows


def _sorted_rows(table: pa.Table) -> list[dict[str, Any]]:
    exact = [f.name for f in table.schema if not _is_float(f.type)]
    floats = [f.name for f in table.schema if _is_float(f.type)]

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (
            *((row[c] is not None, repr(row[c])) for c in exact),
            *(_float_key(row[c]) for c in floats),
        )

    return sorted(table.to_pylist(), key=key)


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return math.isclose(left, right, rel_tol=REL_TOL, abs_tol=1e-9)
    return bool(left == right) and type(left) is type(right)


def _same_columns(left: pa.ChunkedArray, right: pa.ChunkedArray) -> bool:
    """Column equality as `_same` sees it, row by row: exact, floats within REL_TOL."""
    if not _is_float(left.type):
        return bool(left.equals(right))
    if not left.is_null().equals(right.is_null()):
        return False
    a = left.to_numpy(zero_copy_only=False)
    b = right.to_numpy(zero_copy_only=False)
    nan = np.isnan(a) | np.isnan(b)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= np.maximum(REL_TOL * np.maximum(np.abs(a), np.abs(b)), 1e-9)
    return bool(np.all(np.where(nan, np.isnan(a) & np.isnan(b), close)))


def _same_when_sorted_by_arrow(spark_table: pa.Table, duckdb_table: pa.Table) -> bool:
    """The quick proof: both tables sorted on every column (floats last) by Arrow, every column
    the same. False proves nothing (a type Arrow cannot sort, floats a few ulps apart ordering
    tied rows differently): the row-by-row comparison then decides."""
    exact = [f.name for f in spark_table.schema if not _is_float(f.type)]
    floats = [f.name for f in spark_table.schema if _is_float(f.type)]
    keys = [(c, "ascending") for c in (*exact, *floats)]
    try:
        left, right = spark_table.sort_by(keys), duckdb_table.sort_by(keys)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False
    return all(_same_columns(left[c], right[c]) for c in spark_table.column_names)


def assert_same(name: str, spark_table: pa.Table, duckdb_table: pa.Table) -> None:
    """Same column names and types, same number of rows, same rows after a stable sort."""
    assert spark_table.column_names == duckdb_table.column_names, name
    assert [f.type for f in spark_table.schema] == [f.type for f in duckdb_table.schema], name
    assert spark_table.num_rows == duckdb_table.num_rows, name
    # Python's sort of 100k rows' reprs took over a minute per engine pair; Arrow's is vectorised.
    if _same_when_sorted_by_arrow(spark_table, duckdb_table):
        return
    differing = 0
    first: str | None = None
    for left, right in zip(_sorted_rows(spark_table), _sorted_rows(duckdb_table), strict=True):
        diff = {c: (v, right[c]) for c, v in left.items() if not _same(v, right[c])}
        if diff:
            differing += 1
            first = first or f"{left} differs (spark, duckdb): {diff}"
    assert differing == 0, f"{name}: {differing} of {spark_table.num_rows} rows differ; {first}"


def test_assert_same_catches_a_difference() -> None:
    table = pa.table({"k": ["a", "b"], "x": [1.0, 2.0]})
    assert_same("t", table, pa.table({"k": ["b", "a"], "x": [2.0 * (1 + 1e-12), 1.0]}))
    with pytest.raises(AssertionError, match="1 of 2 rows differ"):
        assert_same("t", table, pa.table({"k": ["a", "b"], "x": [1.0, 2.001]}))
    with pytest.raises(AssertionError):
        assert_same("t", table, pa.table({"k": ["a", "c"], "x": [1.0, 2.0]}))
    nan_and_null = pa.table({"k": ["a", "b", "c"], "x": [math.nan, None, 1.0]})
    assert_same("t", nan_and_null, nan_and_null.take([2, 0, 1]))
    with pytest.raises(AssertionError):
        assert_same("t", nan_and_null, pa.table({"k": ["a", "b", "c"], "x": [math.nan, 1.0, 1.0]}))
    with pytest.raises(AssertionError):
        assert_same("t", nan_and_null, pa.table({"k": ["a", "b", "c"], "x": [1.0, None, 1.0]}))


@pytest.fixture(scope="module")
def raw_zone(tmp_path_factory: pytest.TempPathFactory) -> RawZone:
    """≥100k valid events (plus their dirt) as a raw zone, written once for the module."""
    lake = tmp_path_factory.mktemp("parity-raw") / "lake"
    zone = write_raw_zone(lake, EVENTS, seed=11, days=2, initial_users=3000)
    assert zone.valid_events == EVENTS
    assert zone.landed_rows > EVENTS  # duplicate and late copies landed too
    assert zone.malformed_skipped > 0
    return zone


@pytest.fixture
def lakes(raw_zone: RawZone, settings: Settings, tmp_path: Path) -> Iterator[dict[str, Settings]]:
    """One home and lake per engine, both over the same raw zone."""
    homes: dict[str, Settings] = {}
    for engine in ("spark", "duckdb"):
        lake = fresh_lake(raw_zone, tmp_path / engine)
        homes[engine] = settings.model_copy(
            update={"home": lake.parent, "lake_root": str(lake), "etl_engine": engine}
        )
    yield homes


def _curated(settings: Settings) -> dict[str, pa.Table]:
    layout = LakeLayout.from_settings(settings)
    tables = {name: read_dataset(layout.curated_root(name)) for name in CURATED_TABLES}
    rejects = layout.deadletter_root(REJECTS_SOURCE)
    if list_data_files(rejects):
        tables[f"deadletter/{REJECTS_SOURCE}"] = read_dataset(rejects)
    return tables


def _warehouse(settings: Settings) -> dict[str, pa.Table]:
    with duckdb.connect(str(duckdb_path(settings)), read_only=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' ORDER BY table_name"
            ).fetchall()
        ]
        tables = {name: conn.sql(f'SELECT * FROM "{name}"').to_arrow_table() for name in names}
        # When the checks ran, and freshness (the newest event against that time), differ from
        # run to run; everything else the checks found must be the same on both engines.
        tables["quality_results"] = conn.sql(
            "SELECT * EXCLUDE (run_ts) FROM quality_results WHERE check_name != 'freshness'"
        ).to_arrow_table()
        return tables


def test_both_engines_give_identical_curated_zones_and_warehouses(
    spark: SparkSession, duckdb_session: Any, lakes: dict[str, Settings], raw_zone: RawZone
) -> None:
    runs: dict[str, EtlRun] = {}
    for engine, session in (("spark", spark), ("duckdb", duckdb_session)):
        assert engine_of(session) == engine
        runs[engine] = run_etl(session, lakes[engine], EtlRequest())
        print(f"\n{engine}: {runs[engine].seconds:.1f}s\n{runs[engine].summary()}")
    assert runs["spark"].dates == runs["duckdb"].dates
    assert len(runs["spark"].dates) >= 2  # sessions cross midnight between recomputed dates
    assert runs["spark"].rows == runs["duckdb"].rows
    assert runs["spark"].rows["events_clean"] == EVENTS

    spark_tables, duckdb_tables = _curated(lakes["spark"]), _curated(lakes["duckdb"])
    assert sorted(spark_tables) == sorted(duckdb_tables)
    for name in spark_tables:
        assert_same(name, spark_tables[name], duckdb_tables[name])
    assert spark_tables["user_behavior"].num_rows == EVENTS

    for settings in lakes.values():
        gated_load(settings)  # as `shopflow load`: the quality checks first, into quality_results
    spark_wh, duckdb_wh = _warehouse(lakes["spark"]), _warehouse(lakes["duckdb"])
    assert sorted(spark_wh) == sorted(duckdb_wh)
    assert {n for n in spark_wh if n.startswith("metric_")} >= {
        "metric_top_products",
        "metric_avg_spend_per_session",
        "metric_unique_visitors",
        "metric_orders_by_date",
        "metric_daily_traffic",
    }
    for name in spark_wh:
        assert spark_wh[name].num_rows > 0, name
        assert_same(f"warehouse {name}", spark_wh[name], duckdb_wh[name])
