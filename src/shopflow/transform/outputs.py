"""The ETL's outputs, computed by the engine and committed partition by partition.

On DuckDB an output is collected as Arrow and committed by the lake layer from there (the engine
runs in this process anyway). On Spark nothing is collected to the driver: Spark's own partitioned
writer writes each output from the executors into the run's staging prefix (one task, hence one
file, per partition), and the driver commits each staged file into its partition
(`shopflow.lake.staging`). Both commit every partition atomically on its own, so what a reader
sees, and what a killed run leaves, is the same on either engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from shopflow.lake import LakeLayout, delete_partition, list_data_files, replace_partition
from shopflow.lake.staging import (
    StagedKey,
    commit_staged_file,
    staged_files,
    staged_row_count,
)
from shopflow.transform import engine
from shopflow.transform.curated_tables import REJECTS_SOURCE, DataFrame
from shopflow.transform.lake_io import (
    partition_keys,
    write_changed_partitions,
    write_partitions,
    write_rejects,
    write_snapshot,
)

#: Partition columns of daily and hourly outputs.
DAILY: tuple[str, ...] = ("date",)
HOURLY: tuple[str, ...] = ("date", "hour")


@dataclass
class Output:
    """One computed output: its rows as Arrow (DuckDB) or its staged files (Spark)."""

    schema: pa.Schema
    rows: int
    table: pa.Table | None = None
    staged: dict[StagedKey, str] = field(default_factory=dict)

    def keys(self, hourly: bool) -> list[tuple[date, int | None]]:
        """The (date, hour) partitions that have rows (hour None for daily outputs)."""
        if self.table is not None:
            return partition_keys(self.table, hourly)
        return sorted((d, h if hourly else None) for d, h in self.staged if d is not None)

    def empty(self) -> pa.Table:
        """No rows, this output's columns (what an empty partition is written with)."""
        return self.schema.empty_table()


def compute_output(df: DataFrame, staging_url: str, partition_by: Sequence[str]) -> Output:
    """Run the engine on `df`: collect it (DuckDB) or write it into `staging_url` (Spark),
    partitioned by `partition_by` (none: one file)."""
    if engine.engine_of(df) != "spark":
        table = engine.to_arrow(df)
        return Output(schema=table.schema, rows=table.num_rows, table=table)
    from pyspark.sql.pandas.types import to_arrow_schema

    columns = list(partition_by)
    if columns:
        # One task per partition's rows: the partition is committed as one file.
        writer = df.repartition(*columns).write.partitionBy(*columns)
    else:
        writer = df.coalesce(1).write
    writer.mode("overwrite").option("compression", "zstd").parquet(staging_url)
    staged = staged_files(staging_url)
    schema = to_arrow_schema(df.schema, timezone="UTC")
    schema = pa.schema([f for f in schema if f.name not in columns])
    rows = sum(staged_row_count(url) for url in staged.values())
    return Output(schema=schema, rows=rows, staged=staged)


def _commit(output: Output, key: StagedKey, url: str, *, delete_empty: bool) -> str:
    staged = output.staged.get(key)
    if staged is not None:
        return commit_staged_file(staged, url)
    if delete_empty:
        delete_partition(url)
        return f"{url} (deleted)"
    return replace_partition(output.empty(), url)


def write_output_partitions(
    output: Output,
    name: str,
    layout: LakeLayout,
    keys: Iterable[tuple[date, int | None]],
    *,
    delete_empty: bool = False,
) -> list[str]:
    """Replace the given partitions of a curated table with their rows of `output`; with
    `delete_empty`, a partition left without rows is deleted instead of written empty."""
    if output.table is not None:
        return write_partitions(output.table, name, layout, keys, delete_empty=delete_empty)
    return [
        _commit(
            output,
            (day, hour),
            layout.curated_partition(name, day, hour),
            delete_empty=delete_empty,
        )
        for day, hour in keys
    ]


def write_output_snapshot(output: Output, name: str, layout: LakeLayout) -> str:
    """Replace a whole-table snapshot: `curated/<table>/part-00000.parquet`."""
    if output.table is not None:
        return write_snapshot(output.table, name, layout)
    return _commit(output, (None, None), layout.curated_root(name), delete_empty=False)


def write_output_rejects(output: Output, layout: LakeLayout, dates: Iterable[date]) -> list[str]:
    """Replace the ETL dead letters of each date (an empty date clears an older file)."""
    if output.table is not None:
        return write_rejects(output.table, layout, dates)
    written = []
    for day in dates:
        url = layout.deadletter_partition(REJECTS_SOURCE, day)
        if (day, None) in output.staged or list_data_files(url):
            written.append(_commit(output, (day, None), url, delete_empty=False))
    return written


def write_changed_output(
    session: Any, df: DataFrame, name: str, layout: LakeLayout, staging_url: str
) -> tuple[list[str], int]:
    """Replace the date partitions of a curated table whose rows differ from `df`'s and delete
    those it no longer has; return the files written and `df`'s row count.

    On Spark the comparison runs on the executors: a count and an order-free fingerprint (the sum
    of each row's 64-bit hash) per date of the new rows and of the stored ones; only those small
    per-date results reach the driver, and only the changed dates are written.
    """
    if engine.engine_of(df) != "spark":
        table = engine.to_arrow(df)
        return write_changed_partitions(table, name, layout), table.num_rows
    from pyspark.sql import functions as F

    columns = [c for c in df.columns if c != "date"]

    def fingerprints(rows: DataFrame) -> dict[date, tuple[int, Any]]:
        summary = rows.groupBy("date").agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.xxhash64(*columns).cast("decimal(38,0)")).alias("h"),
        )
        return {r["date"]: (r["n"], r["h"]) for r in summary.collect()}

    new = fingerprints(df)
    root = layout.curated_root(name)
    stored: dict[date, tuple[int, Any]] = {}
    if list_data_files(root):
        stored_df = session.read.schema(df.schema).option("basePath", root).parquet(root)
        stored = fingerprints(stored_df)
    changed = sorted(day for day, print_ in new.items() if stored.get(day) != print_)
    written = [f"{u} (deleted)" for u in _delete_gone(layout, name, set(stored) - set(new))]
    if changed:
        output = compute_output(df.where(F.col("date").isin(changed)), staging_url, DAILY)
        written += write_output_partitions(output, name, layout, [(d, None) for d in changed])
    return written, sum(n for n, _ in new.values())


def _delete_gone(layout: LakeLayout, name: str, days: set[date]) -> list[str]:
    urls = [layout.curated_partition(name, day) for day in sorted(days)]
    for url in urls:
        delete_partition(url)
    return urls
