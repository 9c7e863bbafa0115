"""Catalogue ingest: Spark over JDBC against a real PostgreSQL shop database."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pyspark.sql import SparkSession

from shopflow.contracts import RAW_PRODUCT_SCHEMA, RAW_USER_SCHEMA, Product, User
from shopflow.errors import ServiceUnavailableError
from shopflow.ingest.catalog import PRODUCTS, USERS, ingest_catalog, jdbc_options
from shopflow.ingest.report import IngestReport
from shopflow.lake import StateStore, read_dataset, resolve
from shopflow.settings import Settings
from shopflow.sources.shop_db import (
    connect_shop_db,
    ensure_shop_db,
    upsert_products,
    upsert_users,
)
from tests.conftest import TEST_PG_ADMIN_URL
from tests.gcs_fixtures import fake_gcs_endpoint
from tests.ingest.conftest import raw_rows, state_record, visible_temp_files
from tests.sources.test_shop_db import create_pre_change_tracking_db

__all__ = ["fake_gcs_endpoint"]

pytestmark = pytest.mark.integration


def products(count: int) -> list[Product]:
    return [
        Product(
            product_id=f"P{n:05d}",
            product_name=f"Product  {n}\u00a0deluxe",
            category=("Clothing", "Footwear", None)[n % 3],
            category_path=None if n % 3 == 2 else "Clothing >> Women's Clothing",
            brand=None if n % 4 == 0 else f"Brand {n % 7}",
            price=None if n % 50 == 0 else 100.0 + n,
            retail_price_inr=None if n % 50 == 0 else 150.0 + n,
            date=date(2016, 1, 1 + n % 28),
        )
        for n in range(count)
    ]


def users(count: int) -> list[User]:
    return [
        User(
            user_id=f"u-{n:06d}",
            user_name=f"User {n}",
            email=f"user{n}@example.in",
            city=None if n % 5 == 0 else "Pune",
            date=date(2026, 1, 1 + n % 28),
        )
        for n in range(count)
    ]


@pytest.fixture(params=["spark-jdbc", "psycopg-arrow"])
def reader(request: pytest.FixtureRequest) -> SparkSession | None:
    """Either extraction path: Spark over JDBC, or psycopg into Arrow (no JVM)."""
    if request.param == "spark-jdbc":
        session: SparkSession = request.getfixturevalue("spark")
        return session
    return None


def test_first_pull_then_nothing_then_exactly_the_changes(
    reader: SparkSession | None, shop_db_settings: Settings
) -> None:
    spark, run = reader, shop_db_settings
    seeded_products, seeded_users = products(300), users(80)
    upsert_products(run, seeded_products)
    upsert_users(run, seeded_users)

    first = {r.source: r for r in ingest_catalog(spark, run)}
    assert (first["products"].written, first["users"].written) == (300, 80)
    landed = raw_rows(run.lake_url, "raw/products")
    assert {r["product_id"] for r in landed} == {p.product_id for p in seeded_products}
    by_id = {r["product_id"]: r for r in landed}
    assert by_id["P00000"]["price"] is None
    assert by_id["P00001"]["product_name"] == "Product  1\u00a0deluxe"  # raw keeps source text

    second = {r.source: r for r in ingest_catalog(spark, run)}
    assert all(r.written == 0 and not r.files for r in second.values())

    changed = [dataclasses.replace(p, price=(p.price or 0) + 1) for p in seeded_products[:3]]
    upsert_products(run, changed + seeded_products[3:10])  # 7 unchanged rows re-sent
    upsert_users(run, users(82))  # two new users
    third = {r.source: r for r in ingest_catalog(spark, run)}
    assert third["products"].written == 3
    assert third["users"].written == 2
    assert len(raw_rows(run.lake_url, "raw/products")) == 303
    assert len(raw_rows(run.lake_url, "raw/users")) == 82
    assert visible_temp_files(run.lake_url) == []
    assert all(r["updated_at"] is not None and r["ingest_ts"] is not None for r in landed)


def test_spark_jdbc_pull_lands_in_a_gcs_lake(
    spark: SparkSession,
    shop_db_settings: Settings,
    fake_gcs_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Spark only reads PostgreSQL; the raw file and the watermark go through the lake's own
    # gcsfs / google-cloud-storage writes, so no GCS connector is needed in the JVM.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs_endpoint)
    bucket = f"catalog-{uuid.uuid4().hex[:10]}"
    resolve(f"gs://{bucket}")[0].mkdir(bucket)
    run = shop_db_settings.model_copy(update={"lake_root": f"gs://{bucket}/lake"})
    upsert_products(run, products(40))
    upsert_users(run, users(10))

    first = {r.source: r for r in ingest_catalog(spark, run)}
    assert (first["products"].written, first["users"].written) == (40, 10)
    assert all(
        url.startswith(f"gs://{bucket}/lake/raw/") for r in first.values() for url in r.files
    )
    landed = read_dataset(f"{run.lake_url}/raw/products")
    assert sorted(landed.column("product_id").to_pylist()) == [p.product_id for p in products(40)]
    assert StateStore(run).get(PRODUCTS.state_name) is not None
    again = {r.source: r for r in ingest_catalog(spark, run)}
    assert all(r.written == 0 and not r.files for r in again.values())


def test_unreachable_database_is_one_line_and_leaves_watermarks(
    reader: SparkSession | None, settings: Settings
) -> None:
    spark = reader
    run = settings.model_copy(update={"source_db_url": "postgresql://postgres@127.0.0.1:1/shop"})
    with pytest.raises(ServiceUnavailableError) as caught:
        ingest_catalog(spark, run)
    assert "\n" not in str(caught.value)
    assert "SHOPFLOW_SOURCE_DB_URL" in str(caught.value)
    for table in (PRODUCTS, USERS):
        assert state_record(run.lake_url, table.state_name) is None


@pytest.mark.parametrize(
    ("dsn", "jdbc", "user"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/shopflow",
            "jdbc:postgresql://127.0.0.1:5432/shopflow",
            "postgres",
        ),
        (
            "host=db.internal port=6543 dbname=shop user=etl",
            "jdbc:postgresql://db.internal:6543/shop",
            "etl",
        ),
    ],
)
def test_jdbc_options_from_either_dsn_form(dsn: str, jdbc: str, user: str) -> None:
    url, properties = jdbc_options(dsn)
    assert url == jdbc
    assert properties["user"] == user


def by_source(reports: list[IngestReport]) -> dict[str, IngestReport]:
    return {report.source: report for report in reports}


def pull_files(lake: str) -> set[Path]:
    """Every landed raw products and users file."""
    return {*Path(lake, "raw").rglob("*.parquet")}


def rows_of(files: set[Path], dataset: str) -> list[dict[str, Any]]:
    """The rows of those of `files` that belong to `raw/<dataset>`."""
    rows: list[dict[str, Any]] = []
    for path in sorted(files):
        if f"/raw/{dataset}/" in path.as_posix():
            rows.extend(pq.read_table(path).to_pylist())
    return rows


def assert_no_row_landed_twice(lake: str) -> None:
    for dataset, key in (("raw/products", "product_id"), ("raw/users", "user_id")):
        versions = [(row[key], row["updated_at"]) for row in raw_rows(lake, dataset)]
        assert len(versions) == len(set(versions)), dataset


#: How long the test's transaction stays open before others commit newer rows: longer than the
#: overlap of a watermark on `updated_at` minus an overlap (the old pull, run with a 1-s overlap to
#: show it failing; in production its 5-min overlap fails the same for a 5-min transaction).
HOLD_SECONDS = 1.5


def test_rows_of_a_transaction_open_across_a_pull_arrive_in_the_next_pull(
    reader: SparkSession | None, shop_db_settings: Settings
) -> None:
    spark, run = reader, shop_db_settings
    seeded_products, seeded_users = products(20), users(5)
    upsert_products(run, seeded_products)
    upsert_users(run, seeded_users)
    ingest_catalog(spark, run)

    with psycopg.connect(run.source_db_url) as long_transaction:  # not autocommit: stays open
        long_transaction.execute("UPDATE products SET price = 1.5 WHERE product_id = 'P00001'")
        long_transaction.execute(
            "INSERT INTO products (product_id, product_name, date) "
            "VALUES ('P-LATE', 'Late', DATE '2026-01-01')"
        )
        long_transaction.execute("DELETE FROM products WHERE product_id = 'P00004'")
        long_transaction.execute("UPDATE users SET city = 'Goa' WHERE user_id = 'u-000001'")
        time.sleep(HOLD_SECONDS)
        # Meanwhile other writers commit: their rows are newer than the open transaction's.
        upsert_products(run, [dataclasses.replace(seeded_products[2], price=2.5)])
        upsert_users(run, [dataclasses.replace(seeded_users[2], city="Delhi")])
        during = by_source(ingest_catalog(spark, run))
        long_transaction.commit()
    assert (during["products"].written, during["users"].written) == (1, 1)
    before_commit = pull_files(run.lake_url)

    after = by_source(ingest_catalog(spark, run))
    late_files = pull_files(run.lake_url) - before_commit
    late_products = {r["product_id"]: r for r in rows_of(late_files, "products")}
    assert set(late_products) == {"P00001", "P-LATE", "P00004"}
    assert late_products["P00001"]["price"] == 1.5
    assert late_products["P00004"]["deleted_at"] is not None
    assert [(r["user_id"], r["city"]) for r in rows_of(late_files, "users")] == [
        ("u-000001", "Goa")
    ]
    assert (after["products"].written, after["users"].written) == (3, 1)

    rerun = by_source(ingest_catalog(spark, run))
    assert all(r.written == 0 and not r.files for r in rerun.values())
    assert len(raw_rows(run.lake_url, "raw/products")) == 20 + 1 + 3
    assert len(raw_rows(run.lake_url, "raw/users")) == 5 + 1 + 1
    assert_no_row_landed_twice(run.lake_url)


def test_deleted_rows_land_as_tombstones_and_a_comeback_as_a_newer_row(
    reader: SparkSession | None, shop_db_settings: Settings
) -> None:
    spark, run = reader, shop_db_settings
    seeded_products, seeded_users = products(10), users(4)
    upsert_products(run, seeded_products)
    upsert_users(run, seeded_users)
    ingest_catalog(spark, run)
    first_pull = pull_files(run.lake_url)
    with connect_shop_db(run) as conn:
        conn.execute("DELETE FROM products WHERE product_id = 'P00003'")
        conn.execute("DELETE FROM users WHERE user_id = 'u-000002'")

    deleted = by_source(ingest_catalog(spark, run))
    assert (deleted["products"].written, deleted["users"].written) == (1, 1)
    new_files = pull_files(run.lake_url) - first_pull
    for dataset, key, gone, schema in (
        ("products", "product_id", "P00003", RAW_PRODUCT_SCHEMA),
        ("users", "user_id", "u-000002", RAW_USER_SCHEMA),
    ):
        [path] = [p for p in new_files if f"/raw/{dataset}/" in p.as_posix()]
        assert pq.read_schema(path).remove_metadata() == schema
        [tombstone] = pq.read_table(path).to_pylist()
        assert tombstone[key] == gone
        assert tombstone["deleted_at"] is not None
        assert tombstone["updated_at"] == tombstone["deleted_at"]
        others = set(schema.names) - {key, "updated_at", "deleted_at", "ingest_ts"}
        assert all(tombstone[name] is None for name in others)
        assert all(r["deleted_at"] is None for r in rows_of(first_pull, dataset))

    upsert_products(run, [seeded_products[3]])  # the deleted product comes back
    back = by_source(ingest_catalog(spark, run))
    assert (back["products"].written, back["users"].written) == (1, 0)
    versions = [
        r for r in rows_of(pull_files(run.lake_url), "products") if r["product_id"] == "P00003"
    ]
    [tombstone_at] = [r["deleted_at"] for r in versions if r["deleted_at"] is not None]
    [comeback] = [r for r in versions if r["deleted_at"] is None and r["updated_at"] > tombstone_at]
    assert comeback["product_name"] == seeded_products[3].product_name

    rerun = by_source(ingest_catalog(spark, run))
    assert all(r.written == 0 and not r.files for r in rerun.values())
    assert_no_row_landed_twice(run.lake_url)


@pytest.fixture
def old_shop_settings(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a shop database created before change tracking; dropped afterwards."""
    dbname = f"shopflow_test_{uuid.uuid4().hex[:12]}"
    run = settings.model_copy(
        update={"source_db_url": make_conninfo(TEST_PG_ADMIN_URL, dbname=dbname)}
    )
    create_pre_change_tracking_db(run)
    yield run
    with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def test_a_state_of_the_updated_at_watermark_resumes_without_relanding(
    reader: SparkSession | None, old_shop_settings: Settings
) -> None:
    spark, run = reader, old_shop_settings
    seeded_products = products(30)
    upsert_products(run, seeded_products)
    upsert_users(run, users(3))
    # What the previous pull (watermark on updated_at) left: everything landed, and its state.
    with connect_shop_db(run) as conn:
        for table in (PRODUCTS, USERS):
            landed = conn.execute(
                sql.SQL("SELECT {}, updated_at FROM {}").format(
                    sql.Identifier(table.key), sql.Identifier(table.name)
                )
            ).fetchall()
            StateStore(run).put(
                table.state_name,
                {
                    "watermark": max(at for _, at in landed).isoformat(),
                    "recent_keys": sorted(
                        [key, at.astimezone(UTC).isoformat()] for key, at in landed
                    ),
                },
            )
    ensure_shop_db(run)  # the migration
    upsert_products(run, [dataclasses.replace(seeded_products[5], price=9.5)])

    first = by_source(ingest_catalog(spark, run))
    assert (first["products"].written, first["users"].written) == (1, 0)
    assert [r["price"] for r in raw_rows(run.lake_url, "raw/products")] == [9.5]
    for table in (PRODUCTS, USERS):
        stored = StateStore(run).get(table.state_name)
        assert stored is not None and stored["xid_floor"] > 0  # converted to the new watermark
    second = by_source(ingest_catalog(spark, run))
    assert all(r.written == 0 and not r.files for r in second.values())


def test_a_database_without_change_tracking_is_one_line_and_leaves_watermarks(
    reader: SparkSession | None, old_shop_settings: Settings
) -> None:
    spark, run = reader, old_shop_settings
    upsert_products(run, products(3))
    with pytest.raises(ServiceUnavailableError) as caught:
        ingest_catalog(spark, run)
    assert "\n" not in str(caught.value)
    assert "ensure_shop_db" in str(caught.value)
    assert state_record(run.lake_url, PRODUCTS.state_name) is None
    assert raw_rows(run.lake_url, "raw/products") == []
