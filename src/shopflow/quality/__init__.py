"""Data-quality checks as code, run over the curated lake partitions before each load.

Checks (docs/quality.md lists each with its severity and threshold setting): unique keys,
required columns not null, accepted event names, `user_behavior` rows = `events_clean` rows,
relationships to the catalogue (unknown products and users counted), freshness, hourly volume
against the median of the same hour on earlier dates, and order reconciliation. Each has a
severity: `error` stops the load, `warn` is recorded. Every result is appended to the
warehouse's `quality_results`, also when the gate fails.

Why DuckDB SQL over the lake's Arrow tables, not a checks library. The gate runs before the load,
over Parquet partitions read with the lake's own reader (local or GCS), so a tool that only talks
to a warehouse does not fit. Evaluated against the pinned stack (`pip install --dry-run -c
constraints.txt`):

* soda-core (3.x, with `soda-core-duckdb`): does not install: it needs `markupsafe<=2.1.2`, the
  stack pins 3.0.4 (Airflow's Jinja). Its checks run against a data source, not before a load.
* dbt tests: run against a warehouse, after the data is in it; too late for a gate, and dbt-core
  brings its own pinned dependency tree into the Airflow workers.
* pandera 0.35: installs cleanly (plus typeguard and typing-inspect), and covers the per-table
  checks (unique, nullable, isin) on pandas; but the pandas backend copies each date's tables out
  of Arrow, and half of the checks here are across tables or over time (relationships, volume
  against history, freshness, reconciliation), which pandera leaves to hand-written custom checks
  anyway. Two mechanisms and a new dependency for half of the job.

DuckDB is already pinned (the local ETL engine and warehouse), reads Arrow without copying, and
each check is one small SQL query over the checked partitions; a check is a plain function
returning `CheckResult`s, so there is no framework to learn.
"""

from shopflow.quality.gate import (
    check_and_record,
    curated_dates,
    gated_load,
    record_results,
    run_checks,
)
from shopflow.quality.results import CheckResult, QualityGateError, QualityReport, Severity

__all__ = [
    "CheckResult",
    "QualityGateError",
    "QualityReport",
    "Severity",
    "check_and_record",
    "curated_dates",
    "gated_load",
    "record_results",
    "run_checks",
]
