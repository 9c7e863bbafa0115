"""Fault injection on GET /v1/orders: the configured shares of 5xx, 429 and slow answers."""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shopflow.contracts import OrderLine
from shopflow.sources.orders_api.client import (
    OrdersApiRateLimitedError,
    OrdersApiServerError,
)
from tests.sources.orders_api.conftest import TEST_TOKEN, StartOrdersApi

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def within(observed: int, requests: int, rate: float) -> bool:
    """Whether a count is within 4 standard deviations of its binomial expectation."""
    expected = requests * rate
    return abs(observed - expected) <= 4 * math.sqrt(requests * rate * (1 - rate)) + 1


def test_configured_shares_of_5xx_429_and_slow(start_orders_api: StartOrdersApi) -> None:
    requests, rate_5xx, rate_429, slow_rate, slow_seconds = 200, 0.2, 0.15, 0.1, 0.3
    api = start_orders_api(
        orders_api_fault_5xx_rate=rate_5xx,
        orders_api_fault_429_rate=rate_429,
        orders_api_fault_slow_rate=slow_rate,
        orders_api_fault_slow_seconds=slow_seconds,
        orders_api_fault_seed=11,
    )
    outcomes: Counter[str] = Counter()
    with httpx.Client(base_url=api.base_url, headers=AUTH, timeout=10) as http:
        for _ in range(requests):
            started = time.perf_counter()
            response = http.get("/v1/orders", params={"page_size": 10})
            if time.perf_counter() - started >= slow_seconds:
                outcomes["slow"] += 1
            if response.status_code >= 500:
                outcomes["5xx"] += 1
            elif response.status_code == 429:
                outcomes["429"] += 1
                assert response.headers["Retry-After"] == "1"
            else:
                assert response.status_code == 200
                outcomes["ok"] += 1
    print(dict(outcomes))
    assert within(outcomes["5xx"], requests, rate_5xx)
    assert within(outcomes["429"], requests, rate_429)
    assert within(outcomes["slow"], requests, slow_rate)
    assert outcomes["5xx"] + outcomes["429"] + outcomes["ok"] == requests


def test_faults_are_reproducible_from_the_seed(start_orders_api: StartOrdersApi) -> None:
    faults = {"orders_api_fault_5xx_rate": 0.3, "orders_api_fault_429_rate": 0.3}
    sequences = []
    for _ in range(2):
        api = start_orders_api(**faults, orders_api_fault_seed=5)
        with httpx.Client(base_url=api.base_url, headers=AUTH) as http:
            sequences.append([http.get("/v1/orders").status_code for _ in range(40)])
    assert sequences[0] == sequences[1]
    assert len(set(sequences[0])) >= 3  # 200, 429 and some 5xx


def test_only_get_orders_is_faulted_and_client_errors_are_typed(
    start_orders_api: StartOrdersApi,
) -> None:
    api = start_orders_api(orders_api_fault_5xx_rate=1.0)
    line = OrderLine("o-1", "p-1", "u-1", EPOCH + timedelta(days=20_000), 1, 5.0)
    with api.client() as client:
        assert client.health()
        assert client.post_orders([line]) == 1
        with pytest.raises(OrdersApiServerError) as server_error:
            client.fetch_page(EPOCH, None, 10)
    assert server_error.value.retryable
    assert server_error.value.status_code in (500, 502, 503)

    limited = start_orders_api(orders_api_fault_429_rate=1.0)
    with limited.client() as client, pytest.raises(OrdersApiRateLimitedError) as rate_limited:
        client.fetch_page(EPOCH, None, 10)
    assert rate_limited.value.retryable
    assert rate_limited.value.retry_after_seconds == 1.0
