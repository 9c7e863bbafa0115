"""Checks of the rows themselves: unique keys, required columns, accepted values, row counts
matching between the events tables, and relationships to the catalogue."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Final

from shopflow.quality.curated import SNAPSHOT_TABLES, CuratedData
from shopflow.quality.results import CheckResult, Severity

#: The key of each checked table: no two rows may share it.
KEYS: Final[dict[str, tuple[str, ...]]] = {
    "events_clean": ("event_id",),
    "user_behavior": ("event_id",),
    "orders_enriched": ("order_id", "product_id"),
    "products_clean": ("product_id",),
    "users_enriched": ("user_id",),
}

#: A null order id is allowed, except on order and return events.
_ORDER_ID_NEEDED: Final = "order_id IS NULL AND event_name IN ('order', 'return')"

#: Required columns of each checked table, as the SQL condition that makes a row break it.
REQUIRED: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "events_clean": (
        *(
            (c, f"{c} IS NULL")
            for c in (
                "event_id",
                "event_name",
                "product_id",
                "user_id",
                "price",
                "event_ts",
                "date",
                "hour",
                "session_id",
            )
        ),
        ("order_id", _ORDER_ID_NEEDED),
    ),
    "user_behavior": (
        *(
            (c, f"{c} IS NULL")
            for c in (
                "date",
                "event_id",
                "event_name",
                "product_id",
                "user_id",
                "event_ts",
                "session_id",
            )
        ),
        ("order_id", _ORDER_ID_NEEDED),
    ),
    "orders_enriched": tuple(
        (c, f"{c} IS NULL")
        for c in ("order_id", "product_id", "user_id", "date", "quantity", "status")
    ),
    "products_clean": (
        ("product_id", "product_id IS NULL"),
        ("product_name", "product_name IS NULL"),
    ),
    "users_enriched": (("user_id", "user_id IS NULL"),),
}

#: The event names of the data contract.
EVENT_NAMES: Final = ("view", "wishlist", "order", "return")

#: Catalogue relationships: (check, column of events_clean, catalogue table, its key, the table
#: used when the lake has no such history yet: a lake from before the type-2 histories).
RELATIONSHIPS: Final = (
    ("known_product", "product_id", "products_history", "product_id", "products_clean"),
    ("known_user", "user_id", "users_history", "user_id", "users_enriched"),
)


def _per_date(data: CuratedData, table: str, select: str, where: str = "TRUE") -> dict[date, int]:
    """`select` (an aggregate) per checked date of `table`; 0 for a date without rows."""
    found = {
        d: int(n or 0)
        for d, n in data.rows(f"SELECT date, {select} FROM {table} WHERE {where} GROUP BY date")
        if isinstance(d, date)
    }
    return {d: found.get(d, 0) for d in data.dates}


def _scopes(data: CuratedData, table: str) -> Sequence[date | None]:
    """The partitions a table's results are per: each checked date, or the whole snapshot."""
    if table in SNAPSHOT_TABLES:
        return [None]
    return list(data.dates)


def _count(
    data: CuratedData, table: str, select: str, where: str = "TRUE"
) -> dict[date | None, int]:
    if table in SNAPSHOT_TABLES:
        (value,) = data.rows(f"SELECT {select} FROM {table} WHERE {where}")[0]
        return {None: int(value or 0)}
    return {d: n for d, n in _per_date(data, table, select, where).items()}


def _result(
    name: str,
    table: str,
    partition: date | None,
    severity: Severity,
    observed: int,
    allowed: int,
    detail: str,
) -> CheckResult:
    return CheckResult(
        check_name=name,
        table_name=table,
        partition=partition,
        severity=severity,
        observed=float(observed),
        threshold=float(allowed),
        passed=observed <= allowed,
        detail=detail,
    )


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def unique_keys(data: CuratedData) -> list[CheckResult]:
    """`unique_<key>`: rows beyond the first of each key (error)."""
    results = []
    for table, key in KEYS.items():
        columns = ", ".join(key)
        name = "unique_" + ("order_line" if len(key) > 1 else key[0])
        if table in SNAPSHOT_TABLES:
            counts: dict[date | None, int] = dict(
                _count(data, table, f"count(*) - count(DISTINCT ({columns}))")
            )
        else:
            sql = (
                f"SELECT date, sum(n - 1) FROM (SELECT date, {columns}, count(*) AS n FROM {table} "
                f"GROUP BY date, {columns} HAVING count(*) > 1) GROUP BY date"
            )
            extra = {d: int(n or 0) for d, n in data.rows(sql) if isinstance(d, date)}
            counts = {d: extra.get(d, 0) for d in data.dates}
        for partition, extra_rows in counts.items():
            detail = f"({columns}) repeated by {_rows(extra_rows)}"
            results.append(_result(name, table, partition, Severity.ERROR, extra_rows, 0, detail))
    return results


def not_null(data: CuratedData) -> list[CheckResult]:
    """`not_null`: nulls in the required columns of each table (error)."""
    results = []
    for table, required in REQUIRED.items():
        per_column = {
            column: _count(data, table, "count(*)", condition) for column, condition in required
        }
        for partition in _scopes(data, table):
            nulls = {c: counts.get(partition, 0) for c, counts in per_column.items()}
            total = sum(nulls.values())
            broken = ", ".join(f"{c} {n:,}" for c, n in nulls.items() if n)
            detail = f"{total:,} nulls in required columns" + (f" ({broken})" if broken else "")
            results.append(_result("not_null", table, partition, Severity.ERROR, total, 0, detail))
    return results


def accepted_values(data: CuratedData) -> list[CheckResult]:
    """`accepted_event_name`: events whose name is not one of the contract's (error)."""
    names = ", ".join(f"'{n}'" for n in EVENT_NAMES)
    results = []
    for table in ("events_clean", "user_behavior"):
        where = f"event_name IS NOT NULL AND event_name NOT IN ({names})"
        counts = _per_date(data, table, "count(*)", where)
        for partition, bad in counts.items():
            detail = f"{_rows(bad)} with an event_name outside {', '.join(EVENT_NAMES)}"
            results.append(
                _result("accepted_event_name", table, partition, Severity.ERROR, bad, 0, detail)
            )
    return results


def row_counts_match(data: CuratedData) -> list[CheckResult]:
    """`row_count_match`: `user_behavior` has one row per `events_clean` row (error)."""
    events = _per_date(data, "events_clean", "count(*)")
    behaviour = _per_date(data, "user_behavior", "count(*)")
    results = []
    for partition in data.dates:
        gap = abs(events[partition] - behaviour[partition])
        detail = (
            f"user_behavior has {behaviour[partition]:,} rows, "
            f"events_clean {events[partition]:,} (off by {gap:,})"
        )
        results.append(
            _result("row_count_match", "user_behavior", partition, Severity.ERROR, gap, 0, detail)
        )
    return results


def relationships(data: CuratedData, max_unknown_share: float) -> list[CheckResult]:
    """`known_product`, `known_user`: events naming a product or user the catalogue lacks, counted
    per date (error beyond `max_unknown_share` of the date's events)."""
    events = _per_date(data, "events_clean", "count(*)")
    results = []
    for name, column, history, key, snapshot in RELATIONSHIPS:
        catalogue = history if history in data.present else snapshot
        sql = (
            f"SELECT e.date, count(*), count(DISTINCT e.{column}), min(e.{column}) "
            f"FROM events_clean e ANTI JOIN {catalogue} c ON e.{column} = c.{key} "
            f"WHERE e.{column} IS NOT NULL GROUP BY e.date"
        )
        unknown = {d: (int(n), int(k), str(x)) for d, n, k, x in data.rows(sql)}
        for partition in data.dates:
            rows, ids, example = unknown.get(partition, (0, 0, ""))
            allowed = math.floor(max_unknown_share * events[partition])
            detail = f"{_rows(rows)} name {ids:,} {column}s missing from {catalogue}"
            if rows:
                detail += f" (e.g. {example})"
            results.append(
                _result(name, "events_clean", partition, Severity.ERROR, rows, allowed, detail)
            )
    return results
