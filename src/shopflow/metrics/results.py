"""Reading the metric views out of the configured warehouse."""

from __future__ import annotations

from typing import Any

from shopflow.metrics.views import METRIC_VIEWS, MetricView, select_sql
from shopflow.settings import Settings
from shopflow.warehouse import Warehouse, open_warehouse


def metric_rows(warehouse: Warehouse, view: MetricView) -> list[dict[str, Any]]:
    """Every row of one metric view."""
    dataset = getattr(warehouse, "dataset_ref", None)
    return warehouse.query(select_sql(view, warehouse.dialect, dataset))


def fetch_metrics(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every row of every metric view of the configured warehouse, by view name."""
    warehouse = open_warehouse(settings, must_exist=True)
    try:
        warehouse.create_views()
        return {view.name: metric_rows(warehouse, view) for view in METRIC_VIEWS}
    finally:
        warehouse.close()
