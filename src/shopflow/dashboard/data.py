"""What the dashboard shows, read from the warehouse in one short read-only visit.

The five metrics are computed with the metric views' own SQL (`shopflow.metrics.views`) over
`user_behavior` restricted to the chosen date range, so with the whole range they are exactly the
views' rows, and with a narrower one they follow the same definitions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import sqlglot
from sqlglot import exp

from shopflow.errors import ShopflowError
from shopflow.metrics.views import METRIC_VIEWS, MetricView, report_date_sql, view_body
from shopflow.settings import Profile, Settings
from shopflow.warehouse import Warehouse, WarehouseError, duckdb_path, open_warehouse
from shopflow.warehouse.base import Dialect

#: How long to keep retrying while a load holds the DuckDB file's write lock.
BUSY_WAIT_SECONDS: Final = 5.0


class DashboardUnavailable(ShopflowError):
    """The warehouse cannot be shown (missing, empty, busy, unreadable); the message says why."""


@dataclass(frozen=True, slots=True)
class Freshness:
    """How recent the warehouse's data is."""

    latest_event_ts: datetime | None  # newest event in user_behavior
    latest_ingest_ts: datetime | None  # newest landing time in events_clean
    last_loaded: (
        datetime | None
    )  # when the warehouse was last written (file mtime / table modified)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of the warehouse: the data's date bounds, freshness, and the five metrics."""

    first_date: date
    last_date: date
    events: int  # in the whole warehouse
    freshness: Freshness
    start: date  # the date range the metrics cover
    end: date
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


#: The dated tables the metric views read, narrowed to the chosen dates (`orders_enriched`: the
#: units of top products), each with the timestamp that dates its rows.
_DATED_SOURCES: Final = {"user_behavior": "event_ts", "orders_enriched": "order_ts"}


def filtered_view_sql(
    view: MetricView,
    dialect: Dialect,
    start: date,
    end: date,
    dataset: str | None = None,
    reporting_timezone: str = "UTC",
) -> str:
    """A query of `view`'s rows computed only from events dated `start`..`end` (inclusive) in
    `reporting_timezone`, the zone its daily figures are dated in."""
    tree = sqlglot.parse_one(view.sql, read="bigquery")
    # Collected first: the replacement holds a user_behavior table of its own.
    for table in list(tree.find_all(exp.Table)):
        if table.name not in _DATED_SOURCES:
            continue
        inner = (
            exp.select("*")
            .from_(table.name)
            .where(
                f"{report_date_sql(reporting_timezone, _DATED_SOURCES[table.name])} "
                f"BETWEEN DATE '{start.isoformat()}' AND DATE '{end.isoformat()}'",
                dialect="bigquery",
            )
        )
        subquery = inner.subquery(table.name)
        table.replace(subquery)
    narrowed = MetricView(view.name, view.title, tree.sql(dialect="bigquery"), view.order_by)
    body = view_body(narrowed, dialect, dataset, reporting_timezone)
    return f"SELECT * FROM (\n{body}\n) AS metric ORDER BY {view.order_by}"


def warehouse_version(settings: Settings) -> str:
    """A token that changes whenever the local warehouse file does (a cache key); '' on gcp."""
    if settings.profile is Profile.GCP:
        return ""
    parts = []
    for path in _duckdb_files(settings):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        parts.append(f"{path.name}:{stat.st_mtime_ns}:{stat.st_size}")
    return ";".join(parts)


def _duckdb_files(settings: Settings) -> list[Path]:
    path = duckdb_path(settings)
    return [path, path.with_name(path.name + ".wal")]


@contextmanager
def _open_read_only(settings: Settings) -> Iterator[Warehouse]:
    """The warehouse, read-only and only for the duration of the block, so loads are not blocked."""
    if settings.profile is Profile.GCP:
        warehouse = open_warehouse(settings, must_exist=True)
    else:
        from shopflow.warehouse.duckdb_warehouse import DuckDBWarehouse

        path = duckdb_path(settings)
        if not path.is_file():
            raise DashboardUnavailable(
                f"No warehouse at {path} yet: run `shopflow demo`, or `shopflow etl` then "
                "`shopflow load`, and reload this page."
            )
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                warehouse = DuckDBWarehouse(path, read_only=True)
                break
            except WarehouseError as exc:
                if "lock" not in str(exc).lower():
                    raise DashboardUnavailable(f"Cannot open the warehouse: {exc}") from None
                if time.monotonic() > deadline:
                    raise DashboardUnavailable(
                        "The warehouse is being loaded right now; reload this page in a moment."
                    ) from None
                time.sleep(0.2)
    try:
        yield warehouse
    finally:
        warehouse.close()


def _last_loaded(settings: Settings, warehouse: Warehouse) -> datetime | None:
    if settings.profile is Profile.GCP:
        client = getattr(warehouse, "client", None)
        dataset = getattr(warehouse, "dataset_ref", None)
        if client is None or dataset is None:
            return None
        modified = client.get_table(f"{dataset}.user_behavior").modified
        return modified if isinstance(modified, datetime) else None
    times = [p.stat().st_mtime for p in _duckdb_files(settings) if p.exists()]
    return datetime.fromtimestamp(max(times), UTC) if times else None


def read_snapshot(
    settings: Settings, start: date | None = None, end: date | None = None
) -> Snapshot:
    """Read bounds, freshness and the five metrics for `start`..`end` (default: all dates);
    dates are in the settings' reporting time zone.

    Raises DashboardUnavailable with a message meant for the page when there is nothing to show.
    """
    zone = settings.reporting_timezone
    with _open_read_only(settings) as warehouse:
        dataset: str | None = getattr(warehouse, "dataset_ref", None)

        def name(table: str) -> str:
            return f"`{dataset}.{table}`" if dataset else table

        try:
            # Date bounds in the reporting time zone, from the same SQL the views use.
            bounds = MetricView(
                "bounds",
                "",
                "SELECT MIN(REPORT_DATE) AS first_date, MAX(REPORT_DATE) AS last_date,"
                " MAX(event_ts) AS latest_event_ts, COUNT(*) AS events FROM user_behavior",
                "events",
            )
            (overview,) = warehouse.query(view_body(bounds, warehouse.dialect, dataset, zone))
        except Exception as exc:  # a file with no tables, a dataset not loaded: say so in the page
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DashboardUnavailable(
                f"The warehouse has no user_behavior table yet ({first}): run `shopflow load`."
            ) from None
        if not overview["events"]:
            raise DashboardUnavailable(
                "The warehouse is empty (no events in user_behavior): run `shopflow demo`, or "
                "`shopflow etl` then `shopflow load`."
            )
        try:
            (ingest,) = warehouse.query(
                f"SELECT MAX(ingest_ts) AS latest_ingest_ts FROM {name('events_clean')}"
            )
            latest_ingest = ingest["latest_ingest_ts"]
        except Exception:  # events_clean is optional for the dashboard
            latest_ingest = None
        first_date: date = overview["first_date"]
        last_date: date = overview["last_date"]
        lo = max(start or first_date, first_date)
        hi = min(end or last_date, last_date)
        metrics = {
            view.name: warehouse.query(
                filtered_view_sql(view, warehouse.dialect, lo, hi, dataset, zone)
            )
            for view in METRIC_VIEWS
        }
        freshness = Freshness(
            latest_event_ts=overview["latest_event_ts"],
            latest_ingest_ts=latest_ingest,
            last_loaded=_last_loaded(settings, warehouse),
        )
    return Snapshot(
        first_date=first_date,
        last_date=last_date,
        events=int(overview["events"]),
        freshness=freshness,
        start=lo,
        end=hi,
        metrics=metrics,
    )
