"""The gcp warehouse: a BigQuery dataset, tables partitioned by `date`, loads through staging.

A load writes each table's rows to a staging table (a Parquet load job), then one multi-statement
transaction deletes the replaced partitions and inserts the staged rows for every table of the
load, so readers see all of it or none of it. Job ids are deterministic:

* the staging load job id and staging table name derive from the table, the partitions and a hash
  of the rows, so a retried staging load re-targets the same job (409 → attach to it) and the
  same staging table (WRITE_TRUNCATE);
* the transaction's job id derives from the staging hashes and the load id (`load_id`, e.g. the
  scheduler's run id; a fresh one per call when not given): a retry of the same load attaches to
  the job already submitted instead of running it twice. Running it twice would be harmless too:
  delete-then-insert of the same partitions converges to the same rows.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import Conflict, GoogleAPIError
from google.cloud import bigquery

from shopflow.warehouse.base import (
    ArrowData,
    Dialect,
    PartitionKey,
    TableLoad,
    check_partitions,
    check_rows_in_partitions,
    materialise,
    partition_predicate,
)
from shopflow.warehouse.errors import WarehouseError
from shopflow.warehouse.schema import (
    HISTORY_TABLES,
    TABLES,
    Grain,
    TableSpec,
    conform,
    history_spec,
    table_spec,
)

#: Staging tables expire on their own if a load dies before dropping them.
STAGING_TTL = timedelta(days=1)
#: One HTTP request's timeout, and the retries of one API call: a stalled or dead endpoint ends
#: in a one-line error instead of a hang (the client's defaults: no request timeout, 10 minutes
#: of retries).
REQUEST_TIMEOUT_SECONDS: Final = 30.0
CALL_RETRY: Final = bigquery.DEFAULT_RETRY.with_timeout(120.0)
#: What a call to BigQuery raises when it fails (a connection error is an OSError).
API_FAILURES: Final = (GoogleAPIError, OSError)


def first_line(error: BaseException) -> str:
    """The first line of an API error's text (the client appends the request's details)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def make_client(project: str, api_endpoint: str | None = None) -> bigquery.Client:
    """A BigQuery client; with `api_endpoint` (an emulator) it uses anonymous credentials."""
    if api_endpoint is None:
        return bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=api_endpoint),
    )


def schema_fields(spec: TableSpec) -> list[bigquery.SchemaField]:
    """A warehouse table's BigQuery schema."""
    return [bigquery.SchemaField(name, kind.value) for name, kind in spec.columns]


#: NUMERIC's scale: the client reads 250 as Decimal('250'); DuckDB's DECIMAL(38, 9) as
#: Decimal('250.000000000'). Both warehouses give the latter, so their rows print the same.
_NUMERIC_QUANTUM: Final = Decimal("1e-9")


def _at_numeric_scale(value: Any) -> Any:
    return value.quantize(_NUMERIC_QUANTUM) if isinstance(value, Decimal) else value


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


class BigQueryWarehouse:
    """The warehouse in one BigQuery dataset."""

    dialect: Dialect = "bigquery"

    def __init__(
        self,
        client: bigquery.Client,
        dataset: str,
        *,
        location: str | None = None,
        load_id: str | None = None,
    ) -> None:
        self.client = client
        self.project = str(client.project)
        self.dataset = dataset
        self.location = location
        self.load_id = load_id

    @property
    def dataset_ref(self) -> str:
        """`project.dataset`."""
        return f"{self.project}.{self.dataset}"

    def _table_id(self, name: str) -> str:
        return f"{self.dataset_ref}.{name}"

    def _sql_name(self, name: str) -> str:
        return f"`{self.dataset_ref}.{name}`"

    # -- jobs -------------------------------------------------------------------------------

    def _run(self, job_id: str, submit: Callable[[str], Any]) -> Any:
        """Submit a job under `job_id`; if it already exists (a retry), wait on that one."""
        try:
            job = submit(job_id)
        except Conflict:
            job = self.client.get_job(job_id, location=self.location)
        try:
            job.result()
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery job {job_id} failed: {exc}") from None
        return job

    def _script(self, sql: str, job_id: str) -> None:
        self._run(
            job_id,
            lambda jid: self.client.query(sql, job_id=jid, job_retry=None, location=self.location),
        )

    # -- interface ----------------------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Create the dataset and every table (date-partitioned where the grain says so)."""
        dataset = bigquery.Dataset(self.dataset_ref)
        if self.location:
            dataset.location = self.location
        retry, timeout = CALL_RETRY, REQUEST_TIMEOUT_SECONDS
        try:
            self.client.create_dataset(dataset, exists_ok=True, retry=retry, timeout=timeout)
            for spec in (*TABLES.values(), *HISTORY_TABLES.values()):
                table = bigquery.Table(self._table_id(spec.name), schema=schema_fields(spec))
                if spec.partitioned:
                    table.time_partitioning = bigquery.TimePartitioning(field="date")
                if spec.grain is Grain.HOURLY:
                    table.clustering_fields = ["hour"]
                self.client.create_table(table, exists_ok=True, retry=retry, timeout=timeout)
        except API_FAILURES as exc:
            raise WarehouseError(
                f"BigQuery: could not create the dataset {self.dataset_ref} or its tables: "
                f"{first_line(exc)}"
            ) from None

    def _stage(
        self, spec: TableSpec, partitions: Sequence[PartitionKey] | None, rows: pa.Table
    ) -> str:
        buffer = io.BytesIO()
        pq.write_table(rows, buffer, compression="zstd")
        data = buffer.getvalue()
        keys = "all" if partitions is None else ",".join(str(k) for k in sorted(set(partitions)))
        digest = _digest(spec.name, keys, data)[:32]
        staging = bigquery.Table(
            self._table_id(f"_stage_{spec.name}_{digest}"), schema=schema_fields(spec)
        )
        staging.expires = datetime.now(UTC) + STAGING_TTL
        self.client.create_table(staging, exists_ok=True)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            schema=schema_fields(spec),
        )
        self._run(
            f"shopflow_stage_{spec.name}_{digest}",
            lambda jid: self.client.load_table_from_file(
                io.BytesIO(data),
                staging.reference,
                job_id=jid,
                job_config=config,
                location=self.location,
                rewind=True,
            ),
        )
        return str(staging.table_id)

    def load_batch(self, loads: Sequence[TableLoad]) -> list[int]:
        """Stage every load, then replace all their partitions in one transaction."""
        staged: list[tuple[TableSpec, Sequence[PartitionKey] | None, str]] = []
        inserted: list[int] = []
        try:
            for load in loads:
                spec = table_spec(load.table)
                check_partitions(spec, load.partitions)
                rows = materialise(spec, load.read())
                check_rows_in_partitions(spec, rows, load.partitions)
                staged.append((spec, load.partitions, self._stage(spec, load.partitions, rows)))
                inserted.append(rows.num_rows)
            if not staged:
                return []
            statements = ["BEGIN TRANSACTION;"]
            for spec, partitions, staging in staged:
                columns = ", ".join(spec.column_names)
                statements.append(
                    f"DELETE FROM {self._sql_name(spec.name)} WHERE {partition_predicate(partitions)};"
                )
                statements.append(
                    f"INSERT INTO {self._sql_name(spec.name)} ({columns}) "
                    f"SELECT {columns} FROM {self._sql_name(staging)};"
                )
            statements.append("COMMIT TRANSACTION;")
            load_id = self.load_id or uuid.uuid4().hex
            job_id = "shopflow_load_" + _digest(load_id, *(s for _, _, s in staged))[:40]
            self._script("\n".join(statements), job_id)
        finally:
            for _, _, staging in staged:
                self.client.delete_table(self._table_id(staging), not_found_ok=True)
        return inserted

    def load_partitions(
        self, table: str, partitions: Sequence[PartitionKey] | None, data: ArrowData
    ) -> int:
        """Replace `partitions` of `table` (whole table when None) with `data`."""
        keys = None if partitions is None else tuple(partitions)
        return self.load_batch([TableLoad(table, keys, lambda: data)])[0]

    def append(self, table: str, data: pa.Table) -> int:
        """Append `data` to the history table `table` with one load job (WRITE_APPEND).

        The job id derives from the table and the rows, so a retried append attaches to the job
        already submitted instead of appending the rows twice.
        """
        spec = history_spec(table)
        rows = conform(spec, data)
        if rows.num_rows == 0:
            return 0
        buffer = io.BytesIO()
        pq.write_table(rows, buffer, compression="zstd")
        payload = buffer.getvalue()
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema=schema_fields(spec),
        )
        destination = bigquery.TableReference.from_string(self._table_id(spec.name))
        self._run(
            f"shopflow_append_{spec.name}_{_digest(self.dataset_ref, spec.name, payload)[:32]}",
            lambda jid: self.client.load_table_from_file(
                io.BytesIO(payload),
                destination,
                job_id=jid,
                job_config=config,
                location=self.location,
                rewind=True,
            ),
        )
        return int(rows.num_rows)

    def loaded_dates(self, table: str) -> set[date]:
        """The dates a date-partitioned table holds rows for."""
        rows = self.query(f"SELECT DISTINCT date FROM `{self._table_id(table)}`")
        return {row["date"] for row in rows if row["date"] is not None}

    def create_view(self, name: str, select_sql: str) -> None:
        """Create or replace a view of the dataset."""
        sql = f"CREATE OR REPLACE VIEW `{self.dataset_ref}.{name}` AS\n{select_sql}"
        try:
            job = self.client.query(
                sql,
                location=self.location,
                retry=CALL_RETRY,
                timeout=REQUEST_TIMEOUT_SECONDS,
                job_retry=None,  # its default retries the whole statement for 10 minutes
            )
            job.result(timeout=CALL_RETRY.timeout)
        except API_FAILURES as exc:
            raise WarehouseError(
                f"BigQuery: could not create the view {self.dataset_ref}.{name}: {first_line(exc)}"
            ) from None

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a BigQuery standard SQL query as dicts."""
        try:
            job = self.client.query(sql, location=self.location)
            return [{k: _at_numeric_scale(v) for k, v in row.items()} for row in job.result()]
        except GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery query failed: {exc}") from None

    def close(self) -> None:
        """Close the client's HTTP session."""
        self.client.close()  # type: ignore[no-untyped-call]
