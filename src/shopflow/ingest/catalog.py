"""Incremental pull of the shop database's products and users into `raw/products/`, `raw/users/`.

Meant to run every 30 minutes. Spark reads PostgreSQL over JDBC (Debian's PostgreSQL driver), split
into parallel range reads by a hash of the key, only the rows whose database-owned `updated_at` is
past the watermark minus an overlap. Each pull of a table becomes one raw file named from the range
of changes it holds; the table's watermark advances only after that file is durably written.
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
from shopflow.ingest.watermark import Watermark, row_key
from shopflow.lake import LakeLayout, StateStore, write_parquet_atomic
from shopflow.lake.commit_log import register_files
from shopflow.settings import Settings
from shopflow.sources.shop_db import connect_shop_db

DEFAULT_OVERLAP: Final = timedelta(minutes=5)


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


def extract_changed_rows(
    spark: SparkSession, source_db_url: str, table: CatalogTable, since: datetime
) -> DataFrame:
    """Rows of `table` changed at or after `since`, read by `table.read_partitions` parallel queries."""
    url, properties = jdbc_options(source_db_url)
    since_sql = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    subquery = (
        f"(SELECT {', '.join(table.columns)} FROM {table.name} "
        f"WHERE updated_at >= TIMESTAMPTZ '{since_sql}') AS changed"
    )
    n = table.read_partitions
    predicates = [f"mod(abs(hashtext({table.key})), {n}) = {i}" for i in range(n)]
    return spark.read.jdbc(url, subquery, predicates=predicates, properties=properties)


def extract_changed_rows_arrow(
    settings: Settings, table: CatalogTable, since: datetime
) -> pa.Table:
    """The same rows as `extract_changed_rows`, read with psycopg straight into Arrow.

    The single-machine path (ETL engine `duckdb`): no JVM, and DuckDB's own postgres extension
    cannot be downloaded here.
    """
    query = sql.SQL("SELECT {columns} FROM {table} WHERE updated_at >= %s").format(
        columns=sql.SQL(", ").join(sql.Identifier(name) for name in table.columns),
        table=sql.Identifier(table.name),
    )
    try:
        with connect_shop_db(settings) as conn, conn.cursor() as cursor:
            cursor.execute(query, (since,))
            rows = cursor.fetchall()
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ServiceUnavailableError(
            f"lost the shop database mid-pull of {table.name} ({first}): nothing was landed and "
            "the watermark is unchanged; run the pull again"
        ) from None
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in table.columns]
    return pa.Table.from_arrays(
        [
            pa.array(list(values), type=table.schema.field(name).type)
            for name, values in zip(table.columns, columns, strict=True)
        ],
        names=table.columns,
    )


def _as_raw_table(rows: pa.Table, table: CatalogTable, ingest_ts: datetime) -> pa.Table:
    columns = [rows.column(name).cast(table.schema.field(name).type) for name in table.columns]
    columns.append(pa.array([ingest_ts] * rows.num_rows, type=table.schema.field("ingest_ts").type))
    return pa.Table.from_arrays(columns, schema=table.schema)


def ingest_catalog_table(
    spark: SparkSession | None,
    settings: Settings,
    table: CatalogTable,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> IngestReport:
    """Pull one table's changes since its watermark into one raw file (Spark JDBC, or psycopg
    when `spark` is None)."""
    started = time.monotonic()
    report = IngestReport(source=table.name)
    state = StateStore(settings)
    watermark = Watermark.load(state, table.state_name, overlap)
    # Fail fast with one clear line (and the watermark untouched) if the database is unreachable;
    # Spark's own JDBC error would arrive as a long Java stack trace.
    connect_shop_db(settings).close()
    if spark is None:
        rows = extract_changed_rows_arrow(settings, table, watermark.since)
    else:
        rows = extract_changed_rows(spark, settings.source_db_url, table, watermark.since).toArrow()
    report.read = rows.num_rows
    keys = [
        row_key(key, updated_at=updated_at)
        for key, updated_at in zip(
            rows.column(table.key).to_pylist(), rows.column("updated_at").to_pylist(), strict=True
        )
    ]
    is_new = pa.array([watermark.is_new(key) for key in keys], type=pa.bool_())
    new_rows = rows.filter(is_new) if rows.num_rows else rows
    if new_rows.num_rows:
        updated = new_rows.column("updated_at")
        first, last = pc.min(updated).as_py(), pc.max(updated).as_py()
        layout = LakeLayout.from_settings(settings)
        url = layout.pull_file(table.name, first, last)
        write_parquet_atomic(_as_raw_table(new_rows, table, datetime.now(UTC)), url)
        register_files(layout, table.name, [url])
        report.files.append(url)
        report.written = new_rows.num_rows
        landed = [
            (key, datetime.fromisoformat(key[-1]))
            for key, new in zip(keys, is_new.to_pylist(), strict=True)
            if new
        ]
        watermark.advance(state, landed)
    report.watermark = watermark.value.isoformat() if watermark.value else None
    report.seconds = time.monotonic() - started
    return report


def ingest_catalog(
    spark: SparkSession | None, settings: Settings, overlap: timedelta = DEFAULT_OVERLAP
) -> list[IngestReport]:
    """Pull products and users: over JDBC with a Spark session, else with psycopg into Arrow."""
    return [ingest_catalog_table(spark, settings, table, overlap) for table in CATALOG_TABLES]
