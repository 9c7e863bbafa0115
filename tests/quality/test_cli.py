"""`shopflow quality` and the gated `shopflow load`, run as the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

from shopflow.lake import LakeLayout
from shopflow.settings import Settings
from shopflow.warehouse import open_warehouse
from tests.quality import faults

DAY2 = date(2026, 11, 2)


def shopflow(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"SHOPFLOW_HOME": str(settings.home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "shopflow.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def recorded_runs(settings: Settings) -> int:
    warehouse = open_warehouse(settings, must_exist=True)
    try:
        rows = warehouse.query("SELECT count(DISTINCT run_ts) AS runs FROM quality_results")
    finally:
        warehouse.close()
    return int(rows[0]["runs"])


def test_quality_prints_every_result_and_exits_0_on_a_clean_range(
    lake_settings: Settings,
) -> None:
    done = shopflow(lake_settings, "quality", "--start", "2026-11-01", "--end", "2026-11-02")
    assert done.returncode == 0, done.stderr
    for name in ("unique_event_id", "not_null", "known_product", "volume", "reconciliation"):
        assert name in done.stdout
    assert "freshness" in done.stdout and "warn" in done.stdout
    assert (
        done.stdout.strip()
        .splitlines()[-1]
        .startswith("quality checks passed for 2026-11-01..2026-11-02 (1 warnings)")
    )
    assert recorded_runs(lake_settings) == 1


def test_a_failed_error_check_exits_2_with_one_line_and_load_loads_nothing(
    lake_settings: Settings,
) -> None:
    faults.unknown_product(LakeLayout.from_settings(lake_settings), DAY2, 12)
    checked = shopflow(lake_settings, "quality", "--date", "2026-11-02")
    assert checked.returncode == 2
    assert "FAIL" in checked.stdout and "known_product" in checked.stdout
    assert checked.stderr.strip() == (
        "shopflow: error: quality gate failed for 2026-11-02: known_product (events_clean "
        "2026-11-02): 1 row name 1 product_ids missing from products_history "
        f"(e.g. {faults.UNKNOWN_PRODUCT}); nothing loaded"
    )

    loaded = shopflow(lake_settings, "load", "--date", "2026-11-02")
    assert loaded.returncode == 2
    assert len(loaded.stderr.strip().splitlines()) == 1
    assert "known_product" in loaded.stderr and "nothing loaded" in loaded.stderr
    assert recorded_runs(lake_settings) == 2  # on demand and before the load: both recorded
    warehouse = open_warehouse(lake_settings, must_exist=True)
    try:
        assert warehouse.query("SELECT count(*) AS n FROM events_clean") == [{"n": 0}]
    finally:
        warehouse.close()


def test_load_checks_first_then_loads_a_clean_lake(lake_settings: Settings) -> None:
    done = shopflow(lake_settings, "load")
    assert done.returncode == 0, done.stderr
    assert "quality checks passed for 2026-11-01..2026-11-02" in done.stdout
    assert "quality warning: freshness" in done.stderr
    assert "events_clean: 3,000 rows (2026-11-01, 2026-11-02)" in done.stdout


def test_quality_on_an_empty_lake_says_there_is_nothing_to_check(settings: Settings) -> None:
    done = shopflow(settings, "quality", "--date", "2026-11-01")
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"shopflow: nothing to check: no curated data in {settings.home / 'lake'}/curated"
    ]
    assert "passed" not in done.stdout
    assert not (settings.home / "warehouse.duckdb").exists()


def test_quality_of_dates_the_lake_does_not_have_checks_nothing(
    lake_settings: Settings,
) -> None:
    done = shopflow(lake_settings, "quality", "--date", "2020-01-01")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip() == (
        "shopflow: nothing to check: no curated data for 2020-01-01 in "
        f"{lake_settings.home / 'lake'}/curated"
    )
    assert not (lake_settings.home / "warehouse.duckdb").exists()
    # A range with one date of data checks that date and names the other.
    some = shopflow(lake_settings, "quality", "--start", "2026-11-02", "--end", "2026-11-03")
    assert some.returncode == 0, some.stderr
    assert "no curated data for 2026-11-03: not checked" in some.stdout
    assert "quality checks passed for 2026-11-02 " in some.stdout


def test_a_deliberate_volume_drop_loads_when_accepted_and_is_recorded_as_overridden(
    lake_settings: Settings,
) -> None:
    kept = faults.volume_drop(LakeLayout.from_settings(lake_settings), DAY2, 12)
    other_date = shopflow(
        lake_settings, "load", "--date", "2026-11-02", "--accept-volume-drop", "2026-11-01"
    )
    assert other_date.returncode == 2
    assert "quality gate failed for 2026-11-02: volume" in other_date.stderr

    accepted = shopflow(
        lake_settings, "load", "--date", "2026-11-02", "--accept-volume-drop", "2026-11-02"
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "quality override: volume (events_clean 2026-11-02): accepted by" in accepted.stderr
    warehouse = open_warehouse(lake_settings, must_exist=True)
    try:
        rows = warehouse.query(
            "SELECT severity, passed, run_ts FROM quality_results WHERE check_name = 'volume'"
            " ORDER BY run_ts"
        )
        twelve = warehouse.query(
            "SELECT count(*) AS n FROM events_clean WHERE date = DATE '2026-11-02' AND hour = 12"
        )
    finally:
        warehouse.close()
    assert [(r["severity"], r["passed"]) for r in rows] == [
        ("error", False),
        ("overridden", False),
    ]
    assert twelve == [{"n": kept}]
    bad = shopflow(lake_settings, "load", "--accept-volume-drop", "yesterday")
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith(
        "--accept-volume-drop 'yesterday' is not a date; use YYYY-MM-DD, e.g. 2026-11-25"
    )
