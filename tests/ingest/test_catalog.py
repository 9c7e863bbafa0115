"""Catalogue ingest: Spark over JDBC against a real PostgreSQL shop database."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date

import pytest
from pyspark.sql import SparkSession

from shopflow.contracts import Product, User
from shopflow.errors import ServiceUnavailableError
from shopflow.ingest.catalog import PRODUCTS, USERS, ingest_catalog, jdbc_options
from shopflow.lake import StateStore, read_dataset, resolve
from shopflow.settings import Settings
from shopflow.sources.shop_db import upsert_products, upsert_users
from tests.gcs_fixtures import fake_gcs_endpoint
from tests.ingest.conftest import raw_rows, state_record, visible_temp_files

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
