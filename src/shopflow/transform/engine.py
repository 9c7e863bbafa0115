"""The ETL engine: Spark (local or Dataproc) or DuckDB in-process through SQLFrame.

The transforms are written once against the `pyspark.sql` DataFrame API. On Spark they run as
imported. On DuckDB they run through SQLFrame, which implements that API by generating SQL: the
transform modules are imported a second time while `sqlframe.activate` routes `pyspark.sql` to
`sqlframe.duckdb`, so that copy's `F`, `Window` and `Column` are SQLFrame's. The activation is
scoped to those imports (the process keeps the real pyspark), which lets one process hold both
engines: the parity tests run every transform on each and compare.

What differs between the engines lives here, at the I/O edges: opening a session, reading
Hive-partitioned Parquet, turning an Arrow table into a DataFrame and back, and materialising an
intermediate result that several outputs reuse. See docs/engines.md.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Literal, cast, get_args

import pyarrow as pa

from shopflow.errors import ShopflowError
from shopflow.settings import Settings

Engine = Literal["spark", "duckdb"]
ENGINES: Final[tuple[Engine, ...]] = get_args(Engine)

#: The transform modules, in import order (dependencies first).
TRANSFORM_MODULES: Final = (
    "_common",
    "events",
    "activity",
    "traffic",
    "orders",
    "history",
    "products",
    "users",
    "user_behavior",
    "reconciliation",
    "stream_plan",
)
_PACKAGE: Final = "shopflow.transform"

_names = itertools.count()
_load_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Transforms:
    """The transform modules bound to one engine, and that engine's `pyspark.sql.functions`."""

    engine: Engine
    functions: ModuleType
    events: ModuleType
    activity: ModuleType
    traffic: ModuleType
    orders: ModuleType
    products: ModuleType
    users: ModuleType
    history: ModuleType
    user_behavior: ModuleType
    reconciliation: ModuleType
    stream_plan: ModuleType


def etl_engine(settings: Settings) -> Engine:
    """The engine the settings select (`SHOPFLOW_ETL_ENGINE`; Spark until the setting exists)."""
    value = str(getattr(settings, "etl_engine", "spark")).lower()
    for engine in ENGINES:
        if value == engine:
            return engine
    raise ShopflowError(
        f"invalid settings: SHOPFLOW_ETL_ENGINE must be one of {', '.join(ENGINES)}, got {value!r}"
    )


def open_etl_session(settings: Settings, app_name: str = "shopflow") -> Any:
    """A session for the selected engine: a SparkSession, or a SQLFrame `DuckDBSession`.

    Like Spark's `getOrCreate`, SQLFrame keeps one session per process: an open one is reused.
    Both run in UTC.
    """
    if etl_engine(settings) == "spark":
        from shopflow.transform.session import build_spark_session

        return build_spark_session(settings, app_name=app_name)
    return open_duckdb_session()


@contextlib.contextmanager
def stopping(session: Any) -> Iterator[Any]:
    """`session` (Spark or SQLFrame), stopped at the end of the block.

    Stopped explicitly because a DuckDB database still open when the interpreter exits is torn
    down with its worker threads still running, which can abort the process after a successful
    run ("terminate called without an active exception", exit -6; duckdb/duckdb#13904).
    SQLFrame's `stop` also forgets its one session, so the next `open_etl_session` makes a new one.
    """
    try:
        yield session
    finally:
        session.stop()


def open_duckdb_session() -> Any:
    """The process's SQLFrame DuckDB session (in-memory database, UTC), created on first use."""
    import duckdb
    from sqlframe.duckdb import DuckDBSession

    session = DuckDBSession(conn=duckdb.connect(":memory:"))
    try:
        session._conn.execute("SELECT 1")
    except duckdb.ConnectionException:
        # A stopped session that a DataFrame of it made current again (SQLFrame's copy does):
        # forget it for good and start a new one.
        session.stop()
        session = DuckDBSession(conn=duckdb.connect(":memory:"))
    session.conf.set("spark.sql.session.timeZone", "UTC")
    session._conn.execute("SET TimeZone = 'UTC'")
    # Row order inside a curated file carries no meaning (readers sort), and keeping it costs
    # DuckDB memory and time when it materialises the staged and clean events.
    session._conn.execute("SET preserve_insertion_order = false")
    # Long queries would draw a progress bar on the job's stderr.
    session._conn.execute("SET enable_progress_bar = false")
    return session


def engine_of(obj: Any) -> Engine:
    """The engine a session or DataFrame belongs to."""
    return "duckdb" if type(obj).__module__.startswith("sqlframe.") else "spark"


def transforms(session_or_engine: Any) -> Transforms:
    """The transforms for a session's engine (or an engine name)."""
    engine = (
        cast(Engine, session_or_engine)
        if session_or_engine in ENGINES
        else engine_of(session_or_engine)
    )
    modules = _spark_modules() if engine == "spark" else _sqlframe_modules()
    return Transforms(engine=engine, **modules)


def _spark_modules() -> dict[str, ModuleType]:
    from pyspark.sql import functions

    modules = {n: importlib.import_module(f"{_PACKAGE}.{n}") for n in TRANSFORM_MODULES}
    return {"functions": functions, **{n: m for n, m in modules.items() if n != "_common"}}


_sqlframe_cache: dict[str, ModuleType] = {}


def _sqlframe_modules() -> dict[str, ModuleType]:
    """A private copy of the transform modules imported with `pyspark.sql` routed to SQLFrame."""
    with _load_lock:
        if not _sqlframe_cache:
            _sqlframe_cache.update(_import_under_sqlframe())
        return dict(_sqlframe_cache)


def _import_under_sqlframe() -> dict[str, ModuleType]:
    import pyspark.sql  # noqa: F401  (saved by the activation, restored after it)
    import sqlframe

    package = importlib.import_module(_PACKAGE)
    names = [f"{_PACKAGE}.{n}" for n in TRANSFORM_MODULES]
    saved_modules = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    saved_attrs = {n: vars(package)[n] for n in TRANSFORM_MODULES if n in vars(package)}
    loaded: dict[str, ModuleType] = {}
    try:
        with sqlframe.activate_context("duckdb"):
            from pyspark.sql import functions  # SQLFrame's, while activated

            for short, full in zip(TRANSFORM_MODULES, names, strict=True):
                loaded[short] = importlib.import_module(full)
    finally:
        for full in names:
            sys.modules.pop(full, None)
        sys.modules.update(saved_modules)
        for short in TRANSFORM_MODULES:
            if short in saved_attrs:
                setattr(package, short, saved_attrs[short])
            elif short in vars(package):
                delattr(package, short)
    loaded.pop("_common")
    return {"functions": functions, **loaded}


def _duckdb_conn(session: Any) -> Any:
    return session._conn


def _new_name(prefix: str) -> str:
    return f"_shopflow_{prefix}_{next(_names)}"


def create_dataframe(session: Any, table: pa.Table) -> Any:
    """A DataFrame holding an Arrow table (its schema kept; timestamps stay UTC).

    On DuckDB the table is copied into the database once (SQLFrame needs a catalogued relation).
    """
    if engine_of(session) == "spark":
        return session.createDataFrame(table)
    conn = _duckdb_conn(session)
    name = _new_name("arrow")
    scan = f"{name}_scan"
    conn.register(scan, table)
    try:
        conn.execute(f'CREATE TABLE "{name}" AS SELECT * FROM "{scan}"')
    finally:
        conn.unregister(scan)
    return session.table(name)


def read_parquet(
    session: Any,
    paths: Sequence[str],
    schema: pa.Schema,
    *,
    base_path: str | None = None,
) -> Any:
    """Parquet files or Hive partition directories as one DataFrame with the columns of `schema`.

    Partition columns named in `schema` (`date`, `hour`, `cursor_date`) come from the paths, typed
    as `shopflow.lake.PARTITION_TYPES`. A column missing from a file is null. No paths: an empty
    DataFrame.
    """
    if not paths:
        return create_dataframe(session, schema.empty_table())
    if engine_of(session) == "spark":
        from pyspark.sql.pandas.types import from_arrow_schema

        reader = session.read.schema(from_arrow_schema(schema))
        if base_path is not None:
            reader = reader.option("basePath", base_path)
        return reader.parquet(*paths)
    from shopflow.transform.duckdb_io import read_parquet_view

    return session.table(
        read_parquet_view(_duckdb_conn(session), paths, schema, _new_name("parquet"))
    )


def to_arrow(df: Any) -> pa.Table:
    """A DataFrame collected as Arrow, typed the same on both engines.

    Timestamps are `timestamp[us, tz=UTC]`; integer columns keep their Spark width (SQLFrame's
    DuckDB results can be wider for expressions such as `hour`, which the transforms cast).
    """
    return arrow_types(df.toArrow())


def arrow_types(table: pa.Table) -> pa.Table:
    """A query result typed as `to_arrow` types it (timestamps `timestamp[us, tz=UTC]`)."""
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type):
            fields.append(pa.field(f.name, pa.timestamp("us", tz="UTC"), f.nullable))
        else:
            fields.append(f)
    schema = pa.schema(fields)
    return table if schema.equals(table.schema) else table.cast(schema)


def materialize(df: Any) -> Any:
    """A DataFrame that several outputs reuse, computed once: Spark `cache()`, DuckDB a table.

    SQLFrame's `cache()` is a no-op (it would recompute the whole plan for every output).
    Release it with `release`.
    """
    if engine_of(df) == "spark":
        return df.cache()
    session = df.session
    name = _new_name("materialized")
    _duckdb_conn(session).execute(f'CREATE TABLE "{name}" AS {duckdb_sql(df)}')
    return session.table(name)


def duckdb_sql(df: Any) -> str:
    """The DuckDB SQL of a SQLFrame DataFrame, as `toArrow` runs it: not optimised, not pretty.

    `DataFrame.sql()` defaults to running sqlglot's optimiser over the whole plan and pretty
    printing it; DuckDB optimises the query itself, and the unoptimised SQL is the one SQLFrame
    executes for `toArrow`/`collect` anyway.
    """
    return cast(str, df.sql(dialect="duckdb", optimize=False, pretty=False))


def release(df: Any) -> None:
    """Free what `materialize` (or `create_dataframe` on DuckDB) holds."""
    if engine_of(df) == "spark":
        df.unpersist()
        return
    for name in _base_tables(df):
        _duckdb_conn(df.session).execute(f'DROP TABLE IF EXISTS "{name}"')


@contextlib.contextmanager
def scratch(session: Any) -> Iterator[None]:
    """A block whose DuckDB tables and views made here (`create_dataframe`, `read_parquet`,
    `materialize`) are dropped at its end, so a long-running process (the stream) does not
    accumulate them. Nothing to do on Spark (release cached DataFrames with `release`)."""
    if engine_of(session) == "spark":
        yield
        return
    from shopflow.transform.duckdb_io import drop_objects, engine_objects

    conn = _duckdb_conn(session)
    before = engine_objects(conn)
    try:
        yield
    finally:
        drop_objects(conn, engine_objects(conn) - before)


def broadcast(df: Any) -> Any:
    """`df` marked as small enough to send whole to every join (a Spark hint; DuckDB plans
    joins itself)."""
    if engine_of(df) == "spark":
        from pyspark.sql import functions

        return functions.broadcast(df)
    return df


def _base_tables(df: Any) -> list[str]:
    from sqlglot import exp

    return [
        t.name
        for t in df.expression.find_all(exp.Table)
        if t.name.startswith("_shopflow_materialized_") or t.name.startswith("_shopflow_arrow_")
    ]
