"""Building blocks the entity transforms share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

# Runs of whitespace, including the no-break and narrow no-break spaces scraped catalogues carry.
_WHITESPACE_RUN = "[\\s\u00a0\u2007\u202f]+"


def normalise_text(column: Column) -> Column:
    """Whitespace runs (NBSP too) collapsed to one space and trimmed; empty becomes null."""
    collapsed = F.trim(F.regexp_replace(column, _WHITESPACE_RUN, " "))
    return F.when(collapsed == "", F.lit(None).cast("string")).otherwise(collapsed)


def clean_id(column: Column) -> Column:
    """An identifier trimmed; empty becomes null."""
    trimmed = F.trim(column)
    return F.when(trimmed == "", F.lit(None).cast("string")).otherwise(trimmed)


def latest_per_key(df: DataFrame, keys: Sequence[str], newest_first: Sequence[Column]) -> DataFrame:
    """One row per key: the first by `newest_first` (callers end it with a deterministic tie-break)."""
    rank = F.row_number().over(Window.partitionBy(*keys).orderBy(*newest_first))
    return df.withColumn("_rank", rank).where(F.col("_rank") == 1).drop("_rank")


def safe_ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as a double, null when the denominator is zero or null."""
    return F.when(denominator > 0, numerator.cast("double") / denominator.cast("double"))


def fill_nulls(df: DataFrame, values: Mapping[str, int | float]) -> DataFrame:
    """Nulls in the named columns replaced by their value: the portable form of `fillna`.

    (SQLFrame's `fillna` leaves the columns of a join's outer side null.) Columns keep their type
    and order.
    """
    return df.select(
        *(
            F.coalesce(F.col(name), F.lit(values[name])).alias(name) if name in values else name
            for name in df.columns
        )
    )
