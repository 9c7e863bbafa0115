"""The BigQuery warehouse's live part on the BigQuery emulator: streamed rows, newest version per
event, superseded by the batch, a replayed micro-batch counted once."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from time import monotonic

import pyarrow as pa
import pytest
from google.cloud import bigquery

from shopflow.dashboard.live import recent_live_activity
from shopflow.lake import LakeLayout
from shopflow.metrics.publishing import load_warehouse
from shopflow.settings import Settings
from shopflow.warehouse import bigquery_live, bigquery_warehouse
from shopflow.warehouse.base import TableLoad
from shopflow.warehouse.bigquery_live import ensure_live_table, live_schema, write_live_rows
from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse, make_client
from shopflow.warehouse.bq_emulator import BigQueryEmulator
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.live import CURRENT_VIEW, LIVE_TABLE, create_current_view, live_sink
from shopflow.warehouse.load import open_warehouse
from shopflow.warehouse.schema import TABLES
from tests.warehouse.fixtures import gcp_profile

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 20)
#: The stream's sink streams rows of its last `--keep-days` dates only.
TODAY = datetime.now(UTC).date()


def _rows(*rows: tuple[str, str, float], day: date = DAY) -> pa.Table:
    """Live rows as the stream's merge makes them (lake types, plus the partition `hour`)."""
    schema = TABLES["user_behavior"].lake_arrow_schema()
    records = [
        {
            "date": day,
            "event_id": event_id,
            "event_name": "view",
            "price": price,
            "product_id": "p1",
            "product_name": "Kurta",
            "user_id": "u1",
            "user_name": "Asha",
            "order_id": None,
            "event_ts": datetime.combine(day, time(10), tzinfo=UTC),
            "session_id": session,
            "category": "Clothing",
        }
        for event_id, session, price in rows
    ]
    table = pa.Table.from_pylist(records, schema=schema)
    return table.append_column("hour", pa.array([10] * len(records), pa.int32()))


def _current(warehouse: BigQueryWarehouse) -> list[tuple[str, str, Decimal]]:
    rows = warehouse.query(
        f"SELECT event_id, session_id, price FROM `{warehouse.dataset_ref}.{CURRENT_VIEW}` "
        "ORDER BY event_id"
    )
    return [(r["event_id"], r["session_id"], r["price"]) for r in rows]


def test_view_takes_the_newest_version_once_and_the_batch_over_the_live_part(
    bq_warehouse: BigQueryWarehouse, settings: Settings
) -> None:
    assert create_current_view(bq_warehouse, settings) == [LIVE_TABLE, CURRENT_VIEW]
    assert _current(bq_warehouse) == []
    assert write_live_rows(bq_warehouse, _rows(("e1", "s1", 10.0), ("e2", "s1", 20.0)), 1) == 2
    # Micro-batch 2 re-sessionises e2 and adds e3; micro-batch 2 is then replayed after a crash.
    write_live_rows(bq_warehouse, _rows(("e2", "s2", 20.0), ("e3", "s2", 30.0)), 2)
    write_live_rows(bq_warehouse, _rows(("e2", "s2", 20.0), ("e3", "s2", 30.0)), 2)
    assert _current(bq_warehouse) == [
        ("e1", "s1", Decimal("10.000000000")),
        ("e2", "s2", Decimal("20.000000000")),
        ("e3", "s2", Decimal("30.000000000")),
    ]
    # The hourly batch loads e1 (its own session id): the batch row replaces the live one.
    batch = _rows(("e1", "batch-s", 10.0))
    bq_warehouse.load_batch([TableLoad("user_behavior", None, lambda: batch)])
    assert [r[:2] for r in _current(bq_warehouse)] == [
        ("e1", "batch-s"),
        ("e2", "s2"),
        ("e3", "s2"),
    ]


def test_after_a_rebuild_from_batch_zero_the_newer_row_wins(
    bq_warehouse: BigQueryWarehouse, settings: Settings
) -> None:
    create_current_view(bq_warehouse, settings)
    write_live_rows(bq_warehouse, _rows(("e1", "old-session", 1.0)), 9)
    # The checkpoint was deleted to rebuild the live part: the stream counts from 0 again.
    write_live_rows(bq_warehouse, _rows(("e1", "rebuilt", 1.0)), 0)
    assert [r[:2] for r in _current(bq_warehouse)] == [("e1", "rebuilt")]


def test_rows_go_in_several_requests_and_none_is_a_no_op(
    bq_warehouse: BigQueryWarehouse, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_current_view(bq_warehouse, settings)
    monkeypatch.setattr(bigquery_live, "ROWS_PER_REQUEST", 2)
    assert write_live_rows(bq_warehouse, _rows(*((f"e{i}", "s", 1.0) for i in range(5))), 7) == 5
    assert write_live_rows(bq_warehouse, _rows(), 8) == 0
    assert [r[0] for r in _current(bq_warehouse)] == [f"e{i}" for i in range(5)]


def test_partitions_expire_after_the_streams_keep_days(bq_warehouse: BigQueryWarehouse) -> None:
    ensure_live_table(bq_warehouse)
    table_id = f"{bq_warehouse.dataset_ref}.{LIVE_TABLE}"
    day_ms = 24 * 3600 * 1000
    assert bq_warehouse.client.get_table(table_id).time_partitioning.expiration_ms == 3 * day_ms
    ensure_live_table(bq_warehouse, keep_days=5)
    assert bq_warehouse.client.get_table(table_id).time_partitioning.expiration_ms == 5 * day_ms
    ensure_live_table(bq_warehouse)  # a load leaves the stream's choice alone
    assert bq_warehouse.client.get_table(table_id).time_partitioning.expiration_ms == 5 * day_ms


def test_a_failed_insert_is_one_line(bq_warehouse: BigQueryWarehouse) -> None:
    # No live table: the request fails; the error names the batch and the table in one line.
    with pytest.raises(WarehouseError) as caught:
        write_live_rows(bq_warehouse, _rows(("e1", "s1", 1.0)), 4)
    message = str(caught.value)
    assert "micro-batch 4" in message and LIVE_TABLE in message and "\n" not in message


@pytest.fixture
def gcp_settings(bq_emulator: BigQueryEmulator, settings: Settings) -> Iterator[Settings]:
    """Profile gcp with the warehouse in a fresh dataset of the emulator (deleted after)."""
    with gcp_profile(settings, bq_emulator) as gcp:
        yield gcp


def test_the_stream_sink_is_bigquery_on_gcp_only(
    settings: Settings, gcp_settings: Settings
) -> None:
    with live_sink(settings, keep_days=3) as sink:
        assert sink is None  # local: the DuckDB view reads the live Parquet
    with live_sink(gcp_settings, keep_days=4) as sink:
        assert sink is not None
        sink(1, _rows(("e1", "s1", 5.0), day=TODAY))
        sink(2, _rows(("e-old", "s1", 5.0), day=TODAY - timedelta(days=4)))  # past keep-days
    warehouse = open_warehouse(gcp_settings, must_exist=True)
    assert isinstance(warehouse, BigQueryWarehouse)
    try:
        # The view is there before any load, with the stream's rows in it.
        assert [r[0] for r in _current(warehouse)] == ["e1"]
    finally:
        warehouse.close()


def test_the_dashboards_live_panel_reads_bigquery_on_gcp(gcp_settings: Settings) -> None:
    at = datetime.combine(TODAY, time(10), tzinfo=UTC)
    before = recent_live_activity(gcp_settings)  # no dataset, no live table yet
    assert before.newest_event_ts is None and before.per_minute == [] and not before.note
    with live_sink(gcp_settings, keep_days=3) as sink:
        assert sink is not None
        sink(1, _rows(("e1", "s1", 5.0), ("e2", "s1", 5.0), day=TODAY))
        sink(2, _rows(("e2", "s2", 5.0), day=TODAY))  # a second version of e2: still one event
    activity = recent_live_activity(gcp_settings, minutes=15, now=at + timedelta(minutes=3))
    assert activity.per_minute == [{"minute": at, "event_name": "view", "events": 2}]
    assert activity.newest_event_ts == at
    assert activity.newest_age_seconds == 180.0
    assert activity.source == "BigQuery's live table"
    # Outside the window: no minutes, but the newest event is still known.
    later = recent_live_activity(gcp_settings, minutes=15, now=at + timedelta(hours=2))
    assert later.per_minute == [] and later.newest_event_ts == at


@pytest.mark.parametrize("kind", ["view", "other columns", "not partitioned"])
def test_a_foreign_table_under_the_live_name_is_one_line_and_loads_go_on(
    gcp_settings: Settings, tiny_lake: LakeLayout, kind: str
) -> None:
    warehouse = open_warehouse(gcp_settings)  # makes the dataset and the batch tables
    assert isinstance(warehouse, BigQueryWarehouse)
    table_id = f"{warehouse.dataset_ref}.{LIVE_TABLE}"
    if kind == "view":
        warehouse.create_view(LIVE_TABLE, "SELECT 1 AS x")
    elif kind == "other columns":
        warehouse.client.create_table(
            bigquery.Table(table_id, schema=[bigquery.SchemaField("x", "STRING")])
        )
    else:
        warehouse.client.create_table(bigquery.Table(table_id, schema=live_schema()))
    try:
        with pytest.raises(WarehouseError) as caught:
            ensure_live_table(warehouse)
        message = str(caught.value)
        assert "is not the stream's live table" in message and "\n" not in message
        # The stream refuses to start, in one line, before it streams anything.
        with (
            pytest.raises(WarehouseError, match="not the stream's live table"),
            live_sink(gcp_settings, keep_days=3),
        ):
            pass
        # Every load still loads and says what it left out; the view holds the batch part.
        for _ in range(2):
            report = load_warehouse(gcp_settings, warehouse=warehouse)
            assert "not the stream's live table" in report.skipped[CURRENT_VIEW]
            assert report.rows > 0
            batch = warehouse.query(
                f"SELECT COUNT(*) AS n FROM `{warehouse.dataset_ref}.user_behavior`"
            )
            assert len(_current(warehouse)) == batch[0]["n"] > 0
    finally:
        warehouse.close()


def test_a_stalled_endpoint_ends_in_one_line_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, gcp_settings: Settings
) -> None:
    """An endpoint that takes connections and never answers: the insert, the sink's start and the
    dashboard's panel each end in one line within the (here shortened) timeouts."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    short = bigquery.DEFAULT_RETRY.with_timeout(3.0)
    for module in (bigquery_warehouse, bigquery_live):
        monkeypatch.setattr(module, "REQUEST_TIMEOUT_SECONDS", 1.0)
        monkeypatch.setattr(module, "CALL_RETRY", short)
    stalled = gcp_settings.model_copy(update={"bigquery_api_endpoint": endpoint})
    warehouse = BigQueryWarehouse(make_client("p-stalled", endpoint), "d")
    try:
        started = monotonic()
        with pytest.raises(WarehouseError) as caught:
            write_live_rows(warehouse, _rows(("e1", "s1", 1.0)), 3)
        assert "micro-batch 3" in str(caught.value) and "\n" not in str(caught.value)
        with (
            pytest.raises(WarehouseError, match="could not create the dataset"),
            live_sink(stalled, keep_days=3),
        ):
            pass
        activity = recent_live_activity(stalled)
        assert "reading the live table" in activity.note and activity.per_minute == []
        assert monotonic() - started < 60
    finally:
        warehouse.close()
        silent.close()


def test_requests_stay_within_bigquerys_row_and_byte_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bigquery_live, "ROWS_PER_REQUEST", 3)
    monkeypatch.setattr(bigquery_live, "BYTES_PER_REQUEST", 2_000)
    rows = [{"event_id": f"e{i}", "user_name": "é" * (250 if i == 4 else 1)} for i in range(8)]
    requests = list(bigquery_live._requests(rows))
    assert [r["event_id"] for request in requests for r in request] == [f"e{i}" for i in range(8)]
    assert max(len(r) for r in requests) <= 3
    for request in requests:  # each request's escaped JSON within the byte limit
        assert len(json.dumps(request)) <= 2_000
    assert len(bigquery_live._insert_id(12, "x" * 256)) <= 128


def test_rows_older_than_the_streams_days_are_not_streamed(
    bq_warehouse: BigQueryWarehouse, settings: Settings
) -> None:
    create_current_view(bq_warehouse, settings)
    rows = _rows(("e-old", "s", 1.0), ("e-new", "s", 1.0))
    rows = rows.set_column(0, "date", pa.array([DAY - timedelta(days=5), DAY], pa.date32()))
    assert write_live_rows(bq_warehouse, rows, 1, since=DAY - timedelta(days=2)) == 1
    assert [r[0] for r in _current(bq_warehouse)] == ["e-new"]
    assert bigquery_live.streamable_since(3, today=DAY) == DAY - timedelta(days=2)
