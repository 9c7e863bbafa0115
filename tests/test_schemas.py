"""Each curated table's schema is declared once (`shopflow.schemas`); everything else derives
from it, so no second declaration can drift from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow as pa

import shopflow
from shopflow.quality.curated import COLUMNS
from shopflow.schemas import CURATED, EVENTS_CLEAN, Kind
from shopflow.transform import activity, events, orders, products, reconciliation, traffic, users
from shopflow.transform import user_behavior as behavior
from shopflow.transform.curated_tables import ACTIVITY_SCHEMAS, CURATED_EVENTS_SCHEMA
from shopflow.transform.stream_merge import STREAM_FILE_SCHEMA, STREAM_SCHEMA
from shopflow.warehouse.schema import TABLES, ColumnType

SOURCE = Path(shopflow.__file__).parent


def _literal_names(node: ast.Tuple | ast.List) -> list[str] | None:
    """The column names a literal sequence spells: "a", ("a", type), f("a", ...); else None."""
    found = []
    for item in node.elts:
        first = item
        if isinstance(item, ast.Tuple) and item.elts:
            first = item.elts[0]
        elif isinstance(item, ast.Call) and item.args:
            first = item.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            return None
        found.append(first.value)
    return found


def test_no_module_declares_a_whole_curated_table_again() -> None:
    tables = {name: set(t.column_names) for name, t in CURATED.items()}
    tables |= {f"{name} (warehouse)": set(spec.column_names) for name, spec in TABLES.items()}
    again = []
    for path in SOURCE.rglob("*.py"):
        if path.name == "schemas.py" and path.parent == SOURCE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Tuple | ast.List) and len(node.elts) >= 4:
                names = _literal_names(node)
                for table, columns in tables.items():
                    if names and set(names) == columns:
                        again.append(f"{path.relative_to(SOURCE)}:{node.lineno} {table}")
    assert again == []


def test_the_detector_sees_a_second_declaration(tmp_path: Path) -> None:
    copy = ", ".join(f'pa.field("{name}", pa.string())' for name in EVENTS_CLEAN.column_names)
    node = ast.parse(f"SCHEMA = pa.schema([{copy}])").body[0]
    assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
    listed = node.value.args[0]
    assert isinstance(listed, ast.List)
    assert _literal_names(listed) == list(EVENTS_CLEAN.column_names)


def test_every_derived_schema_agrees_with_the_declaration() -> None:
    assert EVENTS_CLEAN.column_names == events.EVENTS_CLEAN_COLUMNS
    assert tuple(STREAM_SCHEMA.names) == EVENTS_CLEAN.column_names
    assert [str(t) for t in STREAM_SCHEMA.types][5:9] == [
        "double",
        "timestamp[us, tz=UTC]",
        "date32[day]",
        "int32",
    ]
    assert STREAM_FILE_SCHEMA.names == [n for n in STREAM_SCHEMA.names if n not in ("date", "hour")]
    assert set(CURATED_EVENTS_SCHEMA.names) == set(EVENTS_CLEAN.column_names)
    assert CURATED_EVENTS_SCHEMA.names[-2:] == ["date", "hour"]  # Hive partitions read last
    derived = {
        "orders_enriched": orders.ORDERS_ENRICHED_COLUMNS,
        "products_clean": products.PRODUCTS_CLEAN_COLUMNS,
        "category_summary": products.CATEGORY_SUMMARY_COLUMNS,
        "users_enriched": users.USERS_ENRICHED_COLUMNS,
        "user_behavior": behavior.USER_BEHAVIOR_COLUMNS,
        "order_reconciliation": reconciliation.ORDER_RECONCILIATION_COLUMNS,
        "traffic_daily": ("date", *traffic.TRAFFIC_MEASURES),
        "traffic_hourly": ("date", "hour", *traffic.TRAFFIC_MEASURES),
        "product_activity_daily": activity.PRODUCT_ACTIVITY_DAILY_COLUMNS,
        "user_activity_daily": activity.USER_ACTIVITY_DAILY_COLUMNS,
        "order_activity_daily": activity.ORDER_ACTIVITY_DAILY_COLUMNS,
    }
    for name, columns in derived.items():
        assert tuple(columns) == CURATED[name].column_names, name
    for name, schema in ACTIVITY_SCHEMAS.items():
        assert set(schema.names) == set(CURATED[name].column_names), name


def test_the_warehouse_tables_are_the_declared_warehouse_columns() -> None:
    assert set(TABLES) == {name for name, t in CURATED.items() if t.warehouse}
    for name, spec in TABLES.items():
        declared = CURATED[name]
        assert spec.column_names == tuple(c.name for c in declared.columns if c.warehouse)
        assert spec.grain is declared.grain
        for column in declared.columns:
            if column.warehouse and column.kind is Kind.MONEY:
                assert dict(spec.columns)[column.name] is ColumnType.NUMERIC
                assert declared.lake_schema().field(column.name).type == pa.float64()
    assert "session_start_ts" not in TABLES["events_clean"].column_names  # lake only


def test_the_quality_checks_read_declared_columns() -> None:
    for name, columns in COLUMNS.items():
        if name in CURATED:
            assert set(columns) <= set(CURATED[name].column_names), name
