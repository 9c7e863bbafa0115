"""Order lines from the orders API: latest version of each line, priced and joined to products."""

from __future__ import annotations

from typing import Final

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from shopflow.schemas import ORDERS_ENRICHED
from shopflow.transform._common import clean_id, latest_per_key

#: Columns of `dedup_order_lines`, in order.
ORDER_LINE_COLUMNS: Final = (
    "order_id",
    "product_id",
    "user_id",
    "date",
    "order_ts",
    "quantity",
    "unit_price_inr",
    "status",
    "updated_at",
)

#: Columns of `orders_enriched`, in order.
ORDERS_ENRICHED_COLUMNS: Final = ORDERS_ENRICHED.column_names


def dedup_order_lines(raw_orders: DataFrame) -> DataFrame:
    """Raw order lines typed and trimmed, one per (order_id, product_id): latest `updated_at` wins.

    Ties on `updated_at` go to the latest pull (`ingest_ts`).
    """
    typed = raw_orders.select(
        clean_id(F.col("order_id").cast("string")).alias("order_id"),
        clean_id(F.col("product_id").cast("string")).alias("product_id"),
        clean_id(F.col("user_id").cast("string")).alias("user_id"),
        F.col("date").cast("date").alias("date"),
        F.col("order_ts").cast("timestamp").alias("order_ts"),
        F.col("quantity").cast("int").alias("quantity"),
        F.col("unit_price_inr").cast("double").alias("unit_price_inr"),
        F.lower(F.trim(F.col("status").cast("string"))).alias("status"),
        F.col("updated_at").cast("timestamp").alias("updated_at"),
        F.col("ingest_ts").cast("timestamp").alias("ingest_ts"),
    )
    latest = latest_per_key(
        typed,
        ["order_id", "product_id"],
        [F.col("updated_at").desc_nulls_last(), F.col("ingest_ts").desc_nulls_last()],
    )
    return latest.select(*ORDER_LINE_COLUMNS)


def orders_enriched(order_lines: DataFrame, products_clean: DataFrame) -> DataFrame:
    """Order lines with product name and category, `line_amount_inr` and `order_total_inr`.

    The unit price is the API's price at order time, else the product's current price. The order
    total sums every line of the order whatever its status (the amount as placed).
    """
    products = products_clean.select(
        F.col("product_id").alias("_product_id"),
        "product_name",
        "category",
        F.col("price").alias("_product_price"),
    )
    joined = order_lines.join(
        products, order_lines["product_id"] == products["_product_id"], "left"
    )
    unit_price = F.coalesce(F.col("unit_price_inr"), F.col("_product_price"))
    line_amount = F.col("quantity").cast("double") * F.col("unit_price_inr")
    return (
        joined.withColumn("unit_price_inr", unit_price)
        .withColumn("line_amount_inr", line_amount)
        .withColumn(
            "order_total_inr", F.sum("line_amount_inr").over(Window.partitionBy("order_id"))
        )
        .select(*ORDERS_ENRICHED_COLUMNS)
    )
