"""The live part of the BigQuery warehouse (profile gcp): the stream's rows streamed into a table.

On DuckDB the warehouse reads the stream's live Parquet through a view (`shopflow.warehouse.live`).
BigQuery could read the same Parquet on `gs://` through an external table, but: the BigQuery
emulator this project tests against has no external tables, so that path could never be tested
here; the stream replaces slice files every few seconds, under a query that may be reading them;
and loading each micro-batch instead would pass BigQuery's 1,500 load jobs per table per day
within an hour at a 2-s trigger. So each micro-batch's changed live rows are streamed in (the
`insertAll` API, which has no per-day job quota) after the stream's lake writes:

* the table `user_behavior_live` (the lake table's name): the `user_behavior` columns plus
  `stream_batch_id` (the micro-batch that wrote the row) and `streamed_at`; partitioned by
  `date`, partitions expiring after the stream's `--keep-days` (the hourly batch holds older
  dates), clustered by `event_id`;
* append-only: a micro-batch that re-sessionises a stored event appends the event's new row; the
  view takes each event's newest row (by `streamed_at`, then batch id: batch ids start again at 0
  when the stream's checkpoint is deleted to rebuild the live part). A replayed micro-batch (a
  crash between the insert and Spark's checkpoint commit) appends the same rows again under the
  same insert ids (a digest of batch id and event id), which BigQuery drops as duplicates on a
  best-effort basis; any that get through are the same version and the view keeps one;
* only rows dated within the stream's `--keep-days` (UTC) are streamed: older ones are the hourly
  batch's anyway, and BigQuery refuses streamed rows too far in the past, which would fail the
  micro-batch at every replay.

`user_behavior_current` is then, as on DuckDB, every `user_behavior` row plus each live row whose
`event_id` the batch part does not hold: an event is in one part, never both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from shopflow.warehouse.bigquery_warehouse import (
    API_FAILURES,
    CALL_RETRY,
    REQUEST_TIMEOUT_SECONDS,
    BigQueryWarehouse,
    first_line,
    schema_fields,
)
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.live import LIVE_TABLE
from shopflow.warehouse.schema import TABLES, conform

#: Columns the live table has beyond `user_behavior`'s: which micro-batch wrote a row, and when.
VERSION_FIELDS: Final = (
    bigquery.SchemaField("stream_batch_id", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("streamed_at", "TIMESTAMP", mode="REQUIRED"),
)
#: An insertAll request's rows and JSON bytes: BigQuery takes at most 50,000 rows and 10 MB per
#: request. A live row is about 450 bytes as JSON; long ids with non-ASCII text (escaped as
#: `\uXXXX`) made one about 17 times that (7.9 kB) in the probe.
ROWS_PER_REQUEST: Final = 10_000
BYTES_PER_REQUEST: Final = 8_000_000
#: Partition expiry when the table is made by a load before any stream ran (the stream's default).
DEFAULT_KEEP_DAYS: Final = 3
_DAY_MS: Final = 24 * 3600 * 1000
#: BigQuery's names of the types `schema_fields` declares, as `get_table` reports them.
_REPORTED_TYPES: Final = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}


def live_schema() -> list[bigquery.SchemaField]:
    """The live table's fields: `user_behavior`'s, then the version fields."""
    return [*schema_fields(TABLES["user_behavior"]), *VERSION_FIELDS]


def _table_id(warehouse: BigQueryWarehouse) -> str:
    return f"{warehouse.dataset_ref}.{LIVE_TABLE}"


def _foreign(table: bigquery.Table) -> str | None:
    """Why an existing table of the live table's name is not one this module made, if it is not."""
    if table.table_type != "TABLE":
        return f"it is a {table.table_type}"
    found = {f.name: _REPORTED_TYPES.get(f.field_type, f.field_type) for f in table.schema}
    for field in live_schema():
        if field.name not in found:
            return f"it has no column {field.name}"
        if found[field.name] != field.field_type:
            return f"its column {field.name} is {found[field.name]}, not {field.field_type}"
    partitioning = table.time_partitioning
    if partitioning is None or partitioning.field != "date":
        return "it is not partitioned by date"
    return None


def ensure_live_table(warehouse: BigQueryWarehouse, keep_days: int | None = None) -> None:
    """Create `user_behavior_live` if absent; with `keep_days`, set its partitions' expiry. A table
    of that name that is not the live table (another schema, a view) is a one-line error."""
    client = warehouse.client
    table_id = _table_id(warehouse)
    retry, timeout = CALL_RETRY, REQUEST_TIMEOUT_SECONDS
    try:
        try:
            table = client.get_table(table_id, retry=retry, timeout=timeout)
        except NotFound:
            table = bigquery.Table(table_id, schema=live_schema())
            table.time_partitioning = bigquery.TimePartitioning(
                field="date", expiration_ms=(keep_days or DEFAULT_KEEP_DAYS) * _DAY_MS
            )
            table.clustering_fields = ["event_id"]
            client.create_table(table, exists_ok=True, retry=retry, timeout=timeout)
            return
        if (problem := _foreign(table)) is not None:
            raise WarehouseError(
                f"BigQuery {table_id} is not the stream's live table ({problem}); drop or rename "
                "it: the stream and each load make and use a table of that name"
            )
        if keep_days is not None and table.time_partitioning is not None:
            wanted = keep_days * _DAY_MS
            if table.time_partitioning.expiration_ms != wanted:
                table.time_partitioning.expiration_ms = wanted
                client.update_table(table, ["time_partitioning"], retry=retry, timeout=timeout)
    except API_FAILURES as exc:
        raise WarehouseError(
            f"BigQuery: could not make the live table {table_id}: {first_line(exc)}"
        ) from None


def _columns() -> str:
    return ", ".join(f"`{c}`" for c in TABLES["user_behavior"].column_names)


def current_view_sql(warehouse: BigQueryWarehouse) -> str:
    """BigQuery body of `user_behavior_current`: batch rows, then the newest streamed row of each
    event the batch part lacks."""
    columns = _columns()
    batch = f"`{warehouse.dataset_ref}.user_behavior`"
    return (
        f"SELECT {columns} FROM {batch}\n"
        f"UNION ALL\n"
        f"SELECT {columns} FROM (\n"
        f"  SELECT * FROM `{_table_id(warehouse)}`\n"
        "  QUALIFY ROW_NUMBER() OVER (\n"
        "    PARTITION BY event_id ORDER BY streamed_at DESC, stream_batch_id DESC) = 1\n"
        f") AS live\n"
        f"WHERE NOT EXISTS (SELECT 1 FROM {batch} AS b WHERE b.event_id = live.event_id)"
    )


def batch_only_view_sql(warehouse: BigQueryWarehouse) -> str:
    """`user_behavior_current` without a live part (while the live table's name is taken)."""
    return f"SELECT {_columns()} FROM `{warehouse.dataset_ref}.user_behavior`"


def _insert_id(batch_id: int, event_id: str) -> str:
    # A digest: BigQuery bounds an insert id's length, and event ids may be 256 characters.
    return hashlib.blake2b(f"{batch_id}:{event_id}".encode(), digest_size=16).hexdigest()


def _requests(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """`rows` in requests within BigQuery's limits (rows and bytes, measured as escaped JSON)."""
    request: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_size = len(json.dumps(row, default=str)) + 64  # and its insert id, quoted
        if request and (len(request) >= ROWS_PER_REQUEST or size + row_size > BYTES_PER_REQUEST):
            yield request
            request, size = [], 0
        request.append(row)
        size += row_size
    if request:
        yield request


def streamable_since(keep_days: int, today: date | None = None) -> date:
    """The oldest date whose live rows are streamed: the stream keeps `keep_days` dates."""
    return (today or datetime.now(UTC).date()) - timedelta(days=keep_days - 1)


def write_live_rows(
    warehouse: BigQueryWarehouse, rows: pa.Table, batch_id: int, since: date | None = None
) -> int:
    """Stream one micro-batch's live rows (the `user_behavior` columns, extra ones ignored; with
    `since`, only those dated on or after it) into `user_behavior_live`; how many. A row
    BigQuery refuses, a failed request or one that stalls is a one-line error."""
    if since is not None and rows.num_rows:
        rows = rows.filter(pc.greater_equal(rows["date"], pa.scalar(since, pa.date32())))
    if rows.num_rows == 0:
        return 0
    try:
        records = conform(TABLES["user_behavior"], rows).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise WarehouseError(
            f"live rows of micro-batch {batch_id} do not fit the live table: {first_line(exc)}"
        ) from None
    streamed_at = datetime.now(UTC)
    for record in records:
        record["stream_batch_id"] = batch_id
        record["streamed_at"] = streamed_at
    table = bigquery.TableReference.from_string(_table_id(warehouse))
    fields = live_schema()
    for request in _requests(records):
        try:
            errors = warehouse.client.insert_rows(
                table,
                request,
                selected_fields=fields,
                row_ids=[_insert_id(batch_id, r["event_id"]) for r in request],
                retry=CALL_RETRY,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except API_FAILURES as exc:
            raise WarehouseError(
                f"streaming {len(request)} live row(s) of micro-batch {batch_id} into "
                f"{table} failed: {first_line(exc)}"
            ) from None
        if errors:
            first = errors[0]
            raise WarehouseError(
                f"BigQuery refused {len(errors)} live row(s) of micro-batch {batch_id}; row "
                f"{first.get('index')}: {first.get('errors')}"
            )
    return len(records)


def live_activity_rows(
    warehouse: BigQueryWarehouse, since: datetime, now: datetime
) -> list[tuple[str, datetime | None, str | None, int]]:
    """The dashboard's live panel on BigQuery: (kind, minute, event_name, events) rows, as
    `shopflow.dashboard.live` reads them from the Parquet: `minute` rows count each event once
    per minute and type from `since` to `now`; one `newest` row holds the newest event time of
    the last two days (the partitions read are bounded, as the local panel's files are). None
    before the table exists; a failed or stalled query is a one-line error."""
    table = f"`{_table_id(warehouse)}`"
    sql = (
        "SELECT 'minute' AS kind, TIMESTAMP_TRUNC(event_ts, MINUTE) AS minute, event_name, "
        "COUNT(DISTINCT event_id) AS events\n"
        f"FROM {table}\n"
        "WHERE date >= DATE(@since) AND event_ts >= @since AND event_ts <= @now\n"
        "GROUP BY kind, minute, event_name\n"
        "UNION ALL\n"
        f"SELECT 'newest', MAX(event_ts), NULL, 0 FROM {table}\n"
        "WHERE date >= DATE_SUB(DATE(@now), INTERVAL 1 DAY)"
    )
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
            bigquery.ScalarQueryParameter("now", "TIMESTAMP", now),
        ]
    )
    try:
        job = warehouse.client.query(
            sql,
            job_config=config,
            location=warehouse.location,
            retry=CALL_RETRY,
            timeout=REQUEST_TIMEOUT_SECONDS,
            job_retry=None,  # its default retries the whole query for 10 minutes
        )
        return [
            (row["kind"], row["minute"], row["event_name"], int(row["events"]))
            for row in job.result(timeout=REQUEST_TIMEOUT_SECONDS)
        ]
    except NotFound:
        return []  # no stream and no load has made the table yet: nothing live
    except API_FAILURES as exc:
        raise WarehouseError(f"reading the live table {table} failed: {first_line(exc)}") from None
