"""The DuckDB side of the engine's I/O edge: Hive-partitioned Parquet as a view, `gs://` through
the lake's own file system, and the objects the engine makes in the database (`engine` uses it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pyarrow as pa

from shopflow.lake import PARTITION_TYPES

#: Prefix of every table and view the engine creates in a DuckDB database.
OBJECT_PREFIX: Final = "_shopflow_"


def read_parquet_view(conn: Any, paths: Sequence[str], schema: pa.Schema, name: str) -> str:
    """Create view `name` over Parquet files or Hive partition folders with `schema`'s columns
    (partition columns typed as `PARTITION_TYPES`, a column a file lacks null); return `name`."""
    files = [p if p.endswith(".parquet") else f"{p.rstrip('/')}/**/*.parquet" for p in paths]
    file_list = ", ".join(sql_string(f) for f in files)
    # Partition values are read as text and cast below: `hive_types` would fail for a name that is
    # a data column rather than a partition (products' own `date` under `cursor_date=` folders).
    options = "union_by_name = true, hive_partitioning = true, hive_types_autocast = false"
    source = f"read_parquet([{file_list}], {options})"
    register_remote_filesystems(conn, files)
    present = {row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}

    def column(f: pa.Field) -> str:
        if f.name not in present:
            return f'CAST(NULL AS {duckdb_type(f.type)}) AS "{f.name}"'
        if f.name in PARTITION_TYPES:
            return f'CAST("{f.name}" AS {duckdb_type(PARTITION_TYPES[f.name])}) AS "{f.name}"'
        return f'"{f.name}"'

    columns = ", ".join(column(f) for f in schema)
    conn.execute(f'CREATE VIEW "{name}" AS SELECT {columns} FROM {source}')
    return name


def engine_objects(conn: Any) -> set[tuple[str, str]]:
    """The (kind, name) of every table and view the engine made in `conn` (`OBJECT_PREFIX`)."""
    rows = conn.execute(
        "SELECT 'TABLE', table_name FROM duckdb_tables() WHERE table_name LIKE ? "
        "UNION ALL SELECT 'VIEW', view_name FROM duckdb_views() WHERE view_name LIKE ?",
        [f"{OBJECT_PREFIX}%", f"{OBJECT_PREFIX}%"],
    ).fetchall()
    return {(str(kind), str(name)) for kind, name in rows}


def drop_objects(conn: Any, objects: set[tuple[str, str]]) -> None:
    """Drop the given (kind, name) tables and views; views first (they may read the tables)."""
    for kind, name in sorted(objects, key=lambda o: o[0] != "VIEW"):
        conn.execute(f'DROP {kind} IF EXISTS "{name}"')


def register_remote_filesystems(conn: Any, urls: Sequence[str]) -> None:
    """Let DuckDB read `gs://` (any fsspec URL) through the lake's own file system.

    DuckDB's `httpfs` would be a download at first use (none here) and signs GCS requests with
    HMAC keys, not the credentials (or `STORAGE_EMULATOR_HOST`) the lake uses.
    """
    import fsspec

    from shopflow.lake.io import engine_filesystem

    registered = set(conn.list_filesystems())
    for url in urls:
        protocol, _ = fsspec.core.split_protocol(url)
        if protocol in (None, "file"):
            continue
        fs = engine_filesystem(url)
        name = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if name not in registered:  # DuckDB registers a file system under its first protocol
            conn.register_filesystem(fs)
            registered.add(name)


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type of an Arrow type (timestamps with a time zone)."""
    conn_type = {
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.float64(): "DOUBLE",
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.date32(): "DATE",
        pa.bool_(): "BOOLEAN",
    }.get(arrow_type)
    if conn_type is not None:
        return conn_type
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    raise ValueError(f"no DuckDB type for {arrow_type}")


def sql_string(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
