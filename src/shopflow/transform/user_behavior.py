"""The unified table: every distinct event with its product's and user's names."""

from __future__ import annotations

from typing import Final

from pyspark.sql import DataFrame

#: Columns of `user_behavior`, in order (the first nine are the seed's unified table).
USER_BEHAVIOR_COLUMNS: Final = (
    "date",
    "event_id",
    "event_name",
    "price",
    "product_id",
    "product_name",
    "user_id",
    "user_name",
    "order_id",
    "event_ts",
    "session_id",
    "category",
)


def user_behavior(
    events_clean: DataFrame, products_clean: DataFrame, users_clean: DataFrame
) -> DataFrame:
    """One row per event of `events_clean`; product and user names are null when unknown.

    `products_clean` and `users_clean` hold one row per key, so the left joins cannot add rows.
    """
    products = products_clean.select(
        products_clean["product_id"].alias("_pid"), "product_name", "category"
    )
    users = users_clean.select(users_clean["user_id"].alias("_uid"), "user_name")
    return (
        events_clean.join(products, events_clean["product_id"] == products["_pid"], "left")
        .join(users, events_clean["user_id"] == users["_uid"], "left")
        .select(*USER_BEHAVIOR_COLUMNS)
    )
