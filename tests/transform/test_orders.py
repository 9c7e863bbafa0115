"""Order lines: latest version wins; amounts priced from the API, else the product."""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import SparkSession

from shopflow.transform.orders import (
    ORDER_LINE_COLUMNS,
    ORDERS_ENRICHED_COLUMNS,
    dedup_order_lines,
    orders_enriched,
)
from shopflow.transform.products import products_clean
from tests.transform.builders import T0, raw_orders, raw_products, utc

HOUR = timedelta(hours=1)


def test_an_order_line_updated_twice_keeps_the_latest(spark: SparkSession) -> None:
    raw = raw_orders(
        spark,
        [
            # Pulled out of order: the newest version arrives in the middle pull.
            {
                "quantity": 2,
                "status": "shipped",
                "updated_at": T0 + HOUR,
                "ingest_ts": T0 + 3 * HOUR,
            },
            {
                "quantity": 3,
                "status": "delivered",
                "updated_at": T0 + 2 * HOUR,
                "ingest_ts": T0 + 2 * HOUR,
            },
            {"quantity": 1, "status": "placed", "updated_at": T0, "ingest_ts": T0 + HOUR},
            # Another line of the same order is its own key.
            {"product_id": "p2", "quantity": 5},
        ],
    )
    lines = dedup_order_lines(raw)
    assert tuple(lines.columns) == ORDER_LINE_COLUMNS
    rows = {row.product_id: row for row in lines.collect()}
    assert set(rows) == {"p1", "p2"}
    assert (rows["p1"].quantity, rows["p1"].status) == (3, "delivered")
    assert utc(rows["p1"].updated_at) == T0 + 2 * HOUR
    assert rows["p2"].quantity == 5


def test_same_updated_at_goes_to_the_latest_pull(spark: SparkSession) -> None:
    raw = raw_orders(
        spark,
        [
            {"status": "shipped", "ingest_ts": T0 + 2 * HOUR},
            {"status": "placed", "ingest_ts": T0 + HOUR},
        ],
    )
    [row] = dedup_order_lines(raw).collect()
    assert row.status == "shipped"


def test_orders_enriched_prices_lines_and_totals_orders(spark: SparkSession) -> None:
    products = products_clean(
        raw_products(
            spark,
            [
                {"product_id": "p1", "product_name": "Shirt", "price": 90.0},
                {
                    "product_id": "p2",
                    "product_name": "Lamp",
                    "price": 250.0,
                    "category_path": '["Home >> Lighting"]',
                },
            ],
        )
    )
    raw = raw_orders(
        spark,
        [
            {"order_id": "o1", "product_id": "p1", "quantity": 3, "unit_price_inr": 100.0},
            # No price at order time: the product's price stands in.
            {"order_id": "o1", "product_id": "p2", "quantity": 2, "unit_price_inr": None},
            # A product the catalogue does not know yet keeps its line, without a name.
            {"order_id": "o2", "product_id": "p9", "quantity": 1, "unit_price_inr": 40.0},
        ],
        nullable=True,
    )
    enriched = orders_enriched(dedup_order_lines(raw), products)
    assert tuple(enriched.columns) == ORDERS_ENRICHED_COLUMNS
    rows = {(r.order_id, r.product_id): r for r in enriched.collect()}
    assert len(rows) == 3
    p1, p2, p9 = rows["o1", "p1"], rows["o1", "p2"], rows["o2", "p9"]
    assert (p1.product_name, p1.category, p1.unit_price_inr, p1.line_amount_inr) == (
        "Shirt",
        "Clothing",
        100.0,
        300.0,
    )
    assert (p2.product_name, p2.category, p2.unit_price_inr, p2.line_amount_inr) == (
        "Lamp",
        "Home",
        250.0,
        500.0,
    )
    assert p1.order_total_inr == p2.order_total_inr == 800.0
    assert (p9.product_name, p9.category, p9.line_amount_inr, p9.order_total_inr) == (
        None,
        None,
        40.0,
        40.0,
    )
