"""Shop users: the latest record per user, and their behaviour, orders and activity span."""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from shopflow.schemas import USERS_ENRICHED
from shopflow.transform._common import clean_id, fill_nulls, latest_per_key, normalise_text
from shopflow.transform.history import USERS_HISTORY_COLUMNS, versions

#: Columns of `users_clean`, in order (`date` is the sign-up date).
USERS_CLEAN_COLUMNS: Final = ("user_id", "user_name", "email", "city", "date", "updated_at")

#: Columns of `users_enriched`, in order.
USERS_ENRICHED_COLUMNS: Final = USERS_ENRICHED.column_names


def staged_users(raw_users: DataFrame) -> DataFrame:
    """Every raw user row, names and emails normalised (with `ingest_ts`, and `deleted_at` set on
    a tombstone: a user deleted from the shop database)."""
    return raw_users.select(
        clean_id(F.col("user_id").cast("string")).alias("user_id"),
        normalise_text(F.col("user_name").cast("string")).alias("user_name"),
        F.lower(clean_id(F.col("email").cast("string"))).alias("email"),
        normalise_text(F.col("city").cast("string")).alias("city"),
        F.col("date").cast("date").alias("date"),
        F.col("updated_at").cast("timestamp").alias("updated_at"),
        F.col("ingest_ts").cast("timestamp").alias("ingest_ts"),
        F.col("deleted_at").cast("timestamp").alias("deleted_at"),
    )


def users_clean(raw_users: DataFrame) -> DataFrame:
    """One row per user_id (latest `updated_at`, then latest pull), as `staged_users`; a user
    whose latest raw row is a tombstone (`deleted_at` set) is left out."""
    latest = latest_per_key(
        staged_users(raw_users),
        ["user_id"],
        [F.col("updated_at").desc_nulls_last(), F.col("ingest_ts").desc_nulls_last()],
    ).where(F.col("deleted_at").isNull())
    return latest.select(*USERS_CLEAN_COLUMNS)


def users_history(raw_users: DataFrame) -> DataFrame:
    """Every version of every user the pulls saw, type-2 style (`shopflow.transform.history`)."""
    # Tombstones are not versions: a deleted user keeps their last name for their events.
    staged = staged_users(raw_users).where(F.col("deleted_at").isNull())
    return versions(staged, "user_id", ("user_name",)).select(*USERS_HISTORY_COLUMNS)


def _event_count(event_name: str) -> Column:
    return F.sum(F.when(F.col("event_name") == event_name, 1).otherwise(0)).cast("long")


def users_enriched(
    raw_users: DataFrame, events_clean: DataFrame, orders_enriched: DataFrame
) -> DataFrame:
    """Each known user with behaviour counts, sessions, orders, ordered amount, first/last event.

    `ordered_amount_inr` sums the user's order lines from the orders API, leaving out cancelled
    lines; returns are not netted (that is *spend*, defined once in docs/metrics.md and computed by
    the metric views from events). Users with no activity have zero counts and null first/last
    seen.
    """
    activity = events_clean.groupBy(F.col("user_id").alias("_uid_events")).agg(
        F.count(F.lit(1)).cast("long").alias("events"),
        _event_count("view").alias("views"),
        _event_count("wishlist").alias("wishlists"),
        _event_count("order").alias("order_events"),
        _event_count("return").alias("returns"),
        # Sessions as user_activity_daily counts them: each on the date of its start.
        F.countDistinct(
            F.when(
                F.to_date(F.col("session_start_ts")) == F.col("date"),
                F.concat_ws(
                    "|",
                    F.col("session_id"),
                    F.unix_micros(F.col("session_start_ts")).cast("string"),
                ),
            )
        )
        .cast("long")
        .alias("sessions"),
        F.min("event_ts").alias("first_seen_ts"),
        F.max("event_ts").alias("last_seen_ts"),
    )
    return _enriched(users_clean(raw_users), activity, orders_enriched)


def users_enriched_from_daily(
    users_clean: DataFrame, user_activity_daily: DataFrame, orders_enriched: DataFrame
) -> DataFrame:
    """`users_enriched` from `users_clean` and the sum over every date of `user_activity_daily`.

    The same table as `users_enriched` over the events those dates were computed from (sessions
    are the sum of sessions started each date).
    """
    activity = user_activity_daily.groupBy(F.col("user_id").alias("_uid_events")).agg(
        *(
            F.sum(name).cast("long").alias(name)
            for name in ("events", "views", "wishlists", "order_events", "returns")
        ),
        F.sum("sessions_started").cast("long").alias("sessions"),
        F.min("first_seen_ts").alias("first_seen_ts"),
        F.max("last_seen_ts").alias("last_seen_ts"),
    )
    return _enriched(users_clean, activity, orders_enriched)


def _enriched(users: DataFrame, activity: DataFrame, orders_enriched: DataFrame) -> DataFrame:
    ordered = (
        orders_enriched.where(F.col("status") != "cancelled")
        .groupBy(F.col("user_id").alias("_uid_orders"))
        .agg(
            F.countDistinct("order_id").cast("long").alias("orders"),
            F.sum("line_amount_inr").alias("ordered_amount_inr"),
        )
    )
    enriched = users.join(activity, users["user_id"] == activity["_uid_events"], "left").join(
        ordered, users["user_id"] == ordered["_uid_orders"], "left"
    )
    counts = ["events", "views", "wishlists", "order_events", "returns", "sessions", "orders"]
    zeros: dict[str, int | float] = {**dict.fromkeys(counts, 0), "ordered_amount_inr": 0.0}
    return fill_nulls(enriched.select(*USERS_ENRICHED_COLUMNS), zeros)
