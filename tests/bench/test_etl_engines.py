"""The ETL engines benchmark without a run: Spark driver memory by size, rows of failed cases."""

from __future__ import annotations

from bench._harness import IsolatedError
from bench.etl_engines import RawZone, _failed_row, spark_memory


def test_spark_memory_grows_with_the_run_unless_one_size_is_given() -> None:
    assert spark_memory(20_000, None) == "4g"
    assert spark_memory(1_000_000, None) == "4g"
    assert spark_memory(1_000_001, None) == "16g"
    assert spark_memory(10_000_000, None) == "16g"
    assert spark_memory(10_000_000, "8g") == "8g"


def test_a_failed_case_becomes_a_row_naming_the_error() -> None:
    zone = RawZone(
        lake="/nowhere",
        valid_events=20_000,
        deliveries=20_500,
        landed_rows=20_400,
        malformed_skipped=100,
        order_lines=300,
        event_files=40,
        days=2,
        seed=42,
        setup_seconds=1.0,
    )
    failure = IsolatedError("run_engine_case failed in its child process:\nTraceback\n  ...\nOOM\n")
    row = _failed_row("spark", zone, failure)
    assert (row.case, row.wall_seconds, row.throughput) == ("spark-20k", 0.0, None)
    assert row.notes == "FAILED: OOM"
