"""Deleted products and users (raw tombstones with `deleted_at`), and raw files written before
`deleted_at` existed, through the lake reader, both engines' staging and the clean tables."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from shopflow.contracts import RAW_PRODUCT_SCHEMA, RAW_USER_SCHEMA
from shopflow.lake import LakeLayout, read_dataset, write_parquet_atomic
from shopflow.settings import Settings
from shopflow.transform.engine import ENGINES, engine_of, to_arrow, transforms
from shopflow.transform.events import events_clean
from shopflow.transform.lake_io import extract_pulls
from shopflow.transform.orders import dedup_order_lines, orders_enriched
from shopflow.transform.products import products_clean
from shopflow.transform.users import users_clean, users_enriched
from tests.transform.builders import T0, raw_events, raw_orders, raw_products, raw_users

HOUR = timedelta(hours=1)


def test_a_product_whose_latest_row_is_a_tombstone_leaves_products_clean(
    spark: SparkSession,
) -> None:
    gone = {"product_name": None, "brand": None, "price": None, "date": None}
    raw = raw_products(
        spark,
        [
            {"product_id": "p1"},
            {"product_id": "p1", **gone, "updated_at": T0 + HOUR, "deleted_at": T0 + HOUR},
            {"product_id": "p2", **gone, "updated_at": T0, "deleted_at": T0},
            {"product_id": "p2", "updated_at": T0 + HOUR},  # deleted, then back
            {"product_id": "p3"},
        ],
        nullable=True,
    )
    clean = {row.product_id: row for row in products_clean(raw).collect()}
    assert set(clean) == {"p2", "p3"}
    assert clean["p2"].product_name == "Shirt"


def test_a_user_whose_latest_row_is_a_tombstone_leaves_users_clean(spark: SparkSession) -> None:
    gone = {"user_name": None, "email": None, "city": None, "date": None}
    raw = raw_users(
        spark,
        [
            {"user_id": "u1"},
            {"user_id": "u1", **gone, "updated_at": T0 + HOUR, "deleted_at": T0 + HOUR},
            {"user_id": "u2"},
        ],
        nullable=True,
    )
    assert [row.user_id for row in users_clean(raw).collect()] == ["u2"]
    events = events_clean(raw_events(spark, [{"event_id": "e1", "user_id": "u1"}]))
    orders = orders_enriched(
        dedup_order_lines(raw_orders(spark, [{"user_id": "u1"}])),
        products_clean(raw_products(spark, [{}])),
    )
    assert [row.user_id for row in users_enriched(raw, events, orders).collect()] == ["u2"]


@pytest.fixture(params=ENGINES)
def etl_session(request: pytest.FixtureRequest) -> Any:
    """The shared Spark session, or the SQLFrame DuckDB one."""
    session = request.getfixturevalue("spark" if request.param == "spark" else "duckdb_session")
    assert engine_of(session) == request.param
    return session


def without_deleted_at(schema: pa.Schema) -> pa.Schema:
    return schema.remove(schema.get_field_index("deleted_at"))


def test_raw_files_from_before_deleted_at_read_with_it_null(
    etl_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    product = {
        "product_id": "p1",
        "product_name": "Shirt",
        "category": "Clothing",
        "category_path": None,
        "brand": None,
        "price": 100.0,
        "retail_price_inr": 150.0,
        "date": date(2026, 1, 1),
        "updated_at": T0,
        "ingest_ts": T0,
    }
    old_products = [product, {**product, "product_id": "p2"}]
    old_file = layout.pull_file("products", None, T0)
    write_parquet_atomic(
        pa.Table.from_pylist(old_products, without_deleted_at(RAW_PRODUCT_SCHEMA)), old_file
    )
    tombstone = {"product_id": "p2", "updated_at": T0 + HOUR, "ingest_ts": T0 + HOUR}
    tombstone["deleted_at"] = T0 + HOUR
    write_parquet_atomic(
        pa.Table.from_pylist([tombstone], RAW_PRODUCT_SCHEMA),
        layout.pull_file("products", T0 + HOUR, T0 + HOUR),
    )
    user: dict[str, Any] = {"user_id": "u1", "user_name": "Asha", "email": None, "city": None}
    user |= {"date": date(2026, 1, 1), "updated_at": T0, "ingest_ts": T0}
    write_parquet_atomic(
        pa.Table.from_pylist([user], without_deleted_at(RAW_USER_SCHEMA)),
        layout.pull_file("users", None, T0),
    )

    lake_read = read_dataset(old_file.rsplit("/", 1)[0], schema=RAW_PRODUCT_SCHEMA)
    assert lake_read.schema.field("deleted_at").type == RAW_PRODUCT_SCHEMA.field("deleted_at").type
    # The old file (read first: files are read in URL order), then the tombstone's.
    assert lake_read.column("product_id").to_pylist() == ["p1", "p2", "p2"]
    assert lake_read.column("deleted_at").to_pylist() == [None, None, T0 + HOUR]

    staged = to_arrow(extract_pulls(etl_session, layout, "products", RAW_PRODUCT_SCHEMA))
    by_id = sorted(
        zip(staged["product_id"].to_pylist(), staged["deleted_at"].to_pylist(), strict=True),
        key=lambda pair: (pair[0], pair[1] is not None),
    )
    assert by_id == [("p1", None), ("p2", None), ("p2", T0 + HOUR)]
    t = transforms(etl_session)
    clean = to_arrow(
        t.products.products_clean(
            extract_pulls(etl_session, layout, "products", RAW_PRODUCT_SCHEMA)
        )
    )
    assert clean["product_id"].to_pylist() == ["p1"]
    users = to_arrow(
        t.users.users_clean(extract_pulls(etl_session, layout, "users", RAW_USER_SCHEMA))
    )
    assert users["user_id"].to_pylist() == ["u1"]
