"""The curated partitions a run of the checks reads, as tables of one in-memory DuckDB connection.

The lake is read with the lake's own reader (local files or GCS alike), only the columns the
checks need; a column the files lack is read as nulls (so `not_null` reports it instead of a
query failing). The checks are SQL over these tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from shopflow.lake import (
    LakeLayout,
    Partition,
    list_data_files,
    list_partitions,
    read_dataset,
    resolve,
)
from shopflow.warehouse.schema import table_spec, to_warehouse_type

#: The curated tables the checks read and the columns they read. Dated tables are read whole
#: (their warehouse columns, declared in `shopflow.schemas`) for the checked dates only;
#: snapshot tables (`products_clean`, `users_enriched`) whole, the few columns the checks need.
COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    **{
        name: table_spec(name).column_names
        for name in ("events_clean", "user_behavior", "orders_enriched", "order_reconciliation")
    },
    "products_clean": ("product_id", "product_name"),
    "users_enriched": ("user_id",),
    # Every key the catalogue ever had (deleted ones too): what events may refer to.
    "products_history": ("product_id",),
    "users_history": ("user_id",),
}
SNAPSHOT_TABLES: Final = ("products_clean", "users_enriched", "products_history", "users_history")
#: Curated tables that are not warehouse tables: read as the lake has them (keys are strings).
_LAKE_ONLY: Final = ("products_history", "users_history")


@dataclass(frozen=True, slots=True)
class CuratedData:
    """A DuckDB connection holding the checked partitions as tables named like the lake's, and
    which tables had any data file at all."""

    con: duckdb.DuckDBPyConnection
    dates: tuple[date, ...]
    present: frozenset[str]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a query over the checked tables."""
        return self.con.execute(sql).fetchall()


def _with_columns(table: pa.Table, name: str, columns: Sequence[str]) -> pa.Table:
    """`table` with exactly `columns`, in the warehouse types; missing ones as nulls."""
    schema = table_spec(name).arrow_schema()
    arrays = []
    for column in columns:
        kind = schema.field(column).type
        if column in table.column_names:
            arrays.append(to_warehouse_type(table.column(column), kind))
        else:
            arrays.append(pa.nulls(table.num_rows, kind))
    return pa.Table.from_arrays(arrays, names=list(columns))


def read_curated(layout: LakeLayout, name: str, dates: Sequence[date]) -> tuple[pa.Table, bool]:
    """The checked rows of one curated table, and whether the lake has any file of it."""
    columns = COLUMNS[name]
    if name in SNAPSHOT_TABLES:
        urls = [layout.curated_root(name)]
    else:
        urls = [layout.curated_partition(name, d) for d in dates]
    urls = [url for url in urls if list_data_files(url)]
    if name in _LAKE_ONLY:
        if not urls:
            return pa.table({c: pa.array([], pa.string()) for c in columns}), False
        return read_dataset(urls, columns=list(columns)), True
    if not urls:
        empty = table_spec(name).arrow_schema().empty_table()
        return _with_columns(empty, name, columns), False
    read = read_dataset(urls, columns=list(columns))
    return _with_columns(read, name, columns), True


@contextmanager
def open_curated(layout: LakeLayout, dates: Sequence[date]) -> Iterator[CuratedData]:
    """The checked partitions of `dates` (and the snapshot tables) in a fresh DuckDB connection."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        present = set()
        for name in COLUMNS:
            table, exists = read_curated(layout, name, dates)
            con.register(f"_arrow_{name}", table)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM _arrow_{name}")
            con.unregister(f"_arrow_{name}")
            if exists:
                present.add(name)
        yield CuratedData(con, tuple(dates), frozenset(present))
    finally:
        con.close()


def _file_rows(url: str) -> int:
    fs, path = resolve(url)
    with fs.open(path, "rb") as handle:
        return int(pq.read_metadata(handle).num_rows)


def hourly_event_counts(
    partitions: Sequence[Partition], dates: Sequence[date]
) -> dict[tuple[date, int], int]:
    """Rows of each hour partition (of `events_clean`) on `dates`, from the Parquet footers."""
    wanted = set(dates)
    counts: dict[tuple[date, int], int] = {}
    for partition in partitions:
        if partition.date in wanted and partition.hour is not None:
            key = (partition.date, partition.hour)
            counts[key] = sum(_file_rows(f.url) for f in partition.files)
    return counts


def event_partitions(layout: LakeLayout) -> list[Partition]:
    """Every hour partition of `events_clean`, oldest first."""
    found = [p for p in list_partitions(layout.curated_root("events_clean")) if p.date]
    return sorted(found, key=lambda p: (p.date or date.min, p.hour or 0))
