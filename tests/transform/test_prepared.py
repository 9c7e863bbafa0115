"""Queries built once to DuckDB SQL and run again on new inputs (`shopflow.transform.prepared`),
and the engine's scratch objects dropped at the end of a block."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from shopflow.transform.duckdb_io import engine_objects
from shopflow.transform.engine import create_dataframe, read_parquet, scratch, transforms
from shopflow.transform.prepared import PreparedInputs, PreparedQuery

EVENTS = pa.schema([("user_id", pa.string()), ("event_ts", pa.timestamp("us", tz="UTC"))])
T = datetime(2026, 5, 1, 10, tzinfo=UTC)


def _events(*rows: tuple[str, int]) -> pa.Table:
    return pa.table(
        {
            "user_id": [user for user, _ in rows],
            "event_ts": [T.replace(minute=minute) for _, minute in rows],
        },
        schema=EVENTS,
    )


def test_a_prepared_query_runs_on_each_new_content_of_its_inputs(duckdb_session: Any) -> None:
    F = transforms(duckdb_session).functions
    inputs = PreparedInputs(duckdb_session, {"events": EVENTS})
    built: list[int] = []

    def latest(events: Any) -> Any:
        built.append(1)
        return events.groupBy("user_id").agg(F.max("event_ts").alias("latest_ts"))

    query = PreparedQuery(inputs, latest)
    try:
        inputs.load("events", _events(("u1", 1), ("u1", 5), ("u2", 3)))
        first = query.run().sort_by("user_id").to_pylist()
        inputs.load("events", _events(("u3", 7)))
        second = query.run().to_pylist()
    finally:
        inputs.close()
    assert built == [1]  # built once, run twice
    assert first == [
        {"user_id": "u1", "latest_ts": T.replace(minute=5)},
        {"user_id": "u2", "latest_ts": T.replace(minute=3)},
    ]
    assert second == [{"user_id": "u3", "latest_ts": T.replace(minute=7)}]  # replaced, not added
    tables = {
        row[0]
        for row in duckdb_session._conn.sql("SELECT table_name FROM duckdb_tables()").fetchall()
    }
    assert not tables & set(inputs.tables.values())  # closed: dropped


def test_inputs_are_cast_to_their_schema_and_appended_from_sql(duckdb_session: Any) -> None:
    inputs = PreparedInputs(duckdb_session, {"events": EVENTS})
    try:
        # Other column order, a column too many, a naive timestamp: cast to the input's schema.
        loose = pa.table({"event_ts": [datetime(2026, 5, 1, 10)], "user_id": ["u1"], "x": [1]})
        inputs.load("events", loose)
        inputs.load_sql("events", "SELECT ?, ?", ["u2", T])
        rows = PreparedQuery(inputs, lambda events: events).run().sort_by("user_id")
        assert rows.schema == EVENTS
        assert rows["user_id"].to_pylist() == ["u1", "u2"]
        inputs.clear("events")
        assert PreparedQuery(inputs, lambda events: events).run().num_rows == 0
        with pytest.raises(KeyError):
            inputs.load("other", loose)
    finally:
        inputs.close()


def test_scratch_drops_what_the_block_made_and_keeps_the_rest(
    duckdb_session: Any, tmp_path: Any
) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_events(("u1", 1)), tmp_path / "part.parquet")
    kept = create_dataframe(duckdb_session, _events(("u0", 0)))
    before = engine_objects(duckdb_session._conn)
    with scratch(duckdb_session):
        made = create_dataframe(duckdb_session, _events(("u2", 2)))
        view = read_parquet(duckdb_session, [str(tmp_path / "part.parquet")], EVENTS)
        assert made.count() == 1 and view.count() == 1
        assert len(engine_objects(duckdb_session._conn) - before) == 2  # a table and a view
    assert engine_objects(duckdb_session._conn) == before
    assert kept.count() == 1


def test_a_merge_built_for_one_session_gap_refuses_another(
    spark: Any, settings: Any, duckdb_session: Any
) -> None:
    from shopflow.lake import LakeLayout
    from shopflow.transform.stream_merge import DuckDBMerge, apply_micro_batch

    merge = DuckDBMerge(duckdb_session, gap_minutes=30)
    try:
        with pytest.raises(ValueError, match="30-minute gap, not 45"):
            apply_micro_batch(spark.range(0), LakeLayout.from_settings(settings), 45, merge)
    finally:
        merge.close()
