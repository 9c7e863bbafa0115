"""The local web dashboard over the warehouse (Streamlit): five metric charts, a date filter, freshness."""

from shopflow.dashboard.data import (
    DashboardUnavailable,
    Freshness,
    Snapshot,
    filtered_view_sql,
    read_snapshot,
)
from shopflow.dashboard.server import (
    APP_PATH,
    dashboard_environment,
    dashboard_url,
    streamlit_command,
)

__all__ = [
    "APP_PATH",
    "DashboardUnavailable",
    "Freshness",
    "Snapshot",
    "dashboard_environment",
    "dashboard_url",
    "filtered_view_sql",
    "read_snapshot",
    "streamlit_command",
]
