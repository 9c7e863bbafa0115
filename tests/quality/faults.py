"""Faults written into the curated zone past the ETL, through the lake's own write functions."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.lake import LakeLayout, read_dataset, replace_partition

UNKNOWN_PRODUCT = "NO-SUCH-PRODUCT-0001"


def _hour_rows(layout: LakeLayout, day: date, hour: int) -> tuple[str, pa.Table]:
    url = layout.curated_partition("events_clean", day, hour)
    table = read_dataset([url])
    return url, table.drop_columns([c for c in ("date", "hour") if c in table.column_names])


def duplicate_event(layout: LakeLayout, day: date, hour: int) -> str:
    """One event of the hour written twice into `events_clean`; returns its event_id."""
    url, table = _hour_rows(layout, day, hour)
    replace_partition(pa.concat_tables([table, table.slice(0, 1)]), url)
    return str(table.column("event_id")[0])


def unknown_product(layout: LakeLayout, day: date, hour: int) -> str:
    """One event of the hour made to name a product the catalogue does not have; its event_id."""
    url, table = _hour_rows(layout, day, hour)
    product = pc.if_else(
        pc.equal(pa.array(range(table.num_rows)), 0), UNKNOWN_PRODUCT, table.column("product_id")
    )
    column = table.schema.get_field_index("product_id")
    replace_partition(table.set_column(column, "product_id", product), url)
    return str(table.column("event_id")[0])


def volume_drop(layout: LakeLayout, day: date, hour: int, keep: float = 0.1) -> int:
    """Keep only `keep` of the hour's view and wishlist events (orders and returns stay, so the
    reconciliation still holds), in `events_clean` and `user_behavior` alike; rows left."""
    url, table = _hour_rows(layout, day, hour)
    browsing = pc.is_in(table.column("event_name"), pa.array(["view", "wishlist"]))
    index = pa.array(range(table.num_rows))
    kept_browsing = pc.less(index, int(table.num_rows * keep))
    mask = pc.or_(pc.invert(browsing), kept_browsing)
    kept = table.filter(mask)
    dropped = pc.filter(table.column("event_id"), pc.invert(mask))
    replace_partition(kept, url)
    behaviour_url = layout.curated_partition("user_behavior", day)
    behaviour = read_dataset([behaviour_url]).drop_columns(["date"])
    replace_partition(
        behaviour.filter(pc.invert(pc.is_in(behaviour.column("event_id"), dropped))),
        behaviour_url,
    )
    return int(kept.num_rows)
