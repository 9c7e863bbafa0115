"""The shop's PostgreSQL database: the `products` and `users` tables the catalogue ingest pulls.

Change tracking is owned by the database, by triggers:

* `updated_at` is set from `clock_timestamp()` on every insert and on every update that changes a
  value, and kept on an update that changes nothing.
* `change_xid` (`xid8`) is set to the writing transaction's id (`pg_current_xact_id()`) at the same
  moments. Unlike `updated_at` it lets a reader bound a pull by the oldest transaction still
  running (`pg_snapshot_xmin`), so rows committed late by a long transaction are not skipped
  (`shopflow.ingest.catalog` explains the pull).
* A delete leaves a tombstone in `products_deleted` / `users_deleted`: the key, `deleted_at`
  (`clock_timestamp()`) and the deleting transaction's `change_xid`; deleting a key again
  refreshes its tombstone. `TRUNCATE` fires no row trigger and leaves no tombstones.

`ensure_shop_db` creates all of it, and migrates a database created before `change_xid` and the
tombstone tables existed (rows already there get `change_xid` 0).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shopflow.contracts import Product, User
from shopflow.errors import ServiceUnavailableError
from shopflow.settings import Settings

CONNECT_TIMEOUT_SECONDS: Final = 5
_SCHEMA_LOCK_KEY: Final = 0x5F0F_0DB1  # advisory lock so concurrent ensure_shop_db calls serialise

_PRODUCT_COLUMNS: Final = (
    "product_id",
    "product_name",
    "category",
    "category_path",
    "brand",
    "price",
    "retail_price_inr",
    "date",
)
_USER_COLUMNS: Final = ("user_id", "user_name", "email", "city", "date")

_SCHEMA_SQL: Final = """
CREATE TABLE IF NOT EXISTS products (
    product_id       text PRIMARY KEY,
    product_name     text NOT NULL,
    category         text,
    category_path    text,
    brand            text,
    price            double precision,
    retail_price_inr double precision,
    date             date NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS products_updated_at_idx ON products (updated_at);

CREATE TABLE IF NOT EXISTS users (
    user_id    text PRIMARY KEY,
    user_name  text NOT NULL,
    email      text,
    city       text,
    date       date NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS users_updated_at_idx ON users (updated_at);

-- Migration: the writing transaction of each row (0 for rows written before it existed).
ALTER TABLE products ADD COLUMN IF NOT EXISTS change_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE users ADD COLUMN IF NOT EXISTS change_xid xid8 NOT NULL DEFAULT '0';
CREATE INDEX IF NOT EXISTS products_change_xid_idx ON products (change_xid);
CREATE INDEX IF NOT EXISTS users_change_xid_idx ON users (change_xid);

CREATE TABLE IF NOT EXISTS products_deleted (
    product_id text PRIMARY KEY,
    deleted_at timestamptz NOT NULL,
    change_xid xid8 NOT NULL
);
CREATE INDEX IF NOT EXISTS products_deleted_change_xid_idx ON products_deleted (change_xid);
CREATE TABLE IF NOT EXISTS users_deleted (
    user_id    text PRIMARY KEY,
    deleted_at timestamptz NOT NULL,
    change_xid xid8 NOT NULL
);
CREATE INDEX IF NOT EXISTS users_deleted_change_xid_idx ON users_deleted (change_xid);

CREATE OR REPLACE FUNCTION shopflow_stamp_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR (to_jsonb(NEW) - 'updated_at' - 'change_xid')
          IS DISTINCT FROM (to_jsonb(OLD) - 'updated_at' - 'change_xid') THEN
        NEW.updated_at := clock_timestamp();
        NEW.change_xid := pg_current_xact_id();
    ELSE
        NEW.updated_at := OLD.updated_at;
        NEW.change_xid := OLD.change_xid;
    END IF;
    RETURN NEW;
END
$$;

-- TG_ARGV[0]: the key column; the tombstone goes to <table>_deleted.
CREATE OR REPLACE FUNCTION shopflow_record_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %1$I (%2$I, deleted_at, change_xid) '
        'VALUES ($1, clock_timestamp(), pg_current_xact_id()) '
        'ON CONFLICT (%2$I) DO UPDATE '
        'SET deleted_at = EXCLUDED.deleted_at, change_xid = EXCLUDED.change_xid',
        TG_TABLE_NAME || '_deleted', TG_ARGV[0]
    ) USING to_jsonb(OLD) ->> TG_ARGV[0];
    RETURN OLD;
END
$$;

CREATE OR REPLACE TRIGGER products_stamp_updated_at
    BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION shopflow_stamp_updated_at();
CREATE OR REPLACE TRIGGER users_stamp_updated_at
    BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION shopflow_stamp_updated_at();
CREATE OR REPLACE TRIGGER products_record_deletion
    AFTER DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION shopflow_record_deletion('product_id');
CREATE OR REPLACE TRIGGER users_record_deletion
    AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION shopflow_record_deletion('user_id');
"""


def _describe_dsn(dsn: str) -> str:
    """`host:port/dbname` of a DSN, without credentials, for error messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or '?'}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect_shop_db(settings: Settings, *, dbname: str | None = None) -> psycopg.Connection:
    """A connection to the shop database (or to `dbname` on the same server).

    Raises ServiceUnavailableError with one actionable line if the server cannot be reached.
    """
    dsn = settings.source_db_url
    try:
        conninfo = make_conninfo(dsn, dbname=dbname) if dbname else dsn
        # Keepalives and a TCP user timeout: a server that goes silent mid-query (a network
        # partition, a frozen host) fails the pull in about a minute instead of hanging it.
        return psycopg.connect(
            conninfo,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=60_000,
        )
    except psycopg.ProgrammingError as exc:
        raise ServiceUnavailableError(
            f"invalid shop database DSN ({_first_line(exc)}): fix SHOPFLOW_SOURCE_DB_URL"
        ) from None
    except psycopg.OperationalError as exc:
        target = _describe_dsn(make_conninfo(dsn, dbname=dbname) if dbname else dsn)
        if "does not exist" in str(exc):  # connect errors carry no SQLSTATE to test instead
            raise ServiceUnavailableError(
                f"the shop database {target} does not exist ({_first_line(exc)}): "
                "create it with ensure_shop_db (`shopflow services up`) or fix "
                "SHOPFLOW_SOURCE_DB_URL"
            ) from None
        raise ServiceUnavailableError(
            f"cannot reach the shop database at {target} ({_first_line(exc)}): "
            "start PostgreSQL or set SHOPFLOW_SOURCE_DB_URL"
        ) from None


def ensure_shop_db(settings: Settings) -> None:
    """Create the shop database (if missing) and its schema; safe to run any number of times."""
    try:
        dbname = conninfo_to_dict(settings.source_db_url).get("dbname")
    except psycopg.ProgrammingError as exc:
        raise ServiceUnavailableError(
            f"invalid shop database DSN ({_first_line(exc)}): fix SHOPFLOW_SOURCE_DB_URL"
        ) from None
    if not dbname:
        raise ServiceUnavailableError(
            "the shop database DSN names no database: add one to SHOPFLOW_SOURCE_DB_URL"
        )
    with connect_shop_db(settings, dbname="postgres") as admin:
        admin.autocommit = True
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists is None:
            # Another process may create it between our check and here; that is what we want.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(dbname))))
    with connect_shop_db(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
        conn.execute(_SCHEMA_SQL)  # type: ignore[arg-type]  # a constant, not user input


def _bulk_upsert(
    settings: Settings,
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple[object, ...]],
) -> int:
    """COPY rows into a temp table, then upsert the changed ones; returns rows inserted or changed.

    Within one call the last row for a key wins (ON CONFLICT cannot touch a row twice).
    """
    key, values = columns[0], columns[1:]
    staging = sql.Identifier(f"staging_{table}")
    target = sql.Identifier(table)
    column_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    upsert = sql.SQL(
        "INSERT INTO {target} ({columns}) "
        "SELECT DISTINCT ON ({key}) {columns} FROM {staging} ORDER BY {key}, copy_ordinal DESC "
        "ON CONFLICT ({key}) DO UPDATE SET {assignments} "
        "WHERE ({current}) IS DISTINCT FROM ({proposed})"
    ).format(
        target=target,
        columns=column_list,
        key=sql.Identifier(key),
        staging=staging,
        assignments=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values
        ),
        current=sql.SQL(", ").join(
            sql.SQL("{t}.{c}").format(t=target, c=sql.Identifier(c)) for c in values
        ),
        proposed=sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values
        ),
    )
    with connect_shop_db(settings) as conn, conn.transaction():
        try:
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {staging} (LIKE {target} INCLUDING DEFAULTS, "
                    "copy_ordinal bigserial) ON COMMIT DROP"
                ).format(staging=staging, target=target)
            )
        except psycopg.errors.UndefinedTable:
            raise ServiceUnavailableError(
                f"the shop database has no {table} table: run ensure_shop_db "
                "(`shopflow services up` or `shopflow demo`) first"
            ) from None
        with conn.cursor() as cur:
            with cur.copy(
                sql.SQL("COPY {staging} ({columns}) FROM STDIN").format(
                    staging=staging, columns=column_list
                )
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(upsert)
            return max(cur.rowcount, 0)


def upsert_products(settings: Settings, products: Iterable[Product]) -> int:
    """Insert or update products by product_id; returns how many rows were inserted or changed."""
    rows = (
        (
            p.product_id,
            p.product_name,
            p.category,
            p.category_path,
            p.brand,
            p.price,
            p.retail_price_inr,
            p.date,
        )
        for p in products
    )
    return _bulk_upsert(settings, "products", _PRODUCT_COLUMNS, rows)


def upsert_users(settings: Settings, users: Iterable[User]) -> int:
    """Insert or update users by user_id; returns how many rows were inserted or changed."""
    rows = ((u.user_id, u.user_name, u.email, u.city, u.date) for u in users)
    return _bulk_upsert(settings, "users", _USER_COLUMNS, rows)


def wait_for_shop_db(settings: Settings, timeout_seconds: float = 30.0) -> None:
    """Block until the database server accepts connections, or raise ServiceUnavailableError."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            connect_shop_db(settings, dbname="postgres").close()
            return
        except ServiceUnavailableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
