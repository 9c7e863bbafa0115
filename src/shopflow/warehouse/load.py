"""Choosing the warehouse for a profile, and loading curated lake partitions into it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa

from shopflow.errors import ShopflowError
from shopflow.lake import LakeLayout, list_data_files, list_partitions, writer_lock
from shopflow.settings import Profile, Settings
from shopflow.warehouse.base import PartitionKey, TableLoad, Warehouse, lake_reader
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.schema import TABLES, Grain, table_spec


def duckdb_path(settings: Settings) -> Path:
    """The local warehouse file: `<SHOPFLOW_HOME>/warehouse.duckdb`."""
    return settings.home / "warehouse.duckdb"


def open_warehouse(
    settings: Settings, *, must_exist: bool = False, load_id: str | None = None
) -> Warehouse:
    """The configured warehouse: DuckDB (profile local) or BigQuery (profile gcp).

    With `must_exist` (readers), nothing is created: a missing local warehouse file is a one-line
    error, and the DuckDB file is opened read-only. `load_id` (BigQuery) names the load, so its
    job ids are the same when the same load is retried (default: a fresh id per call).
    """
    if settings.profile is Profile.GCP:
        from shopflow.warehouse.bigquery_warehouse import (
            BigQueryWarehouse,
            make_client,
        )

        warehouse = BigQueryWarehouse(
            make_client(settings.gcp_project, settings.bigquery_api_endpoint),
            settings.bigquery_dataset,
            location=settings.bigquery_location,
            load_id=load_id,
        )
        if not must_exist:
            warehouse.ensure_tables()
        return warehouse
    from shopflow.warehouse.duckdb_warehouse import DuckDBWarehouse

    path = duckdb_path(settings)
    if must_exist and not path.is_file():
        raise WarehouseError(f"no warehouse at {path}: run `shopflow load` first")
    if must_exist:
        return DuckDBWarehouse(path, read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return DuckDBWarehouse(path)


def load_from_lake(
    warehouse: Warehouse,
    layout: LakeLayout,
    table: str,
    partitions: Sequence[PartitionKey] | None,
) -> int:
    """Replace `partitions` of `table` (whole table when None) with the lake's curated rows."""
    keys = None if partitions is None else tuple(partitions)
    return warehouse.load_batch([TableLoad(table, keys, lake_reader(layout, table, keys))])[0]


@dataclass(frozen=True, slots=True)
class TableReport:
    """What a load did to one table."""

    table: str
    partitions: tuple[PartitionKey, ...] | None  # None: replaced whole
    rows: int


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What `load_tables` did: tables loaded, and tables or dates with nothing in the lake."""

    tables: tuple[TableReport, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows inserted over all tables."""
        return sum(t.rows for t in self.tables)


def plan_loads(
    layout: LakeLayout,
    tables: Iterable[str] | None = None,
    dates: Iterable[date] | None = None,
    *,
    recomputed: bool = False,
) -> tuple[list[TableLoad], dict[str, str]]:
    """The loads that mirror the lake's curated zone into the warehouse, and what was skipped.

    Partitioned tables are replaced per date (an hourly table's whole date, all its hours); only
    dates the lake has for that table, so a mistyped date deletes nothing, unless `recomputed`
    says the ETL just recomputed `dates`: then a date the lake no longer has is emptied in the
    warehouse too. Unpartitioned tables are replaced whole, unless the lake has none of their data.
    """
    names = list(TABLES) if tables is None else [table_spec(t).name for t in tables]
    wanted = None if dates is None else set(dates)
    loads: list[TableLoad] = []
    skipped: dict[str, str] = {}
    for name in names:
        spec = TABLES[name]
        root = layout.curated_root(name)
        if spec.grain is Grain.WHOLE:
            if not list_data_files(root):
                skipped[name] = "no curated data in the lake"
                continue
            loads.append(TableLoad(name, None, lake_reader(layout, name, None)))
            continue
        present = {p.date for p in list_partitions(root) if p.date is not None}
        chosen = present if wanted is None else present & wanted
        if recomputed and wanted is not None:
            chosen = set(wanted)
        elif wanted is not None and wanted - present:
            missing = ", ".join(d.isoformat() for d in sorted(wanted - present))
            skipped[name] = f"no curated partition for {missing}"
        if not chosen:
            skipped.setdefault(name, "no curated data in the lake")
            continue
        keys = tuple(PartitionKey(d) for d in sorted(chosen))
        loads.append(TableLoad(name, keys, lake_reader(layout, name, keys)))
    return loads, skipped


#: What runs in the warehouse after the tables are loaded, before the load is committed (the
#: metric views: `shopflow.metrics.load_warehouse`).
AfterLoad = Callable[[Warehouse], object]


def load_tables(
    settings: Settings,
    tables: Iterable[str] | None = None,
    dates: Iterable[date] | None = None,
    *,
    warehouse: Warehouse | None = None,
    load_id: str | None = None,
    recomputed: bool = False,
    before_load: Callable[[], object] | None = None,
    after_load: AfterLoad | None = None,
) -> LoadReport:
    """Load curated partitions (all, or those of `dates`) of `tables` (default all), then run
    `after_load`; all tables in one transaction (DuckDB) or one script (BigQuery, whose job ids
    derive from `load_id` when given, e.g. the scheduler's DAG, task and interval).
    `recomputed`: `dates` are the dates an ETL run just recomputed (see `plan_loads`).

    `before_load` (the quality gate) runs under the writer lock before anything is read for the
    load, so no ETL can change what it checked; if it raises, nothing is loaded."""
    with writer_lock(settings.lake_url, "shopflow load"):
        if before_load is not None:
            before_load()
        return _load_warehouse(settings, tables, dates, warehouse, load_id, recomputed, after_load)


@contextmanager
def _closing(warehouse: Warehouse) -> Iterator[Warehouse]:
    try:
        yield warehouse
    finally:
        warehouse.close()


def _with_vanished_dates(
    target: Warehouse, layout: LakeLayout, loads: Sequence[TableLoad]
) -> list[TableLoad]:
    """`loads` with each dated table's warehouse dates the lake no longer has added (they load
    empty): a whole-lake load mirrors the curated zone, deleted dates included."""
    mirrored = []
    for load in loads:
        if load.partitions is None:
            mirrored.append(load)
            continue
        known = {key.date for key in load.partitions}
        gone = sorted(target.loaded_dates(load.table) - known)
        if not gone:
            mirrored.append(load)
            continue
        keys = tuple(sorted([*load.partitions, *(PartitionKey(d) for d in gone)]))
        mirrored.append(TableLoad(load.table, keys, lake_reader(layout, load.table, keys)))
    return mirrored


def _apply(
    target: Warehouse,
    loads: Sequence[TableLoad],
    after_load: AfterLoad | None,
    mirror_of: LakeLayout | None = None,
) -> list[int]:
    """Run `loads` in `target` as one batch (with `mirror_of`, the lake's vanished dates
    emptied too: `_with_vanished_dates`), then `after_load`."""
    try:
        if mirror_of is not None:
            loads = _with_vanished_dates(target, mirror_of, loads)
        rows = target.load_batch(loads) if loads else []
    except ShopflowError:
        raise
    except Exception as exc:  # a corrupt file, a full disk: one line, state already rolled back
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WarehouseError(f"load failed, the warehouse is unchanged: {first}") from exc
    if after_load is not None:
        after_load(target)
    return rows


def _load_warehouse(
    settings: Settings,
    tables: Iterable[str] | None,
    dates: Iterable[date] | None,
    warehouse: Warehouse | None,
    load_id: str | None = None,
    recomputed: bool = False,
    after_load: AfterLoad | None = None,
) -> LoadReport:
    for name in tables or ():
        table_spec(name)  # an unknown table is the user's first problem, whatever the lake holds
    layout = LakeLayout.from_settings(settings)
    curated = f"{layout.root}/curated"
    if not list_data_files(curated):
        raise WarehouseError(f"no curated data under {curated}: run `shopflow etl` first")
    dates = None if dates is None else sorted(set(dates))
    loads, skipped = plan_loads(layout, tables, dates, recomputed=recomputed)
    nothing_dated = not any(load.partitions for load in loads)
    if (
        dates is not None
        and nothing_dated
        and any(reason.startswith("no curated partition") for reason in skipped.values())
    ):
        days = ", ".join(d.isoformat() for d in dates)
        raise WarehouseError(f"the lake has no curated partition for {days}: nothing loaded")
    # A load of everything mirrors the lake: dates it no longer has are emptied in the warehouse.
    mirror = layout if dates is None and tables is None else None
    if warehouse is not None:
        rows = _apply(warehouse, loads, after_load, mirror)
    elif settings.profile is Profile.GCP:
        with _closing(open_warehouse(settings, load_id=load_id)) as target:
            rows = _apply(target, loads, after_load, mirror)
    else:
        from shopflow.warehouse.duckdb_warehouse import DuckDBWarehouse, replaced_on_success

        path = duckdb_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced_on_success(path) as copy, _closing(DuckDBWarehouse(copy)) as target:
            rows = _apply(target, loads, after_load, mirror)
    reports = tuple(
        TableReport(load.table, load.partitions, n) for load, n in zip(loads, rows, strict=True)
    )
    return LoadReport(reports, skipped)


def append_history(
    settings: Settings, table: str, rows: pa.Table, *, warehouse: Warehouse | None = None
) -> int:
    """Append `rows` to the history table `table` (e.g. `quality_results`) of the configured
    warehouse, all or nothing; rows appended. The local DuckDB file is written as a load is: a
    private copy that replaces it on success, so a reader never sees half of it."""
    if warehouse is not None:
        return warehouse.append(table, rows)
    if settings.profile is Profile.GCP:
        with _closing(open_warehouse(settings)) as target:
            return target.append(table, rows)
    from shopflow.warehouse.duckdb_warehouse import DuckDBWarehouse, replaced_on_success

    path = duckdb_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_on_success(path) as copy, _closing(DuckDBWarehouse(copy)) as target:
        return target.append(table, rows)
