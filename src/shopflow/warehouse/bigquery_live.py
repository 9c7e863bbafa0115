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
  when the stream's checkpoint is deleted to rebuild the live part). A replayed micro-batch (a crash between
  the insert and Spark's checkpoint commit) appends the same rows again under the same insert ids
  (`<batch>:<event_id>`), which BigQuery drops as duplicates on a best-effort basis; any that get
  through are the same version and the view keeps one.

`user_behavior_current` is then, as on DuckDB, every `user_behavior` row plus each live row whose
`event_id` the batch part does not hold: an event is in one part, never both.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa
from google.api_core.exceptions import GoogleAPIError, NotFound
from google.api_core.retry import Retry
from google.cloud import bigquery

from shopflow.warehouse.bigquery_warehouse import BigQueryWarehouse, schema_fields
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.live import LIVE_TABLE
from shopflow.warehouse.schema import TABLES, conform

#: Columns the live table has beyond `user_behavior`'s: which micro-batch wrote a row, and when.
VERSION_FIELDS: Final = (
    bigquery.SchemaField("stream_batch_id", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("streamed_at", "TIMESTAMP", mode="REQUIRED"),
)
#: Rows per insertAll request: BigQuery takes at most 50,000 rows and 10 MB per request; a live
#: row is about 300 bytes as JSON.
ROWS_PER_REQUEST: Final = 10_000
#: How long one request is retried on transient errors before the micro-batch fails.
INSERT_DEADLINE_SECONDS: Final = 120.0
#: Partition expiry when the table is made by a load before any stream ran (the stream's default).
DEFAULT_KEEP_DAYS: Final = 3
_DAY_MS: Final = 24 * 3600 * 1000


def live_schema() -> list[bigquery.SchemaField]:
    """The live table's fields: `user_behavior`'s, then the version fields."""
    return [*schema_fields(TABLES["user_behavior"]), *VERSION_FIELDS]


def ensure_live_table(warehouse: BigQueryWarehouse, keep_days: int | None = None) -> None:
    """Create `user_behavior_live` if absent; with `keep_days`, set its partitions' expiry."""
    client = warehouse.client
    table_id = f"{warehouse.dataset_ref}.{LIVE_TABLE}"
    try:
        table = client.get_table(table_id)
    except NotFound:
        table = bigquery.Table(table_id, schema=live_schema())
        table.time_partitioning = bigquery.TimePartitioning(
            field="date", expiration_ms=(keep_days or DEFAULT_KEEP_DAYS) * _DAY_MS
        )
        table.clustering_fields = ["event_id"]
        client.create_table(table, exists_ok=True)
        return
    if keep_days is not None and table.time_partitioning is not None:
        wanted = keep_days * _DAY_MS
        if table.time_partitioning.expiration_ms != wanted:
            table.time_partitioning.expiration_ms = wanted
            client.update_table(table, ["time_partitioning"])


def current_view_sql(warehouse: BigQueryWarehouse) -> str:
    """BigQuery body of `user_behavior_current`: batch rows, then the newest streamed row of each
    event the batch part lacks."""
    columns = ", ".join(f"`{c}`" for c in TABLES["user_behavior"].column_names)
    batch = f"`{warehouse.dataset_ref}.user_behavior`"
    live = f"`{warehouse.dataset_ref}.{LIVE_TABLE}`"
    return (
        f"SELECT {columns} FROM {batch}\n"
        f"UNION ALL\n"
        f"SELECT {columns} FROM (\n"
        f"  SELECT * FROM {live}\n"
        "  QUALIFY ROW_NUMBER() OVER (\n"
        "    PARTITION BY event_id ORDER BY streamed_at DESC, stream_batch_id DESC) = 1\n"
        f") AS live\n"
        f"WHERE NOT EXISTS (SELECT 1 FROM {batch} AS b WHERE b.event_id = live.event_id)"
    )


def _requests(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        yield rows[start : start + ROWS_PER_REQUEST]


def write_live_rows(warehouse: BigQueryWarehouse, rows: pa.Table, batch_id: int) -> int:
    """Stream one micro-batch's live rows (the `user_behavior` columns, extra ones ignored) into
    `user_behavior_live`; how many. A rejected row or a failed request is a one-line error."""
    if rows.num_rows == 0:
        return 0
    records = conform(TABLES["user_behavior"], rows).to_pylist()
    streamed_at = datetime.now(UTC)
    for record in records:
        record["stream_batch_id"] = batch_id
        record["streamed_at"] = streamed_at
    table = bigquery.TableReference.from_string(f"{warehouse.dataset_ref}.{LIVE_TABLE}")
    fields = live_schema()
    retry = Retry(deadline=INSERT_DEADLINE_SECONDS)
    for request in _requests(records):
        try:
            errors = warehouse.client.insert_rows(
                table,
                request,
                selected_fields=fields,
                row_ids=[f"{batch_id}:{r['event_id']}" for r in request],
                retry=retry,
            )
        except GoogleAPIError as exc:
            raise WarehouseError(
                f"streaming {len(request)} live row(s) of micro-batch {batch_id} into "
                f"{table} failed: {str(exc).splitlines()[0]}"
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
    per minute and type from `since` to `now`; one `newest` row holds the newest event time.
    None before the table exists."""
    table = f"`{warehouse.dataset_ref}.{LIVE_TABLE}`"
    sql = (
        "SELECT 'minute' AS kind, TIMESTAMP_TRUNC(event_ts, MINUTE) AS minute, event_name, "
        "COUNT(DISTINCT event_id) AS events\n"
        f"FROM {table}\n"
        "WHERE date >= DATE(@since) AND event_ts >= @since AND event_ts <= @now\n"
        "GROUP BY kind, minute, event_name\n"
        "UNION ALL\n"
        f"SELECT 'newest', MAX(event_ts), NULL, COUNT(*) FROM {table}"
    )
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
            bigquery.ScalarQueryParameter("now", "TIMESTAMP", now),
        ]
    )
    try:
        job = warehouse.client.query(sql, job_config=config, location=warehouse.location)
        return [
            (row["kind"], row["minute"], row["event_name"], int(row["events"]))
            for row in job.result()
        ]
    except NotFound:
        return []  # no stream and no load has made the table yet: nothing live
    except GoogleAPIError as exc:
        raise WarehouseError(
            f"reading the live table {table} failed: {str(exc).splitlines()[0]}"
        ) from None
