"""Orders ingest against a real orders API: incremental, exactly-once under faults, clear failures."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from shopflow.contracts import OrderLine
from shopflow.errors import ShopflowError
from shopflow.ingest.orders import STATE_NAME, RetryPolicy, ingest_orders
from shopflow.settings import Settings
from tests.ingest.conftest import raw_rows, state_record, visible_temp_files
from tests.sources.orders_api.conftest import RunningOrdersApi, StartOrdersApi, free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def order_lines(count: int, start: int = 0, status: str = "placed") -> list[OrderLine]:
    """`count` order lines with two lines per order."""
    return [
        OrderLine(
            order_id=f"o-{n // 2:06d}",
            product_id=f"p-{n % 2}",
            user_id=f"u-{n % 37:04d}",
            order_ts=T0 + timedelta(minutes=n),
            quantity=1 + n % 3,
            unit_price_inr=100.0 + n,
            status=status,
        )
        for n in range(start, start + count)
    ]


def lake_settings(api: RunningOrdersApi, settings: Settings) -> Settings:
    return api.settings.model_copy(update={"home": settings.home})


def test_second_pull_writes_nothing_and_changes_land_exactly(
    orders_api: RunningOrdersApi, settings: Settings
) -> None:
    run = lake_settings(orders_api, settings)
    with orders_api.client() as client:
        client.post_orders(order_lines(500))

    first = ingest_orders(run, page_size=64)
    assert (first.read, first.written, len(first.files)) == (500, 500, 1)

    again = ingest_orders(run, page_size=64)
    assert again.written == 0 and again.files == []
    assert again.watermark == first.watermark

    with orders_api.client() as client:
        client.post_orders(order_lines(10, start=0, status="shipped"))  # 10 lines change
        client.post_orders(order_lines(5, start=500))  # 5 new lines
        client.post_orders(order_lines(20, start=100))  # re-posting unchanged lines: no change
    third = ingest_orders(run, page_size=64)
    assert third.written == 15
    changed = raw_rows(run.lake_url, "raw/orders")
    assert len(changed) == 515
    latest = {(r["order_id"], r["product_id"]): r["status"] for r in changed}
    assert Counter(latest.values()) == {"placed": 495, "shipped": 10}
    assert visible_temp_files(run.lake_url) == []


def test_faults_every_order_lands_once(
    start_orders_api: StartOrdersApi, settings: Settings
) -> None:
    api = start_orders_api(
        orders_api_fault_5xx_rate=0.25,
        orders_api_fault_429_rate=0.1,
        orders_api_fault_slow_rate=0.1,
        orders_api_fault_slow_seconds=0.3,
        orders_api_fault_seed=7,
    )
    run = lake_settings(api, settings)
    with api.client() as client:
        client.post_orders(order_lines(3000))
    report = ingest_orders(
        run,
        page_size=100,
        policy=RetryPolicy(
            max_attempts=30, base_seconds=0.01, max_seconds=0.1, max_retry_after_seconds=0.2
        ),
    )
    assert report.retries > 0, "fault injection should have forced retries"
    rows = raw_rows(run.lake_url, "raw/orders")
    keys = Counter((r["order_id"], r["product_id"]) for r in rows)
    assert len(keys) == 3000
    assert max(keys.values()) == 1


def test_unreachable_api_is_one_line_and_leaves_the_watermark(settings: Settings) -> None:
    run = settings.model_copy(update={"orders_api_port": free_port()})
    with pytest.raises(ShopflowError) as caught:
        ingest_orders(run, policy=RetryPolicy(max_attempts=2, base_seconds=0.01))
    message = str(caught.value)
    assert "\n" not in message and "shopflow services up" in message
    assert state_record(run.lake_url, STATE_NAME) is None


def test_bad_token_fails_at_once_without_retrying(
    orders_api: RunningOrdersApi, settings: Settings
) -> None:
    run = lake_settings(orders_api, settings).model_copy(
        update={"orders_api_token": SecretStr("wrong-token")}
    )
    with pytest.raises(ShopflowError, match=r"401.*SHOPFLOW_ORDERS_API_TOKEN"):
        ingest_orders(run)
    assert state_record(run.lake_url, STATE_NAME) is None


def test_cli_reports_an_unreachable_api_in_one_line(settings: Settings) -> None:
    env = {
        "SHOPFLOW_HOME": str(settings.home),
        "SHOPFLOW_ORDERS_API_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "shopflow.cli", "ingest", "orders"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shopflow: error:"), result.stderr
