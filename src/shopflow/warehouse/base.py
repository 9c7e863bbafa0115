"""The one warehouse interface, the units a load is made of, and reading them from the lake."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol, TypeAlias

import pyarrow as pa

from shopflow.lake import LakeLayout, list_data_files, read_dataset
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.schema import Grain, TableSpec, conform, table_spec

Dialect = Literal["duckdb", "bigquery"]
ArrowData: TypeAlias = pa.Table | pa.RecordBatchReader


@dataclass(frozen=True, slots=True, order=True)
class PartitionKey:
    """A warehouse partition: a date, or one hour of it (hourly tables only)."""

    date: date
    hour: int | None = None

    def __str__(self) -> str:
        return self.date.isoformat() + ("" if self.hour is None else f" {self.hour:02d}h")


@dataclass(frozen=True, slots=True)
class TableLoad:
    """Replace `partitions` of `table` (all of it when None) with the rows `read()` returns.

    `read` is called inside the load's transaction, so a read that fails (a corrupt file) aborts
    the whole load.
    """

    table: str
    partitions: tuple[PartitionKey, ...] | None
    read: Callable[[], ArrowData]


class Warehouse(Protocol):
    """A warehouse shopflow loads curated tables into and reads metrics from."""

    dialect: Dialect

    def ensure_tables(self) -> None:
        """Create every table of `schema.TABLES` and `schema.HISTORY_TABLES` not there yet."""
        ...

    def load_batch(self, loads: Sequence[TableLoad]) -> list[int]:
        """Apply `loads` all-or-nothing; return the rows inserted per load."""
        ...

    def load_partitions(
        self, table: str, partitions: Sequence[PartitionKey] | None, data: ArrowData
    ) -> int:
        """Replace `partitions` of `table` (whole table when None) with `data`; rows inserted."""
        ...

    def append(self, table: str, data: pa.Table) -> int:
        """Append `data` to the history table `table` (all rows or none); rows appended."""
        ...

    def loaded_dates(self, table: str) -> set[date]:
        """The dates a date-partitioned table holds rows for."""
        ...

    def create_view(self, name: str, select_sql: str) -> None:
        """Create or replace the view `name` as `select_sql` (in this warehouse's dialect)."""
        ...

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Run `sql` (in this warehouse's dialect) and return the rows as dicts."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def check_partitions(spec: TableSpec, partitions: Sequence[PartitionKey] | None) -> None:
    """Reject partitions that do not fit the table's grain."""
    if partitions is None:
        return
    if spec.grain is Grain.WHOLE:
        raise WarehouseError(f"{spec.name} is not partitioned; load it whole (partitions=None)")
    for key in partitions:
        if key.hour is not None and spec.grain is not Grain.HOURLY:
            raise WarehouseError(f"{spec.name} is daily; {key} names an hour")
        if key.hour is not None and not 0 <= key.hour <= 23:
            raise WarehouseError(f"hour {key.hour} is not in 0..23")


def partition_predicate(partitions: Sequence[PartitionKey] | None) -> str:
    """A SQL condition (valid in DuckDB and BigQuery) matching the rows of `partitions`."""
    if partitions is None:
        return "TRUE"
    if not partitions:
        return "FALSE"
    terms = []
    for key in sorted(set(partitions)):
        term = f"date = DATE '{key.date.isoformat()}'"
        if key.hour is not None:
            term = f"({term} AND hour = {int(key.hour)})"
        terms.append(term)
    return " OR ".join(terms)


def materialise(spec: TableSpec, data: ArrowData) -> pa.Table:
    """Arrow input as one table in the warehouse schema of `spec`."""
    table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
    return conform(spec, table)


def check_rows_in_partitions(
    spec: TableSpec, table: pa.Table, partitions: Sequence[PartitionKey] | None
) -> None:
    """Refuse rows outside the partitions being replaced: they would survive the next replace."""
    if partitions is None or table.num_rows == 0:
        return
    wanted_days = {k.date for k in partitions if k.hour is None}
    wanted_hours = {(k.date, k.hour) for k in partitions if k.hour is not None}
    days = table.column("date").to_pylist()
    hours = table.column("hour").to_pylist() if spec.grain is Grain.HOURLY else [None] * len(days)
    for day, hour in set(zip(days, hours, strict=True)):
        if day in wanted_days or (day, hour) in wanted_hours:
            continue
        where = f"date {day}" + ("" if hour is None else f" hour {hour}")
        raise WarehouseError(f"{spec.name}: input has rows for {where}, outside the load")


def lake_reader(
    layout: LakeLayout, table: str, partitions: Sequence[PartitionKey] | None
) -> Callable[[], pa.Table]:
    """A reader of a curated table's partitions (whole table when None) in warehouse types."""
    spec = table_spec(table)

    def read() -> pa.Table:
        if partitions is None:
            urls = [layout.curated_root(table)]
        else:
            urls = [layout.curated_partition(table, k.date, k.hour) for k in partitions]
        urls = [url for url in urls if list_data_files(url)]
        if not urls:
            return spec.arrow_schema().empty_table()
        return conform(spec, read_dataset(urls))

    return read
