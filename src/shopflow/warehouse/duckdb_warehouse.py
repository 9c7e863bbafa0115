"""The local warehouse: one DuckDB file; each load is one transaction on a copy that replaces it."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from shopflow.metrics.views import METRIC_VIEWS, create_view_sql
from shopflow.warehouse.base import (
    ArrowData,
    Dialect,
    PartitionKey,
    TableLoad,
    check_partitions,
    check_rows_in_partitions,
    materialise,
    partition_predicate,
)
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.schema import TABLES, table_spec

_incoming = itertools.count()


class DuckDBWarehouse:
    """The warehouse in a DuckDB database file (or `:memory:`)."""

    dialect: Dialect = "duckdb"

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = path
        try:
            self._con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open the DuckDB warehouse {path}: {exc}") from None
        self._con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            self.ensure_tables()

    def ensure_tables(self) -> None:
        """Create every warehouse table that does not exist yet."""
        for spec in TABLES.values():
            self._con.execute(spec.duckdb_ddl())

    def load_batch(self, loads: Sequence[TableLoad]) -> list[int]:
        """Apply `loads` in one transaction: every table replaced, or none (previous state kept)."""
        for load in loads:
            check_partitions(table_spec(load.table), load.partitions)
        inserted: list[int] = []
        self._con.begin()
        try:
            for load in loads:
                inserted.append(self._replace(load.table, load.partitions, load.read()))
            self._con.commit()
        except BaseException:
            # A failed COMMIT (a full disk) has already ended the transaction; the first error is
            # the one to report, not "cannot rollback - no transaction is active".
            with contextlib.suppress(duckdb.Error):
                self._con.rollback()
            raise
        return inserted

    def load_partitions(
        self, table: str, partitions: Sequence[PartitionKey] | None, data: ArrowData
    ) -> int:
        """Replace `partitions` of `table` (whole table when None) with `data`, in one transaction."""
        keys = None if partitions is None else tuple(partitions)
        return self.load_batch([TableLoad(table, keys, lambda: data)])[0]

    def _replace(
        self, table: str, partitions: Sequence[PartitionKey] | None, data: ArrowData
    ) -> int:
        spec = table_spec(table)
        rows = materialise(spec, data)
        check_rows_in_partitions(spec, rows, partitions)
        self._con.execute(f"DELETE FROM {spec.name} WHERE {partition_predicate(partitions)}")
        name = f"_incoming_{next(_incoming)}"
        self._con.register(name, rows)
        try:
            self._con.execute(f"INSERT INTO {spec.name} BY NAME SELECT * FROM {name}")
        finally:
            self._con.unregister(name)
        return int(rows.num_rows)

    def create_views(self) -> list[str]:
        """Create or replace the metric views (SQL transpiled from BigQuery by SQLGlot)."""
        for view in METRIC_VIEWS:
            self._con.execute(create_view_sql(view, "duckdb"))
        return [view.name for view in METRIC_VIEWS]

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a DuckDB query as dicts."""
        cursor = self._con.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        """Close the connection (the file stays)."""
        self._con.close()


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replaced_on_success(path: Path) -> Iterator[Path]:
    """A private copy of the DuckDB file `path` to write, which replaces `path` in one rename
    when the block succeeds and is deleted when it fails.

    The live file is never opened for writing, so a load that dies (kill -9, a full disk mid
    checkpoint) cannot leave it half-written, and readers can open it while a load runs. The
    price is one copy of the file per load. Callers hold the lake's writer lock.
    """
    path = path.resolve()  # a symlinked warehouse: replace the file it points to, not the link
    staging = path.with_name(f".{path.name}.loading")
    for leftover in (staging, _wal(staging)):  # a killed load's copy
        leftover.unlink(missing_ok=True)
    if _wal(path).exists():  # written by a version that loaded in place and then crashed
        with contextlib.closing(duckdb.connect(str(path))) as recovering:
            recovering.execute("CHECKPOINT")
    try:
        if path.exists():
            shutil.copyfile(path, staging)
            shutil.copymode(path, staging)
        yield staging
        if _wal(staging).exists():
            raise WarehouseError(f"the load left a write-ahead log beside {staging}: not replaced")
        _fsync(staging)
        os.replace(staging, path)
        _fsync(path.parent)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise WarehouseError(
                f"no space left on the device of {path}: load failed, the warehouse is unchanged"
            ) from None
        raise
    finally:
        for leftover in (staging, _wal(staging)):
            leftover.unlink(missing_ok=True)
