"""Metric views over the warehouse, one SQL text for DuckDB and BigQuery, and the load that
keeps them with the tables."""

from shopflow.metrics.publishing import create_metric_views, load_warehouse
from shopflow.metrics.views import (
    METRIC_NAMES,
    METRIC_VIEWS,
    MetricView,
    create_view_sql,
    metric_view,
    select_sql,
    view_body,
)

__all__ = [
    "METRIC_NAMES",
    "METRIC_VIEWS",
    "MetricView",
    "create_metric_views",
    "create_view_sql",
    "load_warehouse",
    "metric_view",
    "select_sql",
    "view_body",
]
