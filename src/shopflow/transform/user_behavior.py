"""The unified table: every distinct event with its product's and user's names at its time."""

from __future__ import annotations

from typing import Final

from pyspark.sql import DataFrame

from shopflow.schemas import USER_BEHAVIOR
from shopflow.transform.history import as_of_event

#: Columns of `user_behavior`, in order (the first nine are the seed's unified table).
USER_BEHAVIOR_COLUMNS: Final = USER_BEHAVIOR.column_names


def user_behavior(
    events_clean: DataFrame, products_history: DataFrame, users_history: DataFrame
) -> DataFrame:
    """One row per event of `events_clean`, with the product's name and category and the user's
    name as they were at the event's time (`shopflow.transform.history`: an event before a key's
    first known version takes that first version); null when the product or user is unknown.

    The histories' versions of a key do not overlap, so the joins cannot add rows.
    """
    with_product = as_of_event(
        events_clean, products_history, "product_id", ("product_name", "category")
    )
    with_user = as_of_event(with_product, users_history, "user_id", ("user_name",))
    return with_user.select(*USER_BEHAVIOR_COLUMNS)
