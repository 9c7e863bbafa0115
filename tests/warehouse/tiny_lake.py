"""A hand-computed tiny curated zone: 16 events over two days, written through the lake API.

Events (user_behavior / events_clean), UTC:

    2026-11-25  e01 10:00 view p1 u1 100 s1    e05 10:13 order p2 u1 o1 50 s1
                e02 10:05 wishlist p1 u1 100 s1 e06 11:00 view p2 u2 50 s2
                e03 10:10 order p1 u1 o1 200 s1 e07 11:01 wishlist p2 u2 50 s2
                e04 10:12 view p2 u1 50 s1     e08 11:30 view p3 u3 400 s3
    2026-11-26  e09 09:00 view p1 u1 100 s4    e13 12:02 order p3 u2 o2 400 s5
                e10 09:05 return p1 u1 o1 200 s4 e14 13:00 wishlist p1 u4 100 s6
                e11 12:00 view p3 u2 400 s5    e15 13:05 order p3 u4 o3 400 s6
                e12 12:01 wishlist p3 u2 400 s5 e16 18:00 view p2 u4 50 s7

The expected metric rows below are worked out by hand from that table, not by code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa

from shopflow.lake import LakeLayout, replace_partition
from shopflow.warehouse.schema import TABLES, Grain

DAY1: Final = date(2026, 11, 25)
DAY2: Final = date(2026, 11, 26)

PRODUCTS: Final = {
    "p1": ("Cotton Kurta", "Clothing", 100.0),
    "p2": ("Steel Mug", "Kitchen", 50.0),
    "p3": ("Desk Lamp", "Home", 400.0),
}
USERS: Final = {"u1": "Asha", "u2": "Ravi", "u3": "Meera", "u4": "Kabir"}

# (event_id, day, "HH:MM", event_name, product_id, user_id, order_id, price, session_id)
EVENTS: Final[tuple[tuple[str, date, str, str, str, str, str | None, float, str], ...]] = (
    ("e01", DAY1, "10:00", "view", "p1", "u1", None, 100.0, "s1"),
    ("e02", DAY1, "10:05", "wishlist", "p1", "u1", None, 100.0, "s1"),
    ("e03", DAY1, "10:10", "order", "p1", "u1", "o1", 200.0, "s1"),
    ("e04", DAY1, "10:12", "view", "p2", "u1", None, 50.0, "s1"),
    ("e05", DAY1, "10:13", "order", "p2", "u1", "o1", 50.0, "s1"),
    ("e06", DAY1, "11:00", "view", "p2", "u2", None, 50.0, "s2"),
    ("e07", DAY1, "11:01", "wishlist", "p2", "u2", None, 50.0, "s2"),
    ("e08", DAY1, "11:30", "view", "p3", "u3", None, 400.0, "s3"),
    ("e09", DAY2, "09:00", "view", "p1", "u1", None, 100.0, "s4"),
    ("e10", DAY2, "09:05", "return", "p1", "u1", "o1", 200.0, "s4"),
    ("e11", DAY2, "12:00", "view", "p3", "u2", None, 400.0, "s5"),
    ("e12", DAY2, "12:01", "wishlist", "p3", "u2", None, 400.0, "s5"),
    ("e13", DAY2, "12:02", "order", "p3", "u2", "o2", 400.0, "s5"),
    ("e14", DAY2, "13:00", "wishlist", "p1", "u4", None, 100.0, "s6"),
    ("e15", DAY2, "13:05", "order", "p3", "u4", "o3", 400.0, "s6"),
    # 00:30 on DAY3 in Asia/Kolkata (UTC+05:30): the reporting time zone moves it a date.
    ("e16", DAY2, "19:00", "view", "p2", "u4", None, 50.0, "s7"),
    # A session of nothing but a return: not a session of the average spend's denominator.
    ("e17", DAY2, "14:00", "return", "p3", "u2", "o2", 400.0, "s8"),
)

EXPECTED_TOP_PRODUCTS: Final = [
    # product_id, lines_sold, units_sold, wishlisted, returned, viewed, sold_rank,
    # wishlisted_rank, returned_rank. p1's one line (o1) is 2 units (₹200 at ₹100); p2's
    # cancelled API line o4 counts neither as a line nor as units.
    ("p3", 2, 2, 1, 1, 2, 1, 3, 2),
    ("p1", 1, 2, 2, 1, 2, 2, 1, 1),
    ("p2", 1, 1, 1, 0, 3, 3, 2, 3),
]
EXPECTED_AVG_SPEND: Final = [
    # scope, user_id, sessions, order_amount, return_amount, spend, avg_spend_per_session
    # (exact decimals; the average is rounded to the paisa: 450 / 7 = 64.2857…)
    ("overall", None, 7, 1050.0, 600.0, 450.0, Decimal("64.29")),
    ("user", "u1", 2, 250.0, 200.0, 50.0, 25.0),
    ("user", "u2", 2, 400.0, 400.0, 0.0, 0.0),
    ("user", "u3", 1, 0.0, 0.0, 0.0, 0.0),
    ("user", "u4", 2, 400.0, 0.0, 400.0, 200.0),
]
EXPECTED_UNIQUE_VISITORS: Final = [("overall", None, 4), ("day", DAY1, 3), ("day", DAY2, 3)]
EXPECTED_ORDERS_BY_DATE: Final = [
    # date, orders, order_lines, order_amount, returns, return_amount, net_amount
    (DAY1, 1, 2, 250.0, 0, 0.0, 250.0),
    (DAY2, 2, 2, 800.0, 2, 600.0, 200.0),
]
#: Daily traffic by the date in Asia/Kolkata: e16 moves to DAY3.
EXPECTED_DAILY_TRAFFIC_KOLKATA_CHANGES: Final = {
    (DAY2, "view"): (2, 2),
    (DAY2 + timedelta(days=1), "view"): (1, 1),
}
EXPECTED_DAILY_TRAFFIC: Final = [
    # date, event_name, events, unique_visitors
    (DAY1, "order", 2, 1),
    (DAY1, "view", 4, 3),
    (DAY1, "wishlist", 2, 2),
    (DAY2, "order", 2, 2),
    (DAY2, "return", 2, 2),
    (DAY2, "view", 3, 3),
    (DAY2, "wishlist", 2, 2),
]


def _ts(day: date, hhmm: str) -> datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def _table(name: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    schema = TABLES[name].lake_arrow_schema()
    return pa.Table.from_pylist(list(rows), schema=schema)


def curated_tables(events: Sequence[tuple[Any, ...]] = EVENTS) -> dict[str, pa.Table]:
    """Every curated table of the tiny dataset, in the transforms' columns."""
    clean = []
    behavior = []
    for event_id, day, hhmm, name, pid, uid, oid, price, sid in events:
        ts = _ts(day, hhmm)
        clean.append(
            {
                "event_id": event_id,
                "event_name": name,
                "product_id": pid,
                "user_id": uid,
                "order_id": oid,
                "price": price,
                "event_ts": ts,
                "date": day,
                "hour": ts.hour,
                "session_id": sid,
                "session_source": "client",
                "ingest_ts": ts,
            }
        )
        behavior.append(
            {
                "date": day,
                "event_id": event_id,
                "event_name": name,
                "price": price,
                "product_id": pid,
                "product_name": PRODUCTS[pid][0],
                "user_id": uid,
                "user_name": USERS[uid],
                "order_id": oid,
                "event_ts": ts,
                "session_id": sid,
                "category": PRODUCTS[pid][1],
            }
        )

    def traffic(grain: tuple[str, ...]) -> list[dict[str, Any]]:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in clean:
            groups.setdefault(tuple(row[g] for g in grain), []).append(row)
        out = []
        for key, rows in sorted(groups.items()):
            kinds = Counter(r["event_name"] for r in rows)
            out.append(
                {
                    **dict(zip(grain, key, strict=True)),
                    "events": len(rows),
                    "views": kinds["view"],
                    "wishlists": kinds["wishlist"],
                    "orders": kinds["order"],
                    "returns": kinds["return"],
                    "unique_visitors": len({r["user_id"] for r in rows}),
                    "sessions": len({r["session_id"] for r in rows}),
                }
            )
        return out

    orders = [
        {
            "order_id": r["order_id"],
            "product_id": r["product_id"],
            "user_id": r["user_id"],
            "date": r["date"],
            "order_ts": r["event_ts"],
            "quantity": int(r["price"] // PRODUCTS[r["product_id"]][2]),
            "unit_price_inr": PRODUCTS[r["product_id"]][2],
            "status": "placed",
            "updated_at": r["event_ts"],
            "product_name": PRODUCTS[r["product_id"]][0],
            "category": PRODUCTS[r["product_id"]][1],
            "line_amount_inr": r["price"],
            "order_total_inr": r["price"],
        }
        for r in clean
        if r["event_name"] == "order"
    ]
    # An API line cancelled before any order event: no line sold, and its 3 units are not sold.
    orders.append(
        {
            **orders[-1],
            "order_id": "o4",
            "product_id": "p2",
            "quantity": 3,
            "status": "cancelled",
            "product_name": PRODUCTS["p2"][0],
            "category": PRODUCTS["p2"][1],
        }
    )
    products = [
        {"product_id": pid, "product_name": n, "category": c, "price": p, "date": DAY1}
        for pid, (n, c, p) in PRODUCTS.items()
    ]
    categories = [
        {"category": c, "products": 1, "min_price_inr": p, "avg_price_inr": p, "max_price_inr": p}
        for _, c, p in PRODUCTS.values()
    ]
    users = [{"user_id": uid, "user_name": n, "date": DAY1} for uid, n in USERS.items()]
    reconciliation = [
        {"date": d, "api_orders": n, "event_orders": n, "matched_orders": n}
        for d, n in ((DAY1, 1), (DAY2, 2))
    ]
    return {
        "events_clean": _table("events_clean", clean),
        "traffic_hourly": _table("traffic_hourly", traffic(("date", "hour"))),
        "traffic_daily": _table("traffic_daily", traffic(("date",))),
        "orders_enriched": _table("orders_enriched", orders),
        "products_clean": _table("products_clean", products),
        "category_summary": _table("category_summary", categories),
        "users_enriched": _table("users_enriched", users),
        "user_behavior": _table("user_behavior", behavior),
        "order_reconciliation": _table("order_reconciliation", reconciliation),
    }


def write_curated(layout: LakeLayout, tables: dict[str, pa.Table]) -> None:
    """Write `tables` into the curated zone as the ETL does: one replaced file per partition."""
    for name, table in tables.items():
        spec = TABLES[name]
        if not spec.partitioned:
            replace_partition(table, layout.curated_root(name))
            continue
        hourly = spec.grain is Grain.HOURLY
        keys = {
            (d, h if hourly else None)
            for d, h in zip(
                table["date"].to_pylist(),
                table["hour"].to_pylist() if hourly else [None] * table.num_rows,
                strict=True,
            )
        }
        for day, hour in sorted(keys, key=lambda k: (k[0], -1 if k[1] is None else k[1])):
            rows = [
                r
                for r in table.to_pylist()
                if r["date"] == day and (hour is None or r["hour"] == hour)
            ]
            part = pa.Table.from_pylist(rows, schema=table.schema)
            replace_partition(part, layout.curated_partition(name, day, hour))


def snapshot(rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as sorted tuples: a row-for-row comparable picture of a table."""
    return sorted(
        (tuple(row.values()) for row in rows),
        key=lambda r: tuple((v is None, str(v)) for v in r),
    )
