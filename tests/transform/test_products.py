"""Products: dedup by product_id, normalised text, category levels, price bands, summary."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import SparkSession

from shopflow.transform.events import events_clean
from shopflow.transform.orders import dedup_order_lines, orders_enriched
from shopflow.transform.products import (
    CATEGORY_SUMMARY_COLUMNS,
    PRODUCTS_CLEAN_COLUMNS,
    UNKNOWN_CATEGORY,
    category_summary,
    products_clean,
)
from tests.transform.builders import T0, by_key, raw_events, raw_orders, raw_products, utc

HOUR = timedelta(hours=1)


def test_a_duplicate_pid_keeps_the_latest_record_with_normalised_text(spark: SparkSession) -> None:
    raw = raw_products(
        spark,
        [
            {
                "product_name": "New\u00a0 Blue  Shirt\tXL ",
                "brand": " Acme\u00a0Co ",
                "updated_at": T0 + HOUR,
                "ingest_ts": T0 + HOUR,
            },
            {
                "product_name": "Old Shirt",
                "brand": "Acme",
                "updated_at": T0,
                "ingest_ts": T0 + 2 * HOUR,
            },
        ],
    )
    clean = products_clean(raw)
    assert tuple(clean.columns) == PRODUCTS_CLEAN_COLUMNS
    [row] = clean.collect()
    assert (row.product_id, row.product_name, row.brand) == ("p1", "New Blue Shirt XL", "Acme Co")
    assert utc(row.updated_at) == T0 + HOUR


def test_category_levels_and_price_bands(spark: SparkSession) -> None:
    raw = raw_products(
        spark,
        [
            {
                "product_id": "p1",
                "price": 100.0,
                "category_path": '["Clothing >> Men\'s  Clothing >> Shirts >> Formal"]',
            },
            {"product_id": "p2", "price": 500.0, "category_path": '["Furniture"]'},
            {"product_id": "p3", "price": 9999.99, "category_path": None, "category": "Books"},
            {
                "product_id": "p4",
                "price": 10000.0,
                "category_path": "Home>>Lighting",
                "category": "Home Decor",
            },
            {"product_id": "p5", "price": None, "category_path": None, "category": None},
        ],
        nullable=True,
    )
    rows = by_key(products_clean(raw).collect(), "product_id")
    levels = {
        pid: (r.category, r.category_l1, r.category_l2, r.price_band) for pid, r in rows.items()
    }
    assert levels == {
        "p1": ("Clothing", "Clothing", "Men's Clothing", "under_500"),
        "p2": ("Furniture", "Furniture", None, "500_to_1999"),
        "p3": ("Books", "Books", None, "2000_to_9999"),
        "p4": ("Home Decor", "Home", "Lighting", "10000_plus"),
        "p5": (None, None, None, None),
    }
    assert rows["p1"].category_path == "Clothing >> Men's Clothing >> Shirts >> Formal"


def test_category_summary(spark: SparkSession) -> None:
    products = products_clean(
        raw_products(
            spark,
            [
                {"product_id": "p1", "price": 100.0},
                {"product_id": "p2", "price": 2500.0},
                {"product_id": "p3", "price": 12000.0, "category_path": '["Furniture >> Beds"]'},
            ],
        )
    )
    events = events_clean(
        raw_events(
            spark,
            [
                {"event_id": "v1", "product_id": "p1"},
                {"event_id": "v2", "product_id": "p1"},
                {"event_id": "v3", "product_id": "p2"},
                {"event_id": "v4", "product_id": "p3"},
                {"event_id": "v5", "product_id": "p9"},
                {"event_id": "w1", "product_id": "p2", "event_name": "wishlist"},
                {"event_id": "r1", "product_id": "p1", "event_name": "return", "order_id": "o1"},
            ],
        )
    )
    orders = orders_enriched(
        dedup_order_lines(
            raw_orders(
                spark,
                [
                    {"order_id": "o1", "product_id": "p1", "quantity": 2, "unit_price_inr": 100.0},
                    {
                        "order_id": "o1",
                        "product_id": "p2",
                        "quantity": 1,
                        "unit_price_inr": 2500.0,
                        "status": "delivered",
                    },
                    {
                        "order_id": "o2",
                        "product_id": "p3",
                        "quantity": 1,
                        "unit_price_inr": 12000.0,
                        "status": "cancelled",
                    },
                    {"order_id": "o3", "product_id": "p9", "quantity": 1, "unit_price_inr": 50.0},
                ],
            )
        ),
        products,
    )
    summary = category_summary(products, events, orders)
    assert tuple(summary.columns) == CATEGORY_SUMMARY_COLUMNS
    rows = {row.category: row.asDict() for row in summary.collect()}
    assert rows == {
        "Clothing": {
            "category": "Clothing",
            "products": 2,
            "min_price_inr": 100.0,
            "avg_price_inr": 1300.0,
            "max_price_inr": 2500.0,
            "products_under_500_inr": 1,
            "products_500_to_1999_inr": 0,
            "products_2000_to_9999_inr": 1,
            "products_10000_plus_inr": 0,
            "views": 3,
            "wishlists": 1,
            "returns": 1,
            "orders": 1,
            "units_sold": 3,
            "revenue_inr": 2700.0,
        },
        "Furniture": {
            "category": "Furniture",
            "products": 1,
            "min_price_inr": 12000.0,
            "avg_price_inr": 12000.0,
            "max_price_inr": 12000.0,
            "products_under_500_inr": 0,
            "products_500_to_1999_inr": 0,
            "products_2000_to_9999_inr": 0,
            "products_10000_plus_inr": 1,
            "views": 1,
            "wishlists": 0,
            "returns": 0,
            "orders": 0,
            "units_sold": 0,
            "revenue_inr": 0.0,  # its only order was cancelled
        },
        UNKNOWN_CATEGORY: {
            "category": UNKNOWN_CATEGORY,
            "products": 0,
            "min_price_inr": None,
            "avg_price_inr": None,
            "max_price_inr": None,
            "products_under_500_inr": 0,
            "products_500_to_1999_inr": 0,
            "products_2000_to_9999_inr": 0,
            "products_10000_plus_inr": 0,
            "views": 1,
            "wishlists": 0,
            "returns": 0,
            "orders": 1,
            "units_sold": 1,
            "revenue_inr": 50.0,
        },
    }
