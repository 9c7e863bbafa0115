"""Engine parity: every transform on Spark and on DuckDB (SQLFrame) gives the same table.

Inputs are the unit tests' inline fixtures, built once with Spark and handed to DuckDB as Arrow,
so both engines see byte-identical data. Outputs are compared as Arrow: the same columns and
types, and the same rows after a stable sort (floats within 1e-9, timestamps in UTC).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from shopflow.transform.engine import (
    Transforms,
    create_dataframe,
    materialize,
    read_parquet,
    release,
    to_arrow,
    transforms,
)
from tests.transform import builders
from tests.transform.builders import DAY, T0

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

Rows = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Inputs:
    """Builds raw-zone DataFrames on one engine from the builders' rows."""

    spark: SparkSession
    session: Any  # the engine's session (the Spark one itself, or SQLFrame's)

    def _build(self, builder: Callable[..., Any], rows: Rows, nullable: bool) -> Any:
        spark_df = builder(self.spark, rows, nullable=nullable)
        if self.session is self.spark:
            return spark_df
        return create_dataframe(self.session, spark_df.toArrow())

    def events(self, rows: Rows, *, nullable: bool = False) -> Any:
        return self._build(builders.raw_events, rows, nullable)

    def orders(self, rows: Rows, *, nullable: bool = False) -> Any:
        return self._build(builders.raw_orders, rows, nullable)

    def products(self, rows: Rows, *, nullable: bool = False) -> Any:
        return self._build(builders.raw_products, rows, nullable)

    def users(self, rows: Rows, *, nullable: bool = False) -> Any:
        return self._build(builders.raw_users, rows, nullable)


Case = Callable[[Transforms, Inputs], Any]

# --- the unit tests' fixtures -------------------------------------------------------------------

DEDUP_EVENTS: Rows = [
    {"event_id": "e1", "price": 3.0, "message_id": "m3", "ingest_ts": T0 + 2 * HOUR},
    {"event_id": "e1", "price": 1.0, "message_id": "m1", "ingest_ts": T0 + timedelta(seconds=5)},
    {"event_id": "e1", "price": 2.0, "message_id": "m2", "ingest_ts": T0 + HOUR},
    {"event_id": "e2", "price": 20.0, "message_id": "m20", "ingest_ts": T0 + timedelta(seconds=9)},
    {"event_id": "e2", "price": 10.0, "message_id": "m10", "ingest_ts": T0 + timedelta(seconds=9)},
]
BAD_EVENTS: Rows = [
    {"event_id": " e1 ", "event_name": " View ", "user_id": " u1", "session_id": "  "},
    {"event_id": "e2", "event_name": "click"},
    {"event_id": "e3", "event_name": "order", "order_id": None},
    {"event_id": "e4", "event_name": "view", "order_id": "o9"},
    {"event_id": "e5", "price": -1.0},
    {"event_id": "e6", "price": float("nan")},
    {"event_id": "e7", "user_id": None},
    {"event_id": None, "event_name": None},
    {"event_id": "e8", "product_id": "  ", "price": None},
    # Outside the landing's default bounds (`EventBounds`): checked again at staging.
    {"event_id": "e9", "event_ts": datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)},
    {"event_id": "e10", "event_ts": T0 + 16 * MINUTE, "ingest_ts": T0},
    {"event_id": "e11", "event_ts": T0 + 15 * MINUTE, "ingest_ts": T0},  # on the bound: kept
    {"event_id": "e12", "price": 10_000_000.5},
]
SESSION_EVENTS: Rows = [
    {"event_id": "a1", "event_ts": T0},
    {"event_id": "a2", "event_ts": T0 + 29 * MINUTE + timedelta(seconds=59)},
    {"event_id": "a3", "event_ts": T0 + 59 * MINUTE + timedelta(seconds=59)},
    {"event_id": "a4", "event_ts": T0 + 89 * MINUTE + timedelta(seconds=58.999999)},
    {"event_id": "b1", "user_id": "u2", "event_ts": T0 + 20 * MINUTE},
    {"event_id": "c1", "session_id": "s-client", "event_ts": T0},
    {"event_id": "c2", "session_id": "s-client", "event_ts": T0 + 2 * HOUR},
    {"event_id": "d1", "event_ts": T0 + 5 * MINUTE + timedelta(microseconds=1)},
    {"event_id": "l1", "event_ts": T0 + 25 * MINUTE, "ingest_ts": T0 + 3 * HOUR},
    # The same instant twice: event_id breaks the tie.
    {"event_id": "t2", "user_id": "u3", "event_ts": T0 + 30 * MINUTE},
    {"event_id": "t1", "user_id": "u3", "event_ts": T0 + 30 * MINUTE},
]
TRAFFIC_EVENTS: Rows = [
    {"event_id": "e1", "user_id": "u1", "event_ts": T0},
    {"event_id": "e2", "user_id": "u1", "event_name": "wishlist", "event_ts": T0 + 5 * MINUTE},
    {
        "event_id": "e3",
        "user_id": "u1",
        "event_name": "order",
        "order_id": "o1",
        "event_ts": T0 + 10 * MINUTE,
    },
    {"event_id": "e4", "user_id": "u2", "event_ts": T0 + 20 * MINUTE},
    {"event_id": "e5", "user_id": "u2", "product_id": "p2", "event_ts": T0 + 25 * MINUTE},
    {"event_id": "e6", "user_id": "u3", "session_id": "s-3", "event_ts": T0 + 30 * MINUTE},
    {"event_id": "e7", "user_id": "u1", "event_ts": T0 + 60 * MINUTE},
    {
        "event_id": "e8",
        "user_id": "u1",
        "event_name": "return",
        "order_id": "o1",
        "event_ts": T0 + 65 * MINUTE,
    },
    {"event_id": "e9", "user_id": "u2", "event_ts": T0 + 70 * MINUTE},
    {"event_id": "e9", "user_id": "u2", "event_ts": T0 + 70 * MINUTE, "message_id": "m-again"},
    {"event_id": "n1", "user_id": "u4", "event_ts": T0 + 26 * HOUR},
]
ORDER_VERSIONS: Rows = [
    {"quantity": 2, "status": "shipped", "updated_at": T0 + HOUR, "ingest_ts": T0 + 3 * HOUR},
    {"quantity": 3, "status": " Delivered ", "updated_at": T0 + 2 * HOUR, "ingest_ts": T0 + HOUR},
    {"quantity": 1, "status": "placed", "updated_at": T0, "ingest_ts": T0 + HOUR},
    {"product_id": "p2", "quantity": 5},
    {"order_id": "o5", "status": "shipped", "ingest_ts": T0 + 2 * HOUR},
    {"order_id": "o5", "status": "placed", "ingest_ts": T0 + HOUR},
]
PRODUCTS: Rows = [
    {
        "product_id": "p1",
        "product_name": "New\u00a0 Blue  Shirt\tXL ",
        "brand": " Acme\u00a0Co ",
        "price": 100.0,
        "category_path": '["Clothing >> Men\'s  Clothing >> Shirts >> Formal"]',
        "updated_at": T0 + HOUR,
    },
    {"product_id": "p1", "product_name": "Old Shirt", "updated_at": T0, "ingest_ts": T0 + HOUR},
    {"product_id": "p2", "price": 500.0, "category_path": '["Furniture"]', "brand": "  "},
    {"product_id": "p3", "price": 9999.99, "category_path": None, "category": "Books"},
    {
        "product_id": "p4",
        "price": 10000.0,
        "category_path": "Home>>Lighting",
        "category": "Home Decor",
    },
    {"product_id": "p5", "price": None, "category_path": None, "category": None},
    {"product_id": "p6", "price": 2500.0, "category_path": '[" Clothing >>  Shoes "]'},
    {"product_id": "p7", "price": 12000.0, "category_path": '["Furniture >> Beds"]'},
    {"product_id": "p8", "price": 1999.5, "category_path": "", "product_name": " \u202f "},
]
ORDERS: Rows = [
    {"order_id": "o1", "product_id": "p1", "quantity": 3, "unit_price_inr": 100.0},
    {"order_id": "o1", "product_id": "p2", "quantity": 2, "unit_price_inr": None},
    {"order_id": "o2", "product_id": "p9", "quantity": 1, "unit_price_inr": 40.0},
    {
        "order_id": "o3",
        "product_id": "p6",
        "quantity": 1,
        "unit_price_inr": 2500.0,
        "status": "delivered",
    },
    {
        "order_id": "o4",
        "product_id": "p7",
        "quantity": 1,
        "unit_price_inr": 12000.0,
        "status": "cancelled",
        "user_id": "u2",
    },
    {"order_id": "o6", "date": DAY + timedelta(days=1), "order_ts": T0 + timedelta(days=1)},
]
CATALOGUE_EVENTS: Rows = [
    {"event_id": "v1", "product_id": "p1"},
    {"event_id": "v2", "product_id": "p1", "event_ts": T0 + 5 * MINUTE},
    {"event_id": "v3", "product_id": "p2", "user_id": "u2"},
    {"event_id": "v4", "product_id": "p3", "user_id": "u9"},
    {"event_id": "v5", "product_id": "p9", "session_id": "s-9"},
    {"event_id": "w1", "product_id": "p2", "event_name": "wishlist"},
    {
        "event_id": "o1a",
        "product_id": "p1",
        "event_name": "order",
        "order_id": "o1",
        "price": 300.0,
    },
    {
        "event_id": "o1b",
        "product_id": "p2",
        "event_name": "order",
        "order_id": "o1",
        "price": 500.0,
    },
    {"event_id": "o2a", "product_id": "p9", "event_name": "order", "order_id": "o2", "price": 41.0},
    {"event_id": "o7a", "event_name": "order", "order_id": "o7", "price": 80.0},
    {"event_id": "r1", "product_id": "p1", "event_name": "return", "order_id": "o1"},
    {"event_id": "r7", "event_name": "return", "order_id": "o7", "event_ts": T0 + 2 * HOUR},
    {"event_id": "r9", "event_name": "return", "order_id": "o9", "event_ts": T0 + 25 * HOUR},
]
USERS: Rows = [
    {"user_id": "u1", "user_name": "Asha  Rao", "updated_at": T0},
    {
        "user_id": "u1",
        "user_name": "Asha\u00a0R. ",
        "email": " ASHA@Example.com ",
        "updated_at": T0 + HOUR,
    },
    {"user_id": "u2", "user_name": "Ravi", "city": None, "email": "  "},
    {"user_id": "u3", "user_name": "Mira", "ingest_ts": T0 + 2 * HOUR},
    {"user_id": "u3", "user_name": "Mira K", "ingest_ts": T0 + HOUR},
]


def _events_clean(t: Transforms, raw: Inputs, rows: Rows) -> Any:
    return t.events.events_clean(raw.events(rows, nullable=True))


def _products(t: Transforms, raw: Inputs) -> Any:
    return t.products.products_clean(raw.products(PRODUCTS, nullable=True))


def _orders(t: Transforms, raw: Inputs) -> Any:
    lines = t.orders.dedup_order_lines(raw.orders(ORDERS, nullable=True))
    return t.orders.orders_enriched(lines, _products(t, raw))


CASES: dict[str, Case] = {
    "stage_events": lambda t, raw: t.events.stage_events(raw.events(BAD_EVENTS, nullable=True)),
    "event_rejects": lambda t, raw: t.events.event_rejects(
        t.events.stage_events(raw.events(BAD_EVENTS, nullable=True))
    ),
    "events_clean/bad_rows": lambda t, raw: _events_clean(t, raw, BAD_EVENTS),
    "events_clean/dedup": lambda t, raw: _events_clean(t, raw, DEDUP_EVENTS),
    "events_clean/sessions": lambda t, raw: _events_clean(t, raw, SESSION_EVENTS),
    "sessionise/gap_5": lambda t, raw: t.events.sessionise(
        t.events.valid_events(t.events.stage_events(raw.events(SESSION_EVENTS))), 5
    ),
    "traffic_hourly": lambda t, raw: t.traffic.traffic_hourly(
        _events_clean(t, raw, TRAFFIC_EVENTS)
    ),
    "traffic_daily": lambda t, raw: t.traffic.traffic_daily(_events_clean(t, raw, TRAFFIC_EVENTS)),
    "dedup_order_lines": lambda t, raw: t.orders.dedup_order_lines(
        raw.orders(ORDER_VERSIONS, nullable=True)
    ),
    "orders_enriched": _orders,
    "products_clean": _products,
    "category_summary": lambda t, raw: t.products.category_summary(
        _products(t, raw), _events_clean(t, raw, CATALOGUE_EVENTS), _orders(t, raw)
    ),
    "users_clean": lambda t, raw: t.users.users_clean(raw.users(USERS, nullable=True)),
    "users_enriched": lambda t, raw: t.users.users_enriched(
        raw.users(USERS, nullable=True), _events_clean(t, raw, CATALOGUE_EVENTS), _orders(t, raw)
    ),
    "user_behavior": lambda t, raw: t.user_behavior.user_behavior(
        _events_clean(t, raw, CATALOGUE_EVENTS),
        t.products.products_history(raw.products(PRODUCTS, nullable=True)),
        t.users.users_history(raw.users(USERS, nullable=True)),
    ),
    "products_history": lambda t, raw: t.products.products_history(
        raw.products(PRODUCTS, nullable=True)
    ),
    "users_history": lambda t, raw: t.users.users_history(raw.users(USERS, nullable=True)),
    "order_reconciliation": lambda t, raw: t.reconciliation.order_reconciliation(
        _events_clean(t, raw, CATALOGUE_EVENTS), _orders(t, raw)
    ),
    "product_activity_daily": lambda t, raw: t.activity.product_activity_daily(
        _events_clean(t, raw, CATALOGUE_EVENTS)
    ),
    "user_activity_daily": lambda t, raw: t.activity.user_activity_daily(
        _events_clean(t, raw, [*TRAFFIC_EVENTS, *SESSION_EVENTS])
    ),
    "order_activity_daily": lambda t, raw: t.activity.order_activity_daily(
        _events_clean(t, raw, CATALOGUE_EVENTS)
    ),
    "category_summary_from_daily": lambda t, raw: t.products.category_summary_from_daily(
        _products(t, raw),
        t.activity.product_activity_daily(_events_clean(t, raw, CATALOGUE_EVENTS)),
        _orders(t, raw),
    ),
    "users_enriched_from_daily": lambda t, raw: t.users.users_enriched_from_daily(
        t.users.users_clean(raw.users(USERS, nullable=True)),
        t.activity.user_activity_daily(_events_clean(t, raw, CATALOGUE_EVENTS)),
        _orders(t, raw),
    ),
    "order_reconciliation_from_daily": lambda t, raw: (
        t.reconciliation.order_reconciliation_from_daily(
            t.activity.order_activity_daily(_events_clean(t, raw, CATALOGUE_EVENTS)),
            _orders(t, raw),
        )
    ),
}


# --- comparison ---------------------------------------------------------------------------------


def _sort_key(row: Mapping[str, Any]) -> tuple[tuple[bool, str], ...]:
    # None first, NaN as a string: a total order that does not depend on the engine's row order.
    return tuple((value is not None, repr(value)) for value in row.values())


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-9)
    return bool(left == right) and type(left) is type(right)


def assert_same_table(spark_table: pa.Table, duckdb_table: pa.Table) -> None:
    """The same column names and types, and the same rows after a stable sort."""
    assert spark_table.column_names == duckdb_table.column_names
    spark_types = [f.type for f in spark_table.schema]
    duckdb_types = [f.type for f in duckdb_table.schema]
    assert spark_types == duckdb_types, dict(
        zip(spark_table.column_names, duckdb_types, strict=True)
    )
    spark_rows = sorted(spark_table.to_pylist(), key=_sort_key)
    duckdb_rows = sorted(duckdb_table.to_pylist(), key=_sort_key)
    assert len(spark_rows) == len(duckdb_rows)
    for spark_row, duckdb_row in zip(spark_rows, duckdb_rows, strict=True):
        differing = {
            name: (value, duckdb_row[name])
            for name, value in spark_row.items()
            if not _same(value, duckdb_row[name])
        }
        assert not differing, f"row {spark_row} differs (spark, duckdb): {differing}"


def test_assert_same_table_catches_differences() -> None:
    base = pa.table({"k": ["a", "b"], "x": [1.0, 2.0]})
    assert_same_table(base, pa.table({"k": ["b", "a"], "x": [2.0, 1.0 + 1e-12]}))
    with pytest.raises(AssertionError):
        assert_same_table(base, pa.table({"k": ["a", "b"], "x": [1.0, 2.1]}))
    with pytest.raises(AssertionError):
        assert_same_table(base, pa.table({"k": ["a", "b"], "x": pa.array([1, 2], pa.int64())}))
    with pytest.raises(AssertionError):
        assert_same_table(base, pa.table({"k": ["a"], "x": [1.0]}))


@pytest.mark.parametrize("case", sorted(CASES))
def test_transform_gives_the_same_table_on_both_engines(
    case: str, spark: SparkSession, duckdb_session: Any
) -> None:
    build = CASES[case]
    on_spark = to_arrow(build(transforms(spark), Inputs(spark, spark)))
    on_duckdb = to_arrow(build(transforms(duckdb_session), Inputs(spark, duckdb_session)))
    assert on_spark.num_rows > 0
    assert_same_table(on_spark, on_duckdb)


def test_the_engines_run_their_own_transform_code(spark: SparkSession, duckdb_session: Any) -> None:
    on_spark, on_duckdb = transforms(spark), transforms(duckdb_session)
    assert on_spark.functions.__name__ == "pyspark.sql.functions"
    assert on_duckdb.functions.__name__.startswith("sqlframe.duckdb")
    assert vars(on_duckdb.events)["F"] is on_duckdb.functions
    # The process's own modules stay Spark's: the SQLFrame copy is private.
    import shopflow.transform.events as imported

    assert on_spark.events is imported
    assert vars(imported)["F"] is on_spark.functions
    assert on_duckdb.events is not imported


def test_read_parquet_types_hive_columns_the_same_on_both_engines(
    spark: SparkSession, duckdb_session: Any, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from shopflow.contracts import RAW_EVENT_SCHEMA

    rows = [
        {**_raw_event("e1", T0), "date": None},
        _raw_event("e2", T0 + HOUR),
        _raw_event("e3", T0 + 25 * HOUR),
    ]
    for row in rows:
        ts = row["event_ts"]
        folder = tmp_path / f"date={ts.date().isoformat()}" / f"hour={ts.hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        file_rows = [{k: v for k, v in row.items() if k != "date"}]
        pq.write_table(pa.Table.from_pylist(file_rows, RAW_EVENT_SCHEMA), folder / "b.parquet")
    schema = pa.schema([*RAW_EVENT_SCHEMA, pa.field("date", pa.date32()), ("hour", pa.int32())])
    # An hour folder and a date folder; the other hour of the first date must not be read.
    wanted = [str(tmp_path / "date=2026-11-25" / "hour=10"), str(tmp_path / "date=2026-11-26")]
    tables = [
        to_arrow(read_parquet(s, wanted, schema, base_path=str(tmp_path)))
        for s in (spark, duckdb_session)
    ]
    assert sorted(tables[0].column("event_id").to_pylist()) == ["e1", "e3"]
    assert tables[0].schema.field("hour").type == pa.int32()
    assert tables[0].schema.field("date").type == pa.date32()
    assert sorted(tables[0].column("hour").to_pylist()) == [10, 11]
    assert_same_table(tables[0], tables[1])
    empty = [to_arrow(read_parquet(s, [], schema)) for s in (spark, duckdb_session)]
    assert empty[0].num_rows == empty[1].num_rows == 0
    assert [f.type for f in empty[0].schema] == [f.type for f in empty[1].schema]


def test_materialize_computes_once_and_release_frees(
    spark: SparkSession, duckdb_session: Any
) -> None:
    table = pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]})
    for session in (spark, duckdb_session):
        f = transforms(session).functions
        kept = materialize(create_dataframe(session, table).where(f.col("v") > 1))
        assert sorted(to_arrow(kept).column("k").to_pylist()) == ["b", "c"]
        assert to_arrow(kept.groupBy().agg(f.sum("v").alias("s"))).to_pylist() == [{"s": 5}]
        release(kept)
    tables = duckdb_session._conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%materialized%'"
    ).fetchall()
    assert tables == []


def _raw_event(event_id: str, ts: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_name": "view",
        "product_id": "p1",
        "user_id": "u1",
        "order_id": None,
        "price": 10.0,
        "event_ts": ts,
        "session_id": None,
        "message_id": f"m-{event_id}",
        "publish_ts": None,
        "ingest_ts": ts,
        "date": ts.date(),
    }
