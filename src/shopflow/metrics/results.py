"""Reading the metric views out of the configured warehouse."""

from __future__ import annotations

from typing import Any

from shopflow.metrics.views import METRIC_VIEWS, MetricView, select_sql
from shopflow.settings import Settings
from shopflow.warehouse import Warehouse, open_warehouse
from shopflow.warehouse.errors import WarehouseError


def metric_rows(
    warehouse: Warehouse, view: MetricView, reporting_timezone: str = "UTC"
) -> list[dict[str, Any]]:
    """Every row of one metric (daily figures by the date in `reporting_timezone`)."""
    dataset = getattr(warehouse, "dataset_ref", None)
    return warehouse.query(select_sql(view, warehouse.dialect, dataset, reporting_timezone))


def _where(warehouse: Warehouse) -> str:
    return str(getattr(warehouse, "path", None) or getattr(warehouse, "dataset_ref", "warehouse"))


def fetch_metrics(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every row of every metric view of the configured warehouse, by view name.

    Reads only: the views are made by `shopflow load`; a warehouse without them, or without any
    event loaded, is a one-line error rather than a page of zeros.
    """
    warehouse = open_warehouse(settings, must_exist=True)
    try:
        results = {}
        for view in METRIC_VIEWS:
            try:
                results[view.name] = metric_rows(warehouse, view, settings.reporting_timezone)
            except (
                Exception
            ) as exc:  # a missing view: DuckDB's CatalogException, BigQuery's NotFound
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise WarehouseError(
                    f"cannot read {view.name} from {_where(warehouse)}: {first}; "
                    "run `shopflow load` to create the metric views"
                ) from None
    finally:
        warehouse.close()
    if not results["metric_daily_traffic"]:
        raise WarehouseError(
            f"the warehouse {_where(warehouse)} holds no events yet: run `shopflow etl` then `shopflow load`"
        )
    return results
