"""Incremental pull of the orders API into `raw/orders/` (meant to run every 10 minutes).

The watermark is the largest `updated_at` landed so far. Each pull asks for lines changed since the
watermark minus a small overlap (clock skew between the API and us), follows cursors to the end,
drops the lines it already landed inside the overlap window, and writes one file named from the
range it covers. The watermark advances only after that file is durably written, so a crash
repeats the pull, and a repeated pull over the same range replaces its own file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import pyarrow as pa
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from shopflow.contracts import RAW_ORDER_SCHEMA
from shopflow.errors import ShopflowError
from shopflow.ingest.report import IngestReport
from shopflow.ingest.watermark import RowKey, Watermark, row_key
from shopflow.lake import LakeLayout, StateStore, write_parquet_atomic
from shopflow.lake.commit_log import register_files
from shopflow.settings import Settings
from shopflow.sources.orders_api.client import (
    ApiOrderLine,
    OrdersApiClient,
    OrdersApiError,
    OrdersApiRateLimitedError,
    OrdersPage,
)

STATE_NAME: Final = "orders_watermark"
DEFAULT_OVERLAP: Final = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter for retryable API failures; 429 honours Retry-After."""

    max_attempts: int = 8
    base_seconds: float = 0.2
    max_seconds: float = 10.0
    max_retry_after_seconds: float = 60.0

    def wait(self) -> Callable[[RetryCallState], float]:
        """The tenacity wait strategy: the server's Retry-After on a 429, else full jitter."""
        jitter = wait_random_exponential(multiplier=self.base_seconds, max=self.max_seconds)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if (
                isinstance(error, OrdersApiRateLimitedError)
                and error.retry_after_seconds is not None
            ):
                return min(error.retry_after_seconds, self.max_retry_after_seconds)
            return float(jitter(state))

        return wait


def _retryable(error: BaseException) -> bool:
    return isinstance(error, OrdersApiError) and error.retryable


def fetch_page_with_retries(
    client: OrdersApiClient,
    updated_since: datetime,
    cursor: str | None,
    page_size: int,
    policy: RetryPolicy,
    report: IngestReport,
    sleep: Callable[[float], None] = time.sleep,
) -> OrdersPage:
    """One page, retrying 5xx, timeouts, refused connections and 429s as the policy says."""

    def count_retry(state: RetryCallState) -> None:
        report.retries += 1

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=policy.wait(),
        retry=retry_if_exception(_retryable),
        before_sleep=count_retry,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(client.fetch_page, updated_since, cursor, page_size)
    except OrdersApiError as error:
        if error.retryable:
            raise ShopflowError(
                f"orders ingest gave up after {policy.max_attempts} attempts: {error}"
            ) from None
        raise


def _key(line: ApiOrderLine) -> RowKey:
    return row_key(line.order_id, line.product_id, updated_at=line.updated_at)


def order_lines_table(lines: list[ApiOrderLine], ingest_ts: datetime) -> pa.Table:
    """Order lines as a raw-zone table."""
    columns = {
        name: [getattr(line, name) for line in lines]
        for name in RAW_ORDER_SCHEMA.names
        if name != "ingest_ts"
    }
    columns["ingest_ts"] = [ingest_ts] * len(lines)
    return pa.Table.from_pydict(columns, schema=RAW_ORDER_SCHEMA)


def ingest_orders(
    settings: Settings,
    *,
    client: OrdersApiClient | None = None,
    page_size: int | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    policy: RetryPolicy | None = None,
    on_page: Callable[[int], None] | None = None,
) -> IngestReport:
    """Pull every order line changed since the watermark into one raw file; advance the watermark."""
    started = time.monotonic()
    report = IngestReport(source="orders")
    policy = policy or RetryPolicy()
    page_size = page_size or settings.orders_api_max_page_size
    layout = LakeLayout.from_settings(settings)
    state = StateStore(settings)
    watermark = Watermark.load(state, STATE_NAME, overlap)

    own_client = client is None
    api = client or OrdersApiClient.from_settings(settings)
    try:
        new_lines: list[ApiOrderLine] = []
        cursor: str | None = None
        while True:
            page = fetch_page_with_retries(api, watermark.since, cursor, page_size, policy, report)
            report.read += len(page.orders)
            new_lines.extend(line for line in page.orders if watermark.is_new(_key(line)))
            if on_page:
                on_page(len(page.orders))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        if own_client:
            api.close()

    if new_lines:
        # Named from the range of changes it holds: a retried pull of the same changes gets the same
        # name, and two different pulls can never share one (they hold different changes).
        url = layout.pull_file(
            "orders",
            min(line.updated_at for line in new_lines),
            max(line.updated_at for line in new_lines),
        )
        write_parquet_atomic(order_lines_table(new_lines, datetime.now(UTC)), url)
        register_files(layout, "orders", [url])
        report.files.append(url)
        report.written = len(new_lines)
        watermark.advance(state, ((_key(line), line.updated_at) for line in new_lines))
    report.watermark = watermark.value.isoformat() if watermark.value else None
    report.seconds = time.monotonic() - started
    return report
