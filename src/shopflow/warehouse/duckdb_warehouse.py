"""The local warehouse: one DuckDB file; each load is one transaction on a copy that replaces it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import shutil
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

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
from shopflow.warehouse.schema import (
    HISTORY_TABLES,
    MONEY_PLACES,
    TABLES,
    ColumnType,
    conform,
    history_spec,
    table_spec,
)

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
        """Create every warehouse table that does not exist yet, and bring money columns of a
        warehouse made before money was exact to DECIMAL (rounded to the paisa)."""
        for spec in (*TABLES.values(), *HISTORY_TABLES.values()):
            self._con.execute(spec.duckdb_ddl())
        money = {
            (spec.name, name)
            for spec in TABLES.values()
            for name, kind in spec.columns
            if kind is ColumnType.NUMERIC
        }
        floats = self._con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type IN ('DOUBLE', 'FLOAT')"
        ).fetchall()
        for table, column in floats:
            if (table, column) in money:
                self._con.execute(
                    f'ALTER TABLE "{table}" ALTER "{column}" TYPE DECIMAL(38, 9) '
                    f'USING ROUND("{column}", {MONEY_PLACES})'
                )

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

    def append(self, table: str, data: pa.Table) -> int:
        """Append `data` to the history table `table` in one transaction."""
        spec = history_spec(table)
        rows = conform(spec, data)
        name = f"_incoming_{next(_incoming)}"
        self._con.begin()
        try:
            self._con.register(name, rows)
            self._con.execute(f"INSERT INTO {spec.name} BY NAME SELECT * FROM {name}")
            self._con.unregister(name)
            self._con.commit()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self._con.rollback()
            raise
        return int(rows.num_rows)

    def loaded_dates(self, table: str) -> set[date]:
        """The dates a date-partitioned table holds rows for."""
        rows = self._con.execute(f'SELECT DISTINCT date FROM "{table}"').fetchall()
        return {row[0] for row in rows if row[0] is not None}

    def create_view(self, name: str, select_sql: str) -> None:
        """Create or replace a view."""
        self._con.execute(f'CREATE OR REPLACE VIEW "{name}" AS\n{select_sql}')

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
def _exclusive_load(path: Path) -> Iterator[None]:
    """One load of the file at `path` at a time, whichever home or lake it comes from (`flock`
    on a sidecar file, released by the kernel however the holder dies)."""
    lock_path = path.with_name(f".{path.name}.load-lock")
    with lock_path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise WarehouseError(
                f"another load is writing {path} ({holder}); try again later"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shared_hold(path: Path) -> duckdb.DuckDBPyConnection | None:
    """A read-only connection to the live file, held through the load: DuckDB's shared lock
    keeps other processes from opening it for writing (their changes would be lost with the old
    file), while readers still can."""
    if not path.exists():
        return None
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            raise WarehouseError(
                f"{path} is open for writing by another process; close it and load again"
            ) from None
        raise WarehouseError(f"cannot read the warehouse {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _keep_owner(source: Path, copy: Path) -> None:
    info = source.stat()
    shutil.copymode(source, copy)
    if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (0, 0):
        os.chown(copy, info.st_uid, info.st_gid)  # root loading someone else's warehouse


@contextlib.contextmanager
def replaced_on_success(path: Path) -> Iterator[Path]:
    """A private copy of the DuckDB file `path` to write, which replaces `path` in one rename
    when the block succeeds and is deleted when it fails.

    The live file is never opened for writing, so a load that dies (kill -9, a full disk mid
    checkpoint) cannot leave it half-written, and readers can open it while a load runs. One load
    per file at a time (a sidecar lock), and no other writer while it runs (a shared DuckDB lock
    held on the live file). The price is one copy of the file per load. Errors are one line
    naming `path`, never the private copy.
    """
    try:
        path = path.resolve()  # a symlinked warehouse: replace the file it points to, not the link
    except (OSError, RuntimeError) as exc:
        raise WarehouseError(f"cannot resolve the warehouse path {path}: {exc}") from None
    staging = path.with_name(f".{path.name}.loading")
    try:
        with _exclusive_load(path):
            for leftover in (staging, _wal(staging)):  # a killed load's copy
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                leftover.unlink(missing_ok=True)
            if _wal(path).exists():  # written by a writer that crashed
                try:
                    with contextlib.closing(duckdb.connect(str(path))) as recovering:
                        recovering.execute("CHECKPOINT")
                except duckdb.Error as exc:
                    raise WarehouseError(
                        f"cannot recover the write-ahead log beside {path}: {_first_line(exc)}"
                    ) from None
            hold = _shared_hold(path)
            try:
                if hold is not None:
                    shutil.copyfile(path, staging)
                    _keep_owner(path, staging)
                yield staging
                if _wal(staging).exists():
                    raise WarehouseError(f"the load left a write-ahead log: {path} not replaced")
                _fsync(staging)
                os.replace(staging, path)
                _fsync(path.parent)
            finally:
                if hold is not None:
                    hold.close()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise WarehouseError(
                f"no space left on the device of {path}: load failed, the warehouse is unchanged"
            ) from None
        raise WarehouseError(
            f"cannot write the warehouse {path}: {exc.strerror or type(exc).__name__}; "
            "load failed, the warehouse is unchanged"
        ) from None
    except duckdb.Error as exc:
        message = _first_line(exc).replace(str(staging), str(path))
        raise WarehouseError(f"load failed, the warehouse is unchanged: {message}") from None
    except WarehouseError as exc:  # raised inside the block: name the warehouse, not the copy
        raise WarehouseError(str(exc).replace(str(staging), str(path))) from exc.__cause__
    finally:
        for leftover in (staging, _wal(staging)):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
