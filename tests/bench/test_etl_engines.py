"""The ETL engines benchmark's choices that do not need a run: Spark driver memory by size."""

from __future__ import annotations

from bench.etl_engines import spark_memory


def test_spark_memory_grows_with_the_run_unless_one_size_is_given() -> None:
    assert spark_memory(20_000, None) == "4g"
    assert spark_memory(1_000_000, None) == "4g"
    assert spark_memory(1_000_001, None) == "16g"
    assert spark_memory(10_000_000, None) == "16g"
    assert spark_memory(10_000_000, "8g") == "8g"
