"""The metric views, written once in BigQuery standard SQL and transpiled to DuckDB by SQLGlot.

Every metric reads `user_behavior` (one row per distinct event, with names and sessions), so the
numbers of all five agree with each other; the definitions (spend nets out returns, average spend
per session divides by shopping sessions, daily figures in the reporting time zone, products and
users named by their latest name) are in docs/metrics.md, one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify_tables import qualify_tables

from shopflow.settings import canonical_timezone
from shopflow.warehouse.base import Dialect


@dataclass(frozen=True, slots=True)
class MetricView:
    """One metric view: its name, BigQuery SQL body, and the order to print its rows in."""

    name: str
    title: str
    sql: str
    order_by: str


_TOP_PRODUCTS: Final = """
WITH per_product AS (
  SELECT
    product_id,
    COUNTIF(event_name = 'order') AS lines_sold,
    COUNTIF(event_name = 'wishlist') AS wishlisted,
    COUNTIF(event_name = 'return') AS returned,
    COUNTIF(event_name = 'view') AS viewed
  FROM user_behavior
  GROUP BY product_id
),
-- Units are the orders API's quantities (an order event carries none); cancelled lines sold none.
units AS (
  SELECT product_id, SUM(quantity) AS units_sold
  FROM orders_enriched
  WHERE status != 'cancelled'
  GROUP BY product_id
)
SELECT
  per_product.product_id,
  products_clean.product_name,
  products_clean.category,
  per_product.lines_sold,
  COALESCE(units.units_sold, 0) AS units_sold,
  per_product.wishlisted,
  per_product.returned,
  per_product.viewed,
  ROW_NUMBER() OVER (ORDER BY per_product.lines_sold DESC, per_product.product_id) AS sold_rank,
  ROW_NUMBER() OVER (ORDER BY per_product.wishlisted DESC, per_product.product_id)
    AS wishlisted_rank,
  ROW_NUMBER() OVER (ORDER BY per_product.returned DESC, per_product.product_id)
    AS returned_rank
FROM per_product
LEFT JOIN units ON units.product_id = per_product.product_id
-- Named by its latest name (user_behavior keeps the name each event saw).
LEFT JOIN products_clean ON products_clean.product_id = per_product.product_id
"""


def _per_paisa(amount_inr: str, count: str) -> str:
    """BigQuery SQL of `amount_inr` ÷ `count` as NUMERIC, rounded to the paisa (half away from
    zero; null when `count` is 0), the same in both warehouses.

    DuckDB divides decimals as DOUBLE, so the division is done in paise as FLOAT64 everywhere:
    a whole number of paise (money is loaded at the paisa) over a count is never close enough to
    a half for the double's error to round it the wrong way, so the rounded quotient is exact;
    it is scaled back to rupees in NUMERIC.
    """
    paise = f"ROUND(SAFE_DIVIDE(CAST(({amount_inr}) * 100 AS FLOAT64), {count}))"
    return f"CAST(CAST({paise} AS NUMERIC) * CAST(0.01 AS NUMERIC) AS NUMERIC)"


_AVG_SPEND_PER_SESSION: Final = f"""
WITH per_user AS (
  SELECT
    user_id,
    -- Sessions of shopping: a session holding only returns is not a chance to spend.
    COUNT(DISTINCT IF(event_name != 'return', session_id, NULL)) AS sessions,
    COALESCE(SUM(IF(event_name = 'order', price, 0)), 0) AS order_amount_inr,
    COALESCE(SUM(IF(event_name = 'return', price, 0)), 0) AS return_amount_inr
  FROM user_behavior
  GROUP BY user_id
),
overall AS (
  SELECT
    COUNT(DISTINCT IF(event_name != 'return', session_id, NULL)) AS sessions,
    COALESCE(SUM(IF(event_name = 'order', price, 0)), 0) AS order_amount_inr,
    COALESCE(SUM(IF(event_name = 'return', price, 0)), 0) AS return_amount_inr
  FROM user_behavior
)
SELECT
  'user' AS scope,
  per_user.user_id,
  users_enriched.user_name,
  per_user.sessions,
  per_user.order_amount_inr,
  per_user.return_amount_inr,
  per_user.order_amount_inr - per_user.return_amount_inr AS spend_inr,
  {_per_paisa("per_user.order_amount_inr - per_user.return_amount_inr", "per_user.sessions")}
    AS avg_spend_per_session_inr
FROM per_user
-- Named by the latest name.
LEFT JOIN users_enriched ON users_enriched.user_id = per_user.user_id
UNION ALL
SELECT
  'overall' AS scope,
  CAST(NULL AS STRING) AS user_id,
  CAST(NULL AS STRING) AS user_name,
  sessions,
  order_amount_inr,
  return_amount_inr,
  order_amount_inr - return_amount_inr AS spend_inr,
  {_per_paisa("order_amount_inr - return_amount_inr", "sessions")} AS avg_spend_per_session_inr
FROM overall
"""

_UNIQUE_VISITORS: Final = """
SELECT 'day' AS scope, REPORT_DATE AS date, COUNT(DISTINCT user_id) AS unique_visitors
FROM user_behavior
GROUP BY 2
UNION ALL
SELECT 'overall' AS scope, CAST(NULL AS DATE) AS date, COUNT(DISTINCT user_id) AS unique_visitors
FROM user_behavior
"""

_ORDERS_BY_DATE: Final = """
SELECT
  REPORT_DATE AS date,
  COUNT(DISTINCT IF(event_name = 'order', order_id, NULL)) AS orders,
  COUNTIF(event_name = 'order') AS order_lines,
  COALESCE(SUM(IF(event_name = 'order', price, 0)), 0) AS order_amount_inr,
  COUNTIF(event_name = 'return') AS returns,
  COALESCE(SUM(IF(event_name = 'return', price, 0)), 0) AS return_amount_inr,
  COALESCE(SUM(IF(event_name = 'order', price, -price)), 0) AS net_amount_inr
FROM user_behavior
WHERE event_name IN ('order', 'return')
GROUP BY 1
"""

_DAILY_TRAFFIC: Final = """
SELECT
  REPORT_DATE AS date,
  event_name,
  COUNT(*) AS events,
  COUNT(DISTINCT user_id) AS unique_visitors
FROM user_behavior
GROUP BY 1, 2
"""

#: The metric views, in print order.
METRIC_VIEWS: Final = (
    MetricView(
        "metric_top_products",
        "Top products (lines and units sold, wishlisted, returned)",
        _TOP_PRODUCTS,
        "sold_rank",
    ),
    MetricView(
        "metric_avg_spend_per_session",
        "Average spend per session (spend = orders - returns, INR)",
        _AVG_SPEND_PER_SESSION,
        "scope, user_id",
    ),
    MetricView(
        "metric_unique_visitors",
        "Unique visitors",
        _UNIQUE_VISITORS,
        "scope DESC, date",
    ),
    MetricView("metric_orders_by_date", "Orders by date", _ORDERS_BY_DATE, "date"),
    MetricView(
        "metric_daily_traffic",
        "Daily traffic (events per type)",
        _DAILY_TRAFFIC,
        "date, event_name",
    ),
)

METRIC_NAMES: Final = tuple(view.name for view in METRIC_VIEWS)


def metric_view(name: str) -> MetricView:
    """A metric view by name."""
    for view in METRIC_VIEWS:
        if view.name == name:
            return view
    raise KeyError(name)


def report_date_sql(reporting_timezone: str, ts_column: str = "event_ts") -> str:
    """The SQL (BigQuery) of a row's date in the reporting time zone, from its `ts_column` (UTC:
    the stored `date` column)."""
    key = canonical_timezone(reporting_timezone)
    if key == "UTC":
        return "date"
    return f"DATE({ts_column}, '{key}')"


def _numeric_as_duckdb_decimal(tree: exp.Expr) -> exp.Expr:
    """`tree` with BigQuery's NUMERIC spelled DECIMAL(38, 9): SQLGlot writes a bare DECIMAL,
    which DuckDB reads as DECIMAL(18, 3)."""
    for kind in list(tree.find_all(exp.DataType)):
        if kind.this == exp.DataType.Type.DECIMAL and not kind.expressions:
            kind.replace(exp.DataType.build("DECIMAL(38, 9)", dialect="duckdb"))
    return tree


def view_body(
    view: MetricView,
    dialect: Dialect,
    dataset: str | None = None,
    reporting_timezone: str = "UTC",
) -> str:
    """The SELECT of `view` in `dialect`; with `dataset` (`project.dataset`), tables qualified;
    daily figures by the date in `reporting_timezone`."""
    sql = view.sql.replace("REPORT_DATE", report_date_sql(reporting_timezone))
    tree = sqlglot.parse_one(sql, read="bigquery")
    if dialect == "duckdb":
        tree = _numeric_as_duckdb_decimal(tree)
    if dataset is not None:
        project, _, name = dataset.rpartition(".")
        tree = qualify_tables(tree, db=name, catalog=project or None, dialect="bigquery")
        # qualify_tables also aliases each table by its own name; harmless, but keep SQL plain.
        for table in tree.find_all(exp.Table):
            if table.alias == table.name:
                table.set("alias", None)
    # Backticks in BigQuery: project ids may hold hyphens.
    return tree.sql(dialect=dialect, pretty=True, identify=dialect == "bigquery")


def create_view_sql(
    view: MetricView, dialect: Dialect, dataset: str | None = None, reporting_timezone: str = "UTC"
) -> str:
    """`CREATE OR REPLACE VIEW` of `view` in `dialect`."""
    if dialect == "bigquery":
        target = f"`{dataset}.{view.name}`" if dataset else f"`{view.name}`"
    else:
        target = view.name
    body = view_body(view, dialect, dataset, reporting_timezone)
    return f"CREATE OR REPLACE VIEW {target} AS\n{body}"


def select_sql(
    view: MetricView, dialect: Dialect, dataset: str | None = None, reporting_timezone: str = "UTC"
) -> str:
    """A query of all rows of the metric, in print order, computed from the view's SQL (not the
    stored view), so the reporting time zone is the reader's current setting."""
    body = view_body(view, dialect, dataset, reporting_timezone)
    return f"SELECT * FROM (\n{body}\n) AS metric ORDER BY {view.order_by}"
