"""`shopflow etl` / `backfill` / `load` as a user runs them, on each engine: the same warehouse.

Spark is chosen by the setting (`SHOPFLOW_ETL_ENGINE=spark`), DuckDB by the flag (`--engine
duckdb`, overriding a setting of spark); each runs in its own home over the same raw zone. The
backfill runs on DuckDB only, after its ETL: a second Spark process would prove no more (`etl` and
`backfill` share the CLI's engine choice, and Spark's backfill runs in test_pipeline), and the
backfilled warehouse still equals Spark's ETL-only one, so the backfill changed nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from bench.etl_engines import RawZone, fresh_lake, write_raw_zone

from tests.integration.test_engine_parity import assert_same

pytestmark = pytest.mark.integration

EVENTS = 5000


def shopflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _env(home: Path, engine: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update({"SHOPFLOW_HOME": str(home), "SHOPFLOW_ETL_ENGINE": engine})
    return env


def _warehouse(home: Path) -> dict[str, pa.Table]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
        ]
        tables = {n: conn.sql(f'SELECT * FROM "{n}"').to_arrow_table() for n in names}
        # The load's quality checks found the same on both engines; only the run's time (and
        # the newest event's age at that time) differ.
        tables["quality_results"] = conn.sql(
            "SELECT * EXCLUDE (run_ts) FROM quality_results WHERE check_name <> 'freshness'"
        ).to_arrow_table()
        return tables


@pytest.fixture(scope="module")
def raw_zone(tmp_path_factory: pytest.TempPathFactory) -> RawZone:
    lake = tmp_path_factory.mktemp("cli-raw") / "lake"
    return write_raw_zone(lake, EVENTS, seed=5, days=2, initial_users=500)


def test_etl_backfill_and_load_give_the_same_warehouse_on_either_engine(
    raw_zone: RawZone, tmp_path: Path
) -> None:
    homes = {engine: tmp_path / engine for engine in ("spark", "duckdb")}
    runs = {
        "spark": (_env(homes["spark"], "spark"), ()),
        "duckdb": (_env(homes["duckdb"], "spark"), ("--engine", "duckdb")),
    }
    for engine, (env, flag) in runs.items():
        fresh_lake(raw_zone, homes[engine])
        etl = shopflow(env, "etl", *flag)
        assert etl.returncode == 0, etl.stderr[-3000:]
        assert f"ETL engine: {engine}" in etl.stderr
        assert f"{EVENTS:,} rows" in etl.stdout
        if engine == "duckdb":
            backfill = shopflow(
                env, "backfill", "--start", "2026-11-01", "--end", "2026-11-01", *flag
            )
            assert backfill.returncode == 0, backfill.stderr[-3000:]
            assert "ETL engine: duckdb" in backfill.stderr
            assert "backfill 2026-11-01 to 2026-11-01" in backfill.stdout
        load = shopflow(env, "load")
        assert load.returncode == 0, load.stderr[-3000:]
    spark_wh, duckdb_wh = _warehouse(homes["spark"]), _warehouse(homes["duckdb"])
    assert sorted(spark_wh) == sorted(duckdb_wh)
    assert spark_wh["user_behavior"].num_rows == EVENTS
    for name in spark_wh:
        assert_same(name, spark_wh[name], duckdb_wh[name])


def test_a_bad_engine_is_one_line(tmp_path: Path) -> None:
    for bad in ("flink", ""):
        result = shopflow(_env(tmp_path, "spark"), "etl", "--engine", bad)
        assert result.returncode == 2
        # The message names the option the user gave, not the setting it overrides.
        assert f"--engine {bad!r} is not one of: duckdb, spark" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
