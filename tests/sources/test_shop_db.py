"""The shop database against the real PostgreSQL server, each test in a database of its own."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shopflow.contracts import Product, User
from shopflow.errors import ServiceUnavailableError
from shopflow.settings import Settings
from shopflow.sources.shop_db import (
    connect_shop_db,
    ensure_shop_db,
    upsert_products,
    upsert_users,
)
from tests.conftest import TEST_PG_ADMIN_URL

pytestmark = pytest.mark.integration

#: The shop schema as created before change tracking (`change_xid`, tombstone tables) existed.
PRE_CHANGE_TRACKING_SCHEMA = """
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

CREATE OR REPLACE FUNCTION shopflow_stamp_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR (to_jsonb(NEW) - 'updated_at') IS DISTINCT FROM (to_jsonb(OLD) - 'updated_at') THEN
        NEW.updated_at := clock_timestamp();
    ELSE
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER products_stamp_updated_at
    BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION shopflow_stamp_updated_at();
CREATE OR REPLACE TRIGGER users_stamp_updated_at
    BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION shopflow_stamp_updated_at();
"""


def create_pre_change_tracking_db(settings: Settings) -> None:
    """A shop database as an older shopflow created it."""
    dbname = conninfo_to_dict(settings.source_db_url)["dbname"]
    with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(dbname))))
    with connect_shop_db(settings) as conn:
        conn.execute(PRE_CHANGE_TRACKING_SCHEMA)  # type: ignore[arg-type]  # a constant


@pytest.fixture
def shop_settings(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a database that does not exist yet; dropped after the test."""
    dbname = f"shopflow_test_{uuid.uuid4().hex[:12]}"
    yield settings.model_copy(
        update={"source_db_url": make_conninfo(TEST_PG_ADMIN_URL, dbname=dbname)}
    )
    with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def make_products(count: int, *, price_offset: float = 0.0) -> list[Product]:
    """Products with awkward text (tabs, newlines, backslashes, quotes, non-ASCII) and nulls."""
    listed = date(2026, 1, 1)
    return [
        Product(
            product_id=f"P{i:07d}",
            product_name=f'Kurta №{i}\twith "quotes", back\\slash\nand a newline',
            category=None if i % 7 == 0 else f"Category {i % 13}",
            category_path=f"Clothing >> Women's >> Kurtas {i % 5}",
            brand=None if i % 11 == 0 else "Alisha",
            price=None if i % 17 == 0 else 100.0 + i * 0.25 + price_offset,
            retail_price_inr=999.0,
            date=listed + timedelta(days=i % 300),
        )
        for i in range(count)
    ]


def updated_at_by_id(settings: Settings, table: str) -> dict[str, datetime]:
    key = "product_id" if table == "products" else "user_id"
    with connect_shop_db(settings) as conn:
        rows = conn.execute(
            sql.SQL("SELECT {key}, updated_at FROM {table}").format(
                key=sql.Identifier(key), table=sql.Identifier(table)
            )
        ).fetchall()
    return {row[0]: row[1] for row in rows}


def test_ensure_creates_database_and_schema_idempotently(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    ensure_shop_db(shop_settings)
    with connect_shop_db(shop_settings) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes")}
    assert {"products", "users"} <= tables
    assert {"products_updated_at_idx", "users_updated_at_idx"} <= indexes


def test_seed_20k_products_fast_and_reupsert_changes_nothing(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    products = make_products(20_000)

    started = time.perf_counter()
    assert upsert_products(shop_settings, products) == 20_000
    seed_seconds = time.perf_counter() - started
    print(f"seeded 20k products in {seed_seconds:.2f} s")
    assert seed_seconds < 10.0

    before = updated_at_by_id(shop_settings, "products")
    assert len(before) == 20_000
    with connect_shop_db(shop_settings) as conn:
        stored = conn.execute(
            "SELECT product_name, category, brand, price FROM products WHERE product_id = %s",
            ("P0000077",),
        ).fetchone()
    assert stored == (products[77].product_name, None, None, products[77].price)

    assert upsert_products(shop_settings, products) == 0
    assert updated_at_by_id(shop_settings, "products") == before


def test_changed_price_bumps_updated_at_only_for_that_row(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    products = make_products(100)
    upsert_products(shop_settings, products)
    before = updated_at_by_id(shop_settings, "products")

    changed = [*products[:10], dataclasses.replace(products[10], price=1.5)]
    assert upsert_products(shop_settings, changed) == 1

    after = updated_at_by_id(shop_settings, "products")
    assert after["P0000010"] > before["P0000010"]
    assert {k: v for k, v in after.items() if k != "P0000010"} == {
        k: v for k, v in before.items() if k != "P0000010"
    }


def test_direct_update_that_changes_nothing_keeps_updated_at(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    upsert_products(shop_settings, make_products(5))
    before = updated_at_by_id(shop_settings, "products")
    with connect_shop_db(shop_settings) as conn:
        conn.execute("UPDATE products SET brand = brand")
        conn.execute("UPDATE products SET brand = 'Other' WHERE product_id = 'P0000001'")
    after = updated_at_by_id(shop_settings, "products")
    assert after["P0000000"] == before["P0000000"]
    assert after["P0000001"] > before["P0000001"]


def test_last_duplicate_in_one_batch_wins(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    first, second = make_products(1), make_products(1, price_offset=5.0)
    assert upsert_products(shop_settings, [*first, *second]) == 1
    with connect_shop_db(shop_settings) as conn:
        row = conn.execute("SELECT price FROM products").fetchone()
    assert row == (second[0].price,)


def test_users_upsert(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    users = [
        User(f"u-{i}", f"User {i}", f"u{i}@example.com", "Pune", date(2025, 5, 1))
        for i in range(1000)
    ]
    assert upsert_users(shop_settings, users) == 1000
    before = updated_at_by_id(shop_settings, "users")
    assert upsert_users(shop_settings, users) == 0
    moved = User("u-3", "User 3", "u3@example.com", "Mumbai", date(2025, 5, 1))
    assert upsert_users(shop_settings, [moved]) == 1
    after = updated_at_by_id(shop_settings, "users")
    assert after["u-3"] > before["u-3"]
    assert after["u-4"] == before["u-4"]


def test_upsert_before_database_exists_says_what_to_do(shop_settings: Settings) -> None:
    with pytest.raises(ServiceUnavailableError, match=r"does not exist.*ensure_shop_db"):
        upsert_products(shop_settings, make_products(1))


def test_upsert_before_schema_says_what_to_do(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    with connect_shop_db(shop_settings) as conn:
        conn.execute("DROP TABLE users")
    with pytest.raises(ServiceUnavailableError, match=r"no users table.*ensure_shop_db"):
        upsert_users(shop_settings, [User("u-1", "One", None, None, date(2025, 1, 1))])


def test_unreachable_server_gives_one_actionable_line(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"source_db_url": "postgresql://postgres@127.0.0.1:1/shopflow"}
    )
    with pytest.raises(ServiceUnavailableError) as caught:
        ensure_shop_db(unreachable)
    message = str(caught.value)
    assert "\n" not in message
    assert "127.0.0.1:1/postgres" in message
    assert "SHOPFLOW_SOURCE_DB_URL" in message
    assert caught.value.__cause__ is None


def test_bad_dsn_gives_one_actionable_line(settings: Settings) -> None:
    broken = settings.model_copy(update={"source_db_url": "host=127.0.0.1 port"})
    with pytest.raises(ServiceUnavailableError, match=r"invalid shop database DSN.*SHOPFLOW_"):
        ensure_shop_db(broken)


def test_ensure_migrates_a_database_from_before_change_tracking(shop_settings: Settings) -> None:
    create_pre_change_tracking_db(shop_settings)
    upsert_products(shop_settings, make_products(3))
    before = updated_at_by_id(shop_settings, "products")

    ensure_shop_db(shop_settings)
    ensure_shop_db(shop_settings)
    assert updated_at_by_id(shop_settings, "products") == before
    with connect_shop_db(shop_settings) as conn:
        migrated = conn.execute("SELECT DISTINCT change_xid::text FROM products").fetchall()
        conn.execute("UPDATE products SET brand = 'New' WHERE product_id = 'P0000001'")
        conn.execute("DELETE FROM products WHERE product_id = 'P0000002'")
        writer = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
        changed = conn.execute(
            "SELECT change_xid::text FROM products WHERE product_id = 'P0000001'"
        ).fetchone()
        tombstones = conn.execute(
            "SELECT product_id, change_xid::text, deleted_at IS NOT NULL FROM products_deleted"
        ).fetchall()
    assert migrated == [("0",)]
    assert writer is not None
    assert changed == (writer[0],)
    assert tombstones == [("P0000002", writer[0], True)]


def test_update_that_changes_nothing_keeps_change_xid(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    upsert_products(shop_settings, make_products(2))
    with connect_shop_db(shop_settings) as conn:
        before = conn.execute("SELECT product_id, change_xid::text FROM products").fetchall()
        conn.execute("UPDATE products SET brand = brand")
        after = conn.execute("SELECT product_id, change_xid::text FROM products").fetchall()
    assert sorted(after) == sorted(before)
    assert upsert_products(shop_settings, make_products(2)) == 0


def test_deleting_a_key_again_refreshes_its_tombstone(shop_settings: Settings) -> None:
    ensure_shop_db(shop_settings)
    users = [User("u-1", "One", None, None, date(2025, 1, 1))]
    stamps = []
    for _ in range(2):
        upsert_users(shop_settings, users)
        with connect_shop_db(shop_settings) as conn:
            conn.execute("DELETE FROM users WHERE user_id = 'u-1'")
            stamps.append(
                conn.execute("SELECT deleted_at, change_xid::text FROM users_deleted").fetchall()
            )
    [(first_at, first_xid)], [(second_at, second_xid)] = stamps
    assert second_at > first_at
    assert int(second_xid) > int(first_xid)
