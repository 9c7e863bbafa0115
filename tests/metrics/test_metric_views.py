"""The five metric views on the hand-computed tiny dataset, in DuckDB and in the BigQuery emulator."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa
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
from shopflow.warehouse.schema import TABLES, ColumnType
from tests.warehouse.tiny_lake import (
    DAY1,
    EXPECTED_AVG_SPEND,
    EXPECTED_DAILY_TRAFFIC,
    EXPECTED_DAILY_TRAFFIC_KOLKATA_CHANGES,
    EXPECTED_ORDERS_BY_DATE,
    EXPECTED_TOP_PRODUCTS,
    EXPECTED_UNIQUE_VISITORS,
    curated_tables,
    write_curated,
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
            r["lines_sold"],
            r["units_sold"],
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
    assert got == EXPECTED_AVG_SPEND
    assert all(isinstance(r["avg_spend_per_session_inr"], Decimal) for r in rows)


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


#: Orders priced in paise that binary floats cannot hold: 0.1 + 0.2 + 0.05 is not 0.35 in floats.
_PAISE_EVENTS: Final = (
    ("e1", DAY1, "10:00", "order", "p1", "u1", "o1", 0.1, "s1"),
    ("e2", DAY1, "10:01", "order", "p2", "u1", "o1", 0.2, "s1"),
    ("e3", DAY1, "11:00", "view", "p1", "u2", None, 0.1, "s2"),
    ("e4", DAY1, "12:00", "view", "p1", "u3", None, 0.1, "s3"),
    ("e5", DAY1, "13:00", "order", "p2", "u4", "o2", 0.05, "s4"),
    ("e6", DAY1, "14:00", "view", "p2", "u4", None, 0.2, "s5"),
)


@pytest.mark.parametrize(
    "kind", ["duckdb", pytest.param("bigquery", marks=pytest.mark.integration)]
)
def test_money_is_an_exact_decimal(
    kind: str, request: pytest.FixtureRequest, settings: Settings
) -> None:
    write_curated(LakeLayout.from_settings(settings), curated_tables(_PAISE_EVENTS))
    warehouse = (
        open_warehouse(settings) if kind == "duckdb" else request.getfixturevalue("bq_warehouse")
    )
    try:
        load_warehouse(settings, warehouse=warehouse)
        (day,) = _rows(warehouse, "metric_orders_by_date")
        assert day["order_amount_inr"] == Decimal("0.35")
        assert isinstance(day["order_amount_inr"], Decimal)
        spend = {
            r["user_id"]: r["avg_spend_per_session_inr"]
            for r in _rows(warehouse, "metric_avg_spend_per_session")
        }
        # 0.35 / 5 shopping sessions; u1 0.30 in one; u4 0.05 / 2 = 0.025, half away from zero.
        assert spend == {
            None: Decimal("0.07"),
            "u1": Decimal("0.3"),
            "u2": Decimal("0"),
            "u3": Decimal("0"),
            "u4": Decimal("0.03"),
        }
        price = warehouse.query(
            "SELECT SUM(price) AS total FROM " + _table(warehouse, "user_behavior")
        )
        assert price == [{"total": Decimal("0.75")}]
    finally:
        if kind == "duckdb":
            warehouse.close()


def _table(warehouse: Warehouse, name: str) -> str:
    dataset = getattr(warehouse, "dataset_ref", None)
    return f"`{dataset}.{name}`" if dataset else name


def test_every_money_column_is_numeric() -> None:
    money = [
        (spec.name, name)
        for spec in TABLES.values()
        for name, kind in spec.columns
        if name == "price" or (name.endswith("_inr") and not name.startswith("products_"))
    ]
    assert len(money) == 12
    for table, name in money:
        assert dict(TABLES[table].columns)[name] is ColumnType.NUMERIC, (table, name)
        assert TABLES[table].arrow_schema().field(name).type == pa.decimal128(38, 9)
    assert "price DECIMAL(38, 9)" in TABLES["user_behavior"].duckdb_ddl()
