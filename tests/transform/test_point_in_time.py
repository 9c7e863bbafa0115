"""`user_behavior` carries names as they were when each event happened (type-2 history), so a
rename after the events never changes older dates, however often they are recomputed."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from shopflow.contracts import RAW_PRODUCT_SCHEMA, RAW_USER_SCHEMA
from shopflow.lake import LakeLayout, read_dataset
from shopflow.settings import Settings
from shopflow.transform.jobs import EtlRequest, backfill_request, run_etl
from tests.transform.builders import DAY, T0
from tests.transform.test_jobs import HOUR, _event, commit_pull, land

NEXT_DAY = DAY + timedelta(days=1)


def _product(name: str, updated_at: datetime, category: str = "Shirts") -> dict[str, Any]:
    return {
        "product_id": "p1",
        "product_name": name,
        "category": category,
        "category_path": None,
        "brand": "Acme",
        "price": 100.0,
        "retail_price_inr": 120.0,
        "date": DAY,
        "updated_at": updated_at,
        "ingest_ts": updated_at + timedelta(minutes=1),
    }


def _user(name: str, updated_at: datetime) -> dict[str, Any]:
    return {
        "user_id": "u1",
        "user_name": name,
        "email": None,
        "city": None,
        "date": DAY,
        "updated_at": updated_at,
        "ingest_ts": updated_at + timedelta(minutes=1),
    }


def _behavior(layout: LakeLayout, day: date) -> list[dict[str, Any]]:
    rows = read_dataset(layout.curated_partition("user_behavior", day)).to_pylist()
    return sorted(rows, key=lambda r: r["event_id"])


def test_renames_after_the_events_leave_older_dates_unchanged_and_new_events_take_new_names(
    duckdb_session: Any, settings: Settings
) -> None:
    layout = LakeLayout.from_settings(settings)
    # Catalogue pulled before the events; events on DAY.
    commit_pull(
        layout, "products", pa.Table.from_pylist([_product("Shirt", T0)], RAW_PRODUCT_SCHEMA), T0
    )
    commit_pull(layout, "users", pa.Table.from_pylist([_user("Asha", T0)], RAW_USER_SCHEMA), T0)
    land(layout, "a", [_event("e1", HOUR), _event("e2", 2 * HOUR, event_name="wishlist")])
    run_etl(duckdb_session, settings, EtlRequest())
    before = _behavior(layout, DAY)
    assert [(r["product_name"], r["category"], r["user_name"]) for r in before] == [
        ("Shirt", "Shirts", "Asha"),
        ("Shirt", "Shirts", "Asha"),
    ]

    # Both renamed after DAY's events (a later pull), then events on the next date.
    renamed_at = T0 + timedelta(days=1)
    commit_pull(
        layout,
        "products",
        pa.Table.from_pylist([_product("Oxford Shirt", renamed_at, "Formal")], RAW_PRODUCT_SCHEMA),
        renamed_at,
    )
    commit_pull(
        layout,
        "users",
        pa.Table.from_pylist([_user("Asha Rao", renamed_at)], RAW_USER_SCHEMA),
        renamed_at,
    )
    land(layout, "b", [_event("e3", timedelta(days=1, hours=2))])
    run_etl(duckdb_session, settings, EtlRequest())
    # Every older date recomputed, on purpose: its rows are the same.
    run_etl(duckdb_session, settings, backfill_request(DAY.isoformat(), NEXT_DAY.isoformat()))
    assert _behavior(layout, DAY) == before
    after = _behavior(layout, NEXT_DAY)
    assert [(r["product_name"], r["category"], r["user_name"]) for r in after] == [
        ("Oxford Shirt", "Formal", "Asha Rao")
    ]
    # The snapshot table names the product by its latest name.
    products = read_dataset(layout.curated_root("products_clean")).to_pylist()
    assert [p["product_name"] for p in products] == ["Oxford Shirt"]
    history = read_dataset(layout.curated_root("products_history")).to_pylist()
    assert sorted((h["product_name"], h["valid_to"] is None) for h in history) == [
        ("Oxford Shirt", True),
        ("Shirt", False),
    ]


def test_an_event_before_a_users_first_known_version_takes_that_first_version(
    duckdb_session: Any, settings: Settings
) -> None:
    """The stated rule for an anonymous event by a user who signs up (is pulled) later."""
    layout = LakeLayout.from_settings(settings)
    commit_pull(
        layout, "products", pa.Table.from_pylist([_product("Shirt", T0)], RAW_PRODUCT_SCHEMA), T0
    )
    land(layout, "a", [_event("e1", HOUR)])
    run_etl(duckdb_session, settings, EtlRequest())
    assert _behavior(layout, DAY)[0]["user_name"] is None  # not known yet

    signed_up = T0 + timedelta(days=2)
    commit_pull(
        layout,
        "users",
        pa.Table.from_pylist([_user("Asha", signed_up)], RAW_USER_SCHEMA),
        signed_up,
    )
    renamed = T0 + timedelta(days=3)
    commit_pull(
        layout,
        "users",
        pa.Table.from_pylist([_user("Asha Rao", renamed)], RAW_USER_SCHEMA),
        renamed,
    )
    run_etl(duckdb_session, settings, backfill_request(DAY.isoformat(), DAY.isoformat()))
    assert _behavior(layout, DAY)[0]["user_name"] == "Asha"  # the first version, not the latest
