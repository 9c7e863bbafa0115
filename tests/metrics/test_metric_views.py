"""The five metric views on the hand-computed tiny dataset, in DuckDB and in the BigQuery emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shopflow.lake import LakeLayout
from shopflow.metrics import (
    METRIC_NAMES,
    METRIC_VIEWS,
    create_view_sql,
    load_warehouse,
    metric_view,
    select_sql,
)
from shopflow.settings import Settings
from shopflow.warehouse import Warehouse, open_warehouse
from tests.warehouse.tiny_lake import (
    EXPECTED_AVG_SPEND,
    EXPECTED_DAILY_TRAFFIC,
    EXPECTED_DAILY_TRAFFIC_KOLKATA_CHANGES,
    EXPECTED_ORDERS_BY_DATE,
    EXPECTED_TOP_PRODUCTS,
    EXPECTED_UNIQUE_VISITORS,
)


@pytest.fixture(params=["duckdb", pytest.param("bigquery", marks=pytest.mark.integration)])
def loaded(
    request: pytest.FixtureRequest, settings: Settings, tiny_lake: LakeLayout
) -> Iterator[Warehouse]:
    """The tiny dataset loaded, with views, into DuckDB or the BigQuery emulator."""
    if request.param == "duckdb":
        warehouse = open_warehouse(settings)
        load_warehouse(settings, warehouse=warehouse)
        yield warehouse
        warehouse.close()
    else:
        warehouse = request.getfixturevalue("bq_warehouse")
        load_warehouse(settings, warehouse=warehouse)
        yield warehouse


def _rows(warehouse: Warehouse, name: str) -> list[dict[str, Any]]:
    dataset = getattr(warehouse, "dataset_ref", None)
    return warehouse.query(select_sql(metric_view(name), warehouse.dialect, dataset))


def test_top_products(loaded: Warehouse) -> None:
    rows = _rows(loaded, "metric_top_products")
    got = [
        (
            r["product_id"],
            r["sold"],
            r["wishlisted"],
            r["returned"],
            r["viewed"],
            r["sold_rank"],
            r["wishlisted_rank"],
            r["returned_rank"],
        )
        for r in rows
    ]
    assert got == EXPECTED_TOP_PRODUCTS
    assert [r["product_name"] for r in rows] == ["Desk Lamp", "Cotton Kurta", "Steel Mug"]


def test_avg_spend_per_session(loaded: Warehouse) -> None:
    rows = _rows(loaded, "metric_avg_spend_per_session")
    got = [
        (
            r["scope"],
            r["user_id"],
            r["sessions"],
            r["order_amount_inr"],
            r["return_amount_inr"],
            r["spend_inr"],
            r["avg_spend_per_session_inr"],
        )
        for r in rows
    ]
    assert got == [pytest.approx(row) for row in EXPECTED_AVG_SPEND]


def test_unique_visitors(loaded: Warehouse) -> None:
    rows = _rows(loaded, "metric_unique_visitors")
    assert [(r["scope"], r["date"], r["unique_visitors"]) for r in rows] == EXPECTED_UNIQUE_VISITORS


def test_orders_by_date(loaded: Warehouse) -> None:
    rows = _rows(loaded, "metric_orders_by_date")
    assert [tuple(r.values()) for r in rows] == EXPECTED_ORDERS_BY_DATE


def test_daily_traffic(loaded: Warehouse) -> None:
    rows = _rows(loaded, "metric_daily_traffic")
    assert [tuple(r.values()) for r in rows] == EXPECTED_DAILY_TRAFFIC


def test_daily_metrics_follow_the_reporting_time_zone(loaded: Warehouse) -> None:
    view = metric_view("metric_daily_traffic")
    dataset = getattr(loaded, "dataset_ref", None)
    kolkata = loaded.query(select_sql(view, loaded.dialect, dataset, "Asia/Kolkata"))
    by_key = {(r["date"], r["event_name"]): (r["events"], r["unique_visitors"]) for r in kolkata}
    expected = {(d, name): (events, users) for d, name, events, users in EXPECTED_DAILY_TRAFFIC}
    expected.update(EXPECTED_DAILY_TRAFFIC_KOLKATA_CHANGES)
    assert by_key == expected
    visitors = metric_view("metric_unique_visitors")
    days = loaded.query(select_sql(visitors, loaded.dialect, dataset, "Asia/Kolkata"))
    assert len([r for r in days if r["scope"] == "day"]) == 3  # DAY3 appears


def test_a_reporting_time_zone_must_be_a_real_zone(settings: Settings) -> None:
    with pytest.raises(ValueError, match="not an IANA time zone"):
        select_sql(metric_view("metric_daily_traffic"), "duckdb", None, "Mars/Olympus")
    for bad in ("IST+5:30", "localtime"):
        with pytest.raises(ValueError, match="not an IANA time zone name"):
            Settings(home=settings.home, reporting_timezone=bad)


def test_views_are_written_once_and_transpiled() -> None:
    assert METRIC_NAMES == (
        "metric_top_products",
        "metric_avg_spend_per_session",
        "metric_unique_visitors",
        "metric_orders_by_date",
        "metric_daily_traffic",
    )
    for view in METRIC_VIEWS:
        duck = create_view_sql(view, "duckdb")
        bq = create_view_sql(view, "bigquery", "my-project.shop")
        # The dialects differ where the source uses BigQuery-only functions.
        if "COUNTIF" in view.sql:
            assert "COUNT_IF" in duck and "COUNTIF" in bq
        if "SAFE_DIVIDE" in view.sql:
            assert "SAFE_DIVIDE" not in duck and "SAFE_DIVIDE" in bq
        assert "`my-project`.`shop`.`user_behavior`" in bq
