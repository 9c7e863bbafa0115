"""Incremental pull of the shop database's products and users into `raw/products/`, `raw/users/`.

Meant to run every 30 minutes. Spark reads PostgreSQL over JDBC (Debian's PostgreSQL driver), split
into parallel range reads by a hash of the key; without Spark, psycopg reads into Arrow.

What a pull reads (`shopflow.sources.shop_db` keeps the columns by trigger): the rows, and the
tombstones of deleted rows, whose writing transaction id `change_xid` is at or above the table's
floor (`SnapshotWatermark`). Before reading, the pull asks PostgreSQL for the oldest transaction
still running, `pg_snapshot_xmin(pg_current_snapshot())`; once the pull's file is durably written
the floor rises to that, and no further. A transaction still open during a pull has an id at or
above that bound (ids are handed out in order, and it is running), so the next pull reads its
rows whenever it commits, even though their `updated_at` is older than rows already landed. Rows
of a transaction below the bound had committed (or aborted) before the pull read, so it saw them.

The Spark partitions read on connections of their own, each in its own snapshot, later than the
bound's: each key is read by exactly one partition, from a snapshot that sees every transaction
below the bound, so a row version is either read by this pull or has a transaction id at or above
the bound and is read by the next. Rows re-read above the floor that were already landed are
skipped by key and `updated_at`; a pull with no source changes writes nothing. The psycopg path
takes the bound and reads in one REPEATABLE READ transaction, one snapshot.

A deleted row lands as a tombstone: its key, `deleted_at`, `updated_at` = `deleted_at`, the other
columns null. Each pull of a table becomes one raw file named from the range of `updated_at` it
holds; the table's watermark advances only after that file is durably written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pyspark.sql import DataFrame, SparkSession

from shopflow.contracts import RAW_PRODUCT_SCHEMA, RAW_USER_SCHEMA
from shopflow.errors import ServiceUnavailableError, ShopflowError
from shopflow.ingest.report import IngestReport
from shopflow.ingest.watermark import SnapshotWatermark, row_key
from shopflow.lake import LakeLayout, StateStore, write_parquet_atomic
from shopflow.lake.commit_log import register_files
from shopflow.settings import Settings
from shopflow.sources.shop_db import connect_shop_db

#: How far before its `updated_at` watermark a state written by the old timestamp watermark
#: resumes, for its one converting pull (the old watermark's overlap).
LEGACY_OVERLAP: Final = timedelta(minutes=5)

#: The column of the pull's result that carries each row's writing transaction (not landed).
_XID_COLUMN: Final = "change_xid"

_SNAPSHOT_XMIN_SQL: Final = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"


@dataclass(frozen=True, slots=True)
class CatalogTable:
    """One table of the shop database and how it lands."""

    name: str
    key: str
    schema: pa.Schema
    read_partitions: int

    @property
    def state_name(self) -> str:
        """Its watermark's name under `_state/`."""
        return f"catalog_{self.name}_watermark"

    @property
    def tombstones(self) -> str:
        """The table its deletes leave tombstones in."""
        return f"{self.name}_deleted"

    @property
    def columns(self) -> list[str]:
        """Columns read from the database (all but the lake's own `ingest_ts`)."""
        return [name for name in self.schema.names if name != "ingest_ts"]


PRODUCTS: Final = CatalogTable("products", "product_id", RAW_PRODUCT_SCHEMA, read_partitions=4)
USERS: Final = CatalogTable("users", "user_id", RAW_USER_SCHEMA, read_partitions=2)
CATALOG_TABLES: Final = (PRODUCTS, USERS)


def jdbc_options(source_db_url: str) -> tuple[str, dict[str, str]]:
    """The JDBC URL and connection properties for a `postgresql://` DSN."""
    try:
        parts = conninfo_to_dict(source_db_url)
    except Exception as exc:
        raise ShopflowError(f"SHOPFLOW_SOURCE_DB_URL is not a PostgreSQL URL: {exc}") from None
    host = parts.get("host") or "127.0.0.1"
    port = parts.get("port") or "5432"
    dbname = parts.get("dbname") or "postgres"
    properties = {"driver": "org.postgresql.Driver", "user": str(parts.get("user") or "postgres")}
    if parts.get("password"):
        properties["password"] = str(parts["password"])
    return f"jdbc:postgresql://{host}:{port}/{dbname}", properties


def changes_query(table: CatalogTable, xid_floor: int, since: datetime) -> sql.Composed:
    """Rows and tombstones of `table` written by transactions `>= xid_floor`, at or after `since`.

    Columns: `table.columns`, then `change_xid` as a bigint.
    """
    floor = sql.SQL("{}::xid8").format(sql.Literal(str(xid_floor)))
    since_ts = sql.SQL("{}::timestamptz").format(sql.Literal(since.astimezone(UTC).isoformat()))
    xid = sql.SQL("change_xid::text::bigint AS {}").format(sql.Identifier(_XID_COLUMN))
    live = [
        sql.SQL("NULL::timestamptz AS deleted_at") if name == "deleted_at" else sql.Identifier(name)
        for name in table.columns
    ]
    tombstone = [
        sql.Identifier(name)
        if name in (table.key, "deleted_at")
        else sql.SQL("deleted_at AS updated_at")
        if name == "updated_at"
        else sql.SQL("NULL AS {}").format(sql.Identifier(name))
        for name in table.columns
    ]
    return sql.SQL(
        "SELECT {live}, {xid} FROM {table} WHERE change_xid >= {floor} AND updated_at >= {since} "
        "UNION ALL "
        "SELECT {tombstone}, {xid} FROM {tombstones} "
        "WHERE change_xid >= {floor} AND deleted_at >= {since}"
    ).format(
        live=sql.SQL(", ").join(live),
        tombstone=sql.SQL(", ").join(tombstone),
        xid=xid,
        table=sql.Identifier(table.name),
        tombstones=sql.Identifier(table.tombstones),
        floor=floor,
        since=since_ts,
    )


#: Errors of the pull's queries that `_lost_database` turns into one line.
_DATABASE_ERRORS: Final = (
    psycopg.OperationalError,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
)


def _lost_database(table: CatalogTable, exc: psycopg.Error) -> ServiceUnavailableError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        return ServiceUnavailableError(
            f"the shop database lacks the change tracking of {table.name} ({first}): "
            "run ensure_shop_db (`shopflow seed`) to create or migrate its schema"
        )
    return ServiceUnavailableError(
        f"lost the shop database mid-pull of {table.name} ({first}): nothing was landed and "
        "the watermark is unchanged; run the pull again"
    )


def snapshot_xmin_and_query(
    settings: Settings, table: CatalogTable, xid_floor: int, since: datetime
) -> tuple[int, str]:
    """The oldest transaction id still running now (every lower id has committed or aborted),
    and `changes_query` as text for Spark."""
    try:
        with connect_shop_db(settings) as conn:
            row = conn.execute(_SNAPSHOT_XMIN_SQL).fetchone()
            query = changes_query(table, xid_floor, since)
            # Planned here first: a schema without change tracking fails in one line, not as
            # Spark's Java stack trace.
            conn.execute(sql.SQL("SELECT * FROM ({}) AS changed LIMIT 0").format(query))
            text = query.as_string(conn)
    except _DATABASE_ERRORS as exc:
        raise _lost_database(table, exc) from None
    assert row is not None
    return int(row[0]), text


def extract_changed_rows(
    spark: SparkSession, source_db_url: str, query: str, table: CatalogTable
) -> DataFrame:
    """The rows of `query` (a `changes_query`), read by `table.read_partitions` parallel queries."""
    url, properties = jdbc_options(source_db_url)
    n = table.read_partitions
    predicates = [f"mod(abs(hashtext({table.key})), {n}) = {i}" for i in range(n)]
    return spark.read.jdbc(
        url, f"({query}) AS changed", predicates=predicates, properties=properties
    )


def extract_changed_rows_arrow(
    settings: Settings, table: CatalogTable, xid_floor: int, since: datetime
) -> tuple[pa.Table, int]:
    """The rows of `changes_query` read with psycopg straight into Arrow, and the snapshot's xmin.

    The bound and the rows come from one REPEATABLE READ snapshot. The single-machine path (ETL
    engine `duckdb`): no JVM, and DuckDB's own postgres extension cannot be downloaded here.
    """
    try:
        with connect_shop_db(settings) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction(), conn.cursor() as cursor:
                bound = cursor.execute(_SNAPSHOT_XMIN_SQL).fetchone()
                cursor.execute(changes_query(table, xid_floor, since))
                rows = cursor.fetchall()
    except _DATABASE_ERRORS as exc:
        raise _lost_database(table, exc) from None
    assert bound is not None
    names = [*table.columns, _XID_COLUMN]
    types = [*(table.schema.field(name).type for name in table.columns), pa.int64()]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [
        pa.array(list(values), type=kind) for values, kind in zip(columns, types, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=names), int(bound[0])


def _as_raw_table(rows: pa.Table, table: CatalogTable, ingest_ts: datetime) -> pa.Table:
    columns = [
        pa.array([ingest_ts] * rows.num_rows, type=field.type)
        if field.name == "ingest_ts"
        else rows.column(field.name).cast(field.type)
        for field in table.schema
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)


def ingest_catalog_table(
    spark: SparkSession | None, settings: Settings, table: CatalogTable
) -> IngestReport:
    """Pull one table's changes since its watermark into one raw file (Spark JDBC, or psycopg
    when `spark` is None)."""
    started = time.monotonic()
    report = IngestReport(source=table.name)
    state = StateStore(settings)
    watermark = SnapshotWatermark.load(state, table.state_name, LEGACY_OVERLAP)
    if spark is None:
        rows, bound = extract_changed_rows_arrow(
            settings, table, watermark.xid_floor, watermark.since
        )
    else:
        # The bound is taken before any partition reads (and fails fast, in one line, if the
        # database is unreachable: Spark's own JDBC error is a long Java stack trace).
        bound, query = snapshot_xmin_and_query(
            settings, table, watermark.xid_floor, watermark.since
        )
        rows = extract_changed_rows(spark, settings.source_db_url, query, table).toArrow()
    report.read = rows.num_rows
    keys = [
        row_key(key, updated_at=updated_at)
        for key, updated_at in zip(
            rows.column(table.key).to_pylist(), rows.column("updated_at").to_pylist(), strict=True
        )
    ]
    is_new = [watermark.is_new(key) for key in keys]
    new_rows = rows.filter(pa.array(is_new, type=pa.bool_())) if rows.num_rows else rows
    if new_rows.num_rows:
        updated = new_rows.column("updated_at")
        first, last = pc.min(updated).as_py(), pc.max(updated).as_py()
        layout = LakeLayout.from_settings(settings)
        url = layout.pull_file(table.name, first, last)
        write_parquet_atomic(_as_raw_table(new_rows, table, datetime.now(UTC)), url)
        register_files(layout, table.name, [url])
        report.files.append(url)
        report.written = new_rows.num_rows
    xids = rows.column(_XID_COLUMN).to_pylist()
    landed = [(key, xid) for key, xid, new in zip(keys, xids, is_new, strict=True) if new]
    watermark.advance(state, landed, bound)
    newest = watermark.newest_updated_at
    report.watermark = (
        f"{newest.isoformat() if newest else 'none'} (transactions from {watermark.xid_floor})"
    )
    report.seconds = time.monotonic() - started
    return report


def ingest_catalog(spark: SparkSession | None, settings: Settings) -> list[IngestReport]:
    """Pull products and users: over JDBC with a Spark session, else with psycopg into Arrow."""
    return [ingest_catalog_table(spark, settings, table) for table in CATALOG_TABLES]
