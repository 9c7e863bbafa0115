"""Metric views over the warehouse, one SQL text for DuckDB and BigQuery."""

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
    "create_view_sql",
    "metric_view",
    "select_sql",
    "view_body",
]
