"""The live part of the warehouse: `user_behavior_current` = the batch's `user_behavior` plus the
stream's newer rows.

`shopflow stream` writes `curated/user_behavior_live/date=D/hour=HH/part-mMM.parquet` (the
`user_behavior` columns; `date` and `hour` in the path only; one file per 5 minutes of an hour,
`shopflow.transform.stream_slices`) each micro-batch, through the lake's atomic file replace. The
DuckDB warehouse reads those files through a view; the stream never opens the warehouse. Why:
DuckDB allows one read-write process per database file, and while one process holds it no other
process can open it, not even read-only. A stream that wrote into the DuckDB file would lock out
`shopflow load` and the dashboard for as long as it runs; Parquet in the lake has no such holder,
so the stream, the hourly load and every reader run side by side.

An event is in the live part or the batch part, never both: the view takes every `user_behavior`
row and each live row whose `event_id` `user_behavior` does not have. The hourly batch is the
system of record; its load supersedes a live row as soon as it holds the event.

BigQuery (profile gcp): the stream also streams each micro-batch's live rows into a BigQuery table
of the same name, and the same view is made over it (`shopflow.warehouse.bigquery_live` says why
not an external table over the Parquet). `live_sink` is what the stream calls per micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from shopflow.lake import LakeLayout, list_data_files
from shopflow.lake.io import is_local, resolve, write_parquet_atomic
from shopflow.settings import Profile, Settings
from shopflow.warehouse.base import Warehouse
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.schema import MONEY_PLACES, TABLES, ColumnType, duckdb_type

#: The curated table the stream writes for the warehouse.
LIVE_TABLE: Final = "user_behavior_live"
#: The warehouse view: batch rows plus live rows the batch does not hold yet.
CURRENT_VIEW: Final = "user_behavior_current"
#: Columns of the live files (and of the view): exactly `user_behavior`'s.
LIVE_COLUMNS: Final = TABLES["user_behavior"].column_names
#: A zero-row file that keeps the live glob non-empty before the stream's first write (DuckDB
#: refuses a view over a glob matching no file). The epoch date holds no event.
PLACEHOLDER_DATE: Final = "1970-01-01"


def _local_lake(settings: Settings) -> bool:
    fs, _ = resolve(LakeLayout.from_settings(settings).root)
    return is_local(fs)


def live_file_schema() -> pa.Schema:
    """Columns of a live Parquet file: `user_behavior`'s without `date` (it is in the path)."""
    schema = TABLES["user_behavior"].lake_arrow_schema()
    return pa.schema([f for f in schema if f.name != "date"])


def live_glob(settings: Settings) -> str:
    """The glob every live Parquet file matches."""
    return f"{LakeLayout.from_settings(settings).curated_root(LIVE_TABLE)}/**/*.parquet"


def ensure_live_placeholder(settings: Settings) -> None:
    """Write the zero-row placeholder file if the live table has no file at all."""
    root = LakeLayout.from_settings(settings).curated_root(LIVE_TABLE)
    if list_data_files(root):
        return
    url = f"{root}/date={PLACEHOLDER_DATE}/hour=00/part-00000.parquet"
    write_parquet_atomic(live_file_schema().empty_table(), url)


def live_select_sql(settings: Settings) -> str:
    """DuckDB SELECT of every live row with the `user_behavior` columns and types."""
    casts = ",\n    ".join(
        # Money leaves the lake as a float: rounded to the paisa, as the load does.
        f'CAST(ROUND("{name}", {MONEY_PLACES}) AS {duckdb_type(kind)}) AS "{name}"'
        if kind is ColumnType.NUMERIC
        else f'CAST("{name}" AS {duckdb_type(kind)}) AS "{name}"'
        for name, kind in TABLES["user_behavior"].columns
    )
    glob = live_glob(settings).replace("'", "''")
    return (
        f"SELECT\n    {casts}\n"
        f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    )


def current_view_sql(settings: Settings) -> str:
    """DuckDB body of `user_behavior_current`."""
    columns = ", ".join(f'"{c}"' for c in LIVE_COLUMNS)
    return (
        f"SELECT {columns} FROM user_behavior\n"
        f"UNION ALL\n"
        f"SELECT {columns} FROM ({live_select_sql(settings)}) AS live\n"
        f"WHERE NOT EXISTS (SELECT 1 FROM user_behavior AS b WHERE b.event_id = live.event_id)"
    )


def create_current_view(warehouse: Warehouse, settings: Settings) -> list[str]:
    """Create or replace `user_behavior_current`; returns what it created.

    On BigQuery, over the live table (created if absent; if that fails, e.g. a table of another
    kind holds its name, the view is made of the batch part alone and the WarehouseError raised);
    on DuckDB, over the live Parquet, unless the lake is one DuckDB cannot glob (`gs://`): then
    nothing is created.
    """
    if warehouse.dialect == "bigquery":
        from shopflow.warehouse import bigquery_live
        from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse

        if not isinstance(warehouse, BigQueryWarehouse):
            raise TypeError(
                f"a bigquery-dialect warehouse must be a BigQueryWarehouse: {warehouse}"
            )
        try:
            bigquery_live.ensure_live_table(warehouse)
        except WarehouseError:
            # The batch part stays queryable under the view's name while the live table's name
            # is taken (or BigQuery refused to make it); the caller hears why.
            warehouse.create_view(CURRENT_VIEW, bigquery_live.batch_only_view_sql(warehouse))
            raise
        warehouse.create_view(CURRENT_VIEW, bigquery_live.current_view_sql(warehouse))
        return [LIVE_TABLE, CURRENT_VIEW]
    if not _local_lake(settings):
        return []
    ensure_live_placeholder(settings)
    warehouse.create_view(CURRENT_VIEW, current_view_sql(settings))
    return [CURRENT_VIEW]


def ensure_current_view(settings: Settings) -> None:
    """Create the local warehouse's tables and `user_behavior_current` (before any load)."""
    from shopflow.warehouse.load import open_warehouse

    warehouse = open_warehouse(settings)
    try:
        create_current_view(warehouse, settings)
    finally:
        warehouse.close()


#: What the stream calls with each micro-batch's id and live rows, besides its lake writes.
LiveSink = Callable[[int, pa.Table], object]


@contextmanager
def live_sink(settings: Settings, keep_days: int) -> Iterator[LiveSink | None]:
    """Where the stream sends live rows beyond the lake: None on DuckDB (its view reads the
    Parquet); on BigQuery (profile gcp), the live table, its partitions kept `keep_days` and only
    rows of those days streamed, with `user_behavior_current` made at the start (so it is there
    before the first load). A live table that cannot be made or used is a one-line error here,
    before the stream starts."""
    if settings.profile is not Profile.GCP:
        yield None
        return
    from shopflow.warehouse import bigquery_live
    from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse
    from shopflow.warehouse.load import open_warehouse

    warehouse = open_warehouse(settings)
    if not isinstance(warehouse, BigQueryWarehouse):
        raise TypeError(f"profile gcp opened a {type(warehouse).__name__}, not BigQuery")
    try:
        create_current_view(warehouse, settings)
        bigquery_live.ensure_live_table(warehouse, keep_days)
        yield lambda batch_id, rows: bigquery_live.write_live_rows(
            warehouse, rows, batch_id, since=bigquery_live.streamable_since(keep_days)
        )
    finally:
        warehouse.close()


def recent_live_rows(settings: Settings, minutes: float = 15.0) -> list[dict[str, Any]]:
    """Rows of `user_behavior_current` whose `event_ts` is in the last `minutes`, newest first,
    read without holding the warehouse: an in-memory DuckDB over the live Parquet, plus the local
    warehouse attached read-only when no other process holds it (else live rows only)."""
    import duckdb

    if settings.profile is Profile.GCP or not _local_lake(settings):
        raise WarehouseError("recent live rows are read from a local lake only (profile local)")
    ensure_live_placeholder(settings)
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    columns = ", ".join(f'"{c}"' for c in LIVE_COLUMNS)
    con = duckdb.connect()
    try:
        batch = None
        path = settings.home / "warehouse.duckdb"
        if Path(path).is_file():
            try:
                con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS wh (READ_ONLY)")
                batch = "wh.main.user_behavior"
            except duckdb.Error:
                batch = None  # held by a load: the live rows still answer
        live = f"({live_select_sql(settings)}) AS live"
        if batch is None:
            sql = f"SELECT {columns} FROM {live} WHERE event_ts >= ?"
            params: list[Any] = [since]
        else:
            sql = (
                f"SELECT {columns} FROM {batch} WHERE event_ts >= ?\nUNION ALL\n"
                f"SELECT {columns} FROM {live} WHERE event_ts >= ? AND NOT EXISTS "
                f"(SELECT 1 FROM {batch} AS b WHERE b.event_id = live.event_id)"
            )
            params = [since, since]
        cursor = con.execute(f"SELECT * FROM ({sql}) ORDER BY event_ts DESC", params)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
