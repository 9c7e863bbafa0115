"""The product catalogue: deduplicated and normalised, and a per-category summary."""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopflow.schemas import CATEGORY_SUMMARY, PRODUCTS_CLEAN
from shopflow.transform._common import clean_id, fill_nulls, latest_per_key, normalise_text
from shopflow.transform.history import PRODUCTS_HISTORY_COLUMNS, versions

#: Columns of `products_clean`, in order.
PRODUCTS_CLEAN_COLUMNS: Final = PRODUCTS_CLEAN.column_names

#: Columns of `category_summary`, in order.
CATEGORY_SUMMARY_COLUMNS: Final = CATEGORY_SUMMARY.column_names

#: Category label for products without one, and for events or orders of unknown products.
UNKNOWN_CATEGORY: Final = "unknown"

# Catalogue paths look like `["Clothing >> Women's Clothing >> ..."]`; the wrapper is optional.
_PATH_WRAPPER = '^[\\[\\s"]+|[\\]\\s"]+$'
_PATH_SEPARATOR = "\\s*>>\\s*"


def _price_band(price: Column) -> Column:
    return (
        F.when(price.isNull(), F.lit(None).cast("string"))
        .when(price < 500, "under_500")
        .when(price < 2000, "500_to_1999")
        .when(price < 10000, "2000_to_9999")
        .otherwise("10000_plus")
    )


def staged_products(raw_products: DataFrame) -> DataFrame:
    """Every raw product row, text normalised and category levels parsed (with `ingest_ts`, and
    `deleted_at` set on a tombstone: a product deleted from the shop database).

    `category_l1`/`category_l2` are the first two levels of `category_path`; `category` is the
    database's category, else `category_l1`. `price_band` is under_500, 500_to_1999, 2000_to_9999
    or 10000_plus (INR).
    """
    typed = raw_products.select(
        clean_id(F.col("product_id").cast("string")).alias("product_id"),
        normalise_text(F.col("product_name").cast("string")).alias("product_name"),
        normalise_text(F.col("brand").cast("string")).alias("brand"),
        normalise_text(F.col("category").cast("string")).alias("category"),
        normalise_text(
            F.regexp_replace(F.col("category_path").cast("string"), _PATH_WRAPPER, "")
        ).alias("category_path"),
        F.col("price").cast("double").alias("price"),
        F.col("retail_price_inr").cast("double").alias("retail_price_inr"),
        F.col("date").cast("date").alias("date"),
        F.col("updated_at").cast("timestamp").alias("updated_at"),
        F.col("ingest_ts").cast("timestamp").alias("ingest_ts"),
        F.col("deleted_at").cast("timestamp").alias("deleted_at"),
    )
    levels = F.split(F.col("category_path"), _PATH_SEPARATOR)
    level_1 = normalise_text(F.when(F.size(levels) >= 1, levels.getItem(0)))
    level_2 = normalise_text(F.when(F.size(levels) >= 2, levels.getItem(1)))
    return (
        typed.withColumn("category_l1", F.coalesce(level_1, F.col("category")))
        .withColumn("category_l2", level_2)
        .withColumn("category", F.coalesce(F.col("category"), F.col("category_l1")))
        .withColumn("price_band", _price_band(F.col("price")))
    )


def products_clean(raw_products: DataFrame) -> DataFrame:
    """One row per product_id (latest `updated_at`, then latest pull), as `staged_products`; a
    product whose latest raw row is a tombstone (`deleted_at` set) is left out."""
    latest = latest_per_key(
        staged_products(raw_products),
        ["product_id"],
        [F.col("updated_at").desc_nulls_last(), F.col("ingest_ts").desc_nulls_last()],
    ).where(F.col("deleted_at").isNull())
    return latest.select(*PRODUCTS_CLEAN_COLUMNS)


def products_history(raw_products: DataFrame) -> DataFrame:
    """Every version of every product the pulls saw, type-2 style (`shopflow.transform.history`).

    Tombstones are not versions: a deleted product keeps its last name for its events.
    """
    staged = staged_products(raw_products).where(F.col("deleted_at").isNull())
    return versions(staged, "product_id", ("product_name", "category")).select(
        *PRODUCTS_HISTORY_COLUMNS
    )


def _category(column: str = "category") -> Column:
    return F.coalesce(F.col(column), F.lit(UNKNOWN_CATEGORY)).alias("category")


def _band_count(band: str) -> Column:
    return F.sum(F.when(F.col("price_band") == band, 1).otherwise(0)).cast("long")


def _event_count(event_name: str) -> Column:
    return F.sum(F.when(F.col("event_name") == event_name, 1).otherwise(0)).cast("long")


def category_summary(
    products_clean: DataFrame, events_clean: DataFrame, orders_enriched: DataFrame
) -> DataFrame:
    """Per category: products and their price spread and bands, event counts, orders and revenue.

    Views, wishlists and returns count events; orders, units and revenue come from the orders API
    and leave out cancelled lines. Unknown products fall under `UNKNOWN_CATEGORY`.
    """
    catalogue = _catalogue(products_clean)
    product_category = catalogue.select(F.col("product_id").alias("_pid"), "category")
    events = events_clean.select("product_id", "event_name")
    event_stats = (
        events.join(product_category, events["product_id"] == product_category["_pid"], "left")
        .select(_category(), "event_name")
        .groupBy("category")
        .agg(
            _event_count("view").alias("views"),
            _event_count("wishlist").alias("wishlists"),
            _event_count("return").alias("returns"),
        )
    )
    return _summary(catalogue, event_stats, orders_enriched)


def category_summary_from_daily(
    products_clean: DataFrame, product_activity_daily: DataFrame, orders_enriched: DataFrame
) -> DataFrame:
    """`category_summary` with the event counts summed over every date of `product_activity_daily`.

    Each product's counts are summed over its dates first, then placed in the product's current
    category, so a product that changed category moves all its history, as with `category_summary`.
    """
    catalogue = _catalogue(products_clean)
    product_category = catalogue.select(F.col("product_id").alias("_pid"), "category")
    counts = ("views", "wishlists", "returns")
    per_product = product_activity_daily.groupBy("product_id").agg(
        *(F.sum(name).cast("long").alias(name) for name in counts)
    )
    event_stats = (
        per_product.join(
            product_category, per_product["product_id"] == product_category["_pid"], "left"
        )
        .select(_category(), *counts)
        .groupBy("category")
        .agg(*(F.sum(name).cast("long").alias(name) for name in counts))
    )
    return _summary(catalogue, event_stats, orders_enriched)


def _catalogue(products_clean: DataFrame) -> DataFrame:
    return products_clean.select("product_id", _category(), "price", "price_band")


def _summary(catalogue: DataFrame, event_stats: DataFrame, orders_enriched: DataFrame) -> DataFrame:
    """Product stats of `catalogue`, the given per-category event counts and the API's orders."""
    product_stats = catalogue.groupBy("category").agg(
        F.count(F.lit(1)).cast("long").alias("products"),
        F.min("price").alias("min_price_inr"),
        F.avg("price").alias("avg_price_inr"),
        F.max("price").alias("max_price_inr"),
        _band_count("under_500").alias("products_under_500_inr"),
        _band_count("500_to_1999").alias("products_500_to_1999_inr"),
        _band_count("2000_to_9999").alias("products_2000_to_9999_inr"),
        _band_count("10000_plus").alias("products_10000_plus_inr"),
    )
    order_stats = (
        orders_enriched.where(F.col("status") != "cancelled")
        .select(_category(), "order_id", "quantity", "line_amount_inr")
        .groupBy("category")
        .agg(
            F.countDistinct("order_id").cast("long").alias("orders"),
            F.sum("quantity").cast("long").alias("units_sold"),
            F.sum("line_amount_inr").alias("revenue_inr"),
        )
    )
    categories = (
        product_stats.select("category")
        .union(event_stats.select("category"))
        .union(order_stats.select("category"))
        .distinct()
    )
    summary = (
        categories.join(product_stats, "category", "left")
        .join(event_stats, "category", "left")
        .join(order_stats, "category", "left")
    )
    zero_filled = [
        "products",
        *(c for c in CATEGORY_SUMMARY_COLUMNS if c.startswith("products_")),
        "views",
        "wishlists",
        "returns",
        "orders",
        "units_sold",
    ]
    zeros: dict[str, int | float] = {**dict.fromkeys(zero_filled, 0), "revenue_inr": 0.0}
    return fill_nulls(summary.select(*CATEGORY_SUMMARY_COLUMNS), zeros)
