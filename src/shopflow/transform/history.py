"""Type-2 history of products and users from the catalogue pulls, and point-in-time lookups.

Every pull of the shop database lands the rows changed since the previous one, so the raw zone
holds each version of a product or user the pulls saw, stamped with the database's `updated_at`.
A version is valid from its `updated_at` until the next version's (`valid_to`, null for the
current one). An event takes the names of the version valid at its `event_ts`.

The rule for an event older than every known version (a product listed, or a user who signed up,
after an anonymous event; or history from before the first pull): it takes the **first** known
version. That choice depends only on history before the event's own time plus the first version,
so a later rename never changes it: recomputing any date at any later time gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

#: The columns and types of `products_history`, declared here only (engine-neutral type names:
#: this module also runs under SQLFrame, so it builds no Spark types).
PRODUCTS_HISTORY_FIELDS: Final = (
    ("product_id", "string"),
    ("product_name", "string"),
    ("category", "string"),
    ("valid_from", "timestamp"),
    ("valid_to", "timestamp"),
    ("is_first_version", "boolean"),
)
#: The columns and types of `users_history`.
USERS_HISTORY_FIELDS: Final = (
    ("user_id", "string"),
    ("user_name", "string"),
    ("valid_from", "timestamp"),
    ("valid_to", "timestamp"),
    ("is_first_version", "boolean"),
)
#: Columns of `products_history`, in order.
PRODUCTS_HISTORY_COLUMNS: Final = tuple(name for name, _ in PRODUCTS_HISTORY_FIELDS)
#: Columns of `users_history`, in order.
USERS_HISTORY_COLUMNS: Final = tuple(name for name, _ in USERS_HISTORY_FIELDS)


def versions(typed: DataFrame, key: str, attributes: Sequence[str]) -> DataFrame:
    """One row per (key, `updated_at`) of staged catalogue rows (the latest pull of the same
    version wins), with `valid_from`, `valid_to` and `is_first_version`.

    `typed` has `key`, `attributes`, `updated_at` and `ingest_ts`, already cleaned.
    """
    known = typed.where(F.col(key).isNotNull() & F.col("updated_at").isNotNull())
    newest_pull = Window.partitionBy(key, "updated_at").orderBy(
        F.col("ingest_ts").desc_nulls_last(), *(F.col(a).asc_nulls_last() for a in attributes)
    )
    deduped = (
        known.withColumn("_pull_rank", F.row_number().over(newest_pull))
        .where(F.col("_pull_rank") == 1)
        .drop("_pull_rank")
    )
    in_time = Window.partitionBy(key).orderBy(F.col("updated_at").asc())
    return deduped.select(
        key,
        *attributes,
        F.col("updated_at").alias("valid_from"),
        F.lead("updated_at").over(in_time).alias("valid_to"),
        (F.row_number().over(in_time) == 1).alias("is_first_version"),
    )


def as_of_event(
    events: DataFrame, history: DataFrame, key: str, attributes: Sequence[str]
) -> DataFrame:
    """`events` with `attributes` of the version of `key` valid at each event's `event_ts` (null
    for a key the history does not know). Versions do not overlap, so no event is repeated."""
    lookup = history.select(
        history[key].alias("_history_key"),
        *(history[a].alias(f"_history_{a}") for a in attributes),
        history["valid_from"].alias("_valid_from"),
        history["valid_to"].alias("_valid_to"),
        history["is_first_version"].alias("_is_first_version"),
    )
    starts = (F.col("event_ts") >= F.col("_valid_from")) | F.col("_is_first_version")
    ends = F.col("_valid_to").isNull() | (F.col("event_ts") < F.col("_valid_to"))
    joined = events.join(lookup, (events[key] == lookup["_history_key"]) & starts & ends, "left")
    return joined.select(
        *(events[c] for c in events.columns),
        *(F.col(f"_history_{a}").alias(a) for a in attributes),
    )
