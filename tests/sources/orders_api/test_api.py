"""The orders API over real HTTP: paging under concurrent inserts, auth, parameter errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shopflow.contracts import OrderLine
from shopflow.errors import ServiceUnavailableError
from shopflow.sources.orders_api.client import (
    ApiOrderLine,
    OrdersApiAuthError,
    OrdersApiClient,
    OrdersApiRequestError,
    OrdersApiUnavailableError,
)
from tests.sources.orders_api.conftest import RunningOrdersApi, free_port

pytestmark = pytest.mark.integration

PLACED_AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Key = tuple[str, str]
#: A well-formed cursor whose sequence number overflows SQLite's 64-bit integers.
HUGE_CURSOR = base64.urlsafe_b64encode(f"v1.{10**30}.0".encode()).rstrip(b"=").decode()


def make_lines(count: int, prefix: str) -> list[OrderLine]:
    return [
        OrderLine(
            order_id=f"{prefix}-{i // 2}",
            product_id=f"p{i % 2}",
            user_id=f"u{i % 97}",
            order_ts=PLACED_AT + timedelta(milliseconds=i),
            quantity=1 + i % 3,
            unit_price_inr=round(10 + i * 0.01, 2),
            status="placed",
        )
        for i in range(count)
    ]


def key(line: OrderLine | ApiOrderLine) -> Key:
    return (line.order_id, line.product_id)


def page_all(
    client: OrdersApiClient, since: datetime, page_size: int
) -> tuple[list[ApiOrderLine], int]:
    """Every line changed since `since`, following cursors; and how many pages it took."""
    lines: list[ApiOrderLine] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = client.fetch_page(since, cursor, page_size)
        pages += 1
        lines.extend(page.orders)
        if page.next_cursor is None:
            return lines, pages
        cursor = page.next_cursor


def test_posted_lines_come_back_with_contract_fields(orders_api: RunningOrdersApi) -> None:
    lines = make_lines(5, "rt")
    with orders_api.client() as client:
        assert client.health()
        assert client.post_orders(lines) == 5
        assert client.post_orders(lines) == 0
        page = client.fetch_page(EPOCH, None, 100)
    assert page.next_cursor is None
    assert [key(line) for line in page.orders] == [key(line) for line in lines]
    first = page.orders[0]
    assert first.user_id == lines[0].user_id
    assert first.order_ts == lines[0].order_ts
    assert first.date == lines[0].date
    assert (first.quantity, first.unit_price_inr, first.status) == (1, 10.0, "placed")
    assert first.updated_at.tzinfo is not None
    raw = httpx.get(
        f"{orders_api.base_url}/v1/orders",
        headers={"Authorization": "Bearer test-token-0123456789"},
    ).json()
    assert set(raw) == {"orders", "next_cursor"}
    assert set(raw["orders"][0]) == {
        "order_id",
        "product_id",
        "user_id",
        "date",
        "order_ts",
        "quantity",
        "unit_price_inr",
        "status",
        "updated_at",
    }


def test_paging_sees_every_line_exactly_once_while_inserts_happen(
    orders_api: RunningOrdersApi,
) -> None:
    with orders_api.client() as seeder:
        seeder.post_orders(make_lines(6000, "seed"))

    committed: list[Key] = []  # appended only after the server acknowledged the batch
    committed_lock = threading.Lock()
    stop = threading.Event()
    batches_during_paging = 0

    def insert_continuously() -> None:
        nonlocal batches_during_paging
        with orders_api.client() as writer:
            batch = 0
            while not stop.is_set() and batch < 400:
                lines = make_lines(100, f"live{batch}")
                writer.post_orders(lines)
                with committed_lock:
                    committed.extend(key(line) for line in lines)
                batch += 1
                batches_during_paging += 1

    inserter = threading.Thread(target=insert_continuously)
    seen: list[ApiOrderLine] = []
    cursor: str | None = None
    pages = 0
    started = time.perf_counter()
    with orders_api.client() as reader:
        inserter.start()
        try:
            while True:
                with committed_lock:
                    committed_before_this_page = set(committed)
                page = reader.fetch_page(EPOCH, cursor, 250)
                pages += 1
                seen.extend(page.orders)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
                time.sleep(0.01)  # let the writer interleave with the reader
        finally:
            stop.set()
            inserter.join()
    elapsed = time.perf_counter() - started
    print(f"{pages} pages, {len(seen)} lines in {elapsed:.2f} s ({pages / elapsed:.0f} pages/s)")

    seen_keys = [key(line) for line in seen]
    assert batches_during_paging > 0
    assert len(seen_keys) == len(set(seen_keys)), "a line was served twice"
    assert set(make_lines_keys(6000, "seed")) <= set(seen_keys)
    missing = committed_before_this_page - set(seen_keys)
    assert not missing, f"{len(missing)} committed lines never served"
    assert set(seen_keys) <= set(make_lines_keys(6000, "seed")) | set(committed)
    stamps = [line.updated_at for line in seen]
    assert stamps == sorted(stamps)


def make_lines_keys(count: int, prefix: str) -> list[Key]:
    return [key(line) for line in make_lines(count, prefix)]


def test_changed_line_is_served_again_after_the_watermark(orders_api: RunningOrdersApi) -> None:
    lines = make_lines(10, "chg")
    with orders_api.client() as client:
        client.post_orders(lines)
        first_pass, _ = page_all(client, EPOCH, 4)
        watermark = max(line.updated_at for line in first_pass)
        assert client.post_orders([dataclasses.replace(lines[2], status="shipped")]) == 1
        second_pass, _ = page_all(client, watermark + timedelta(microseconds=1), 4)
    assert [(key(line), line.status) for line in second_pass] == [(key(lines[2]), "shipped")]
    assert second_pass[0].updated_at > watermark


def test_bad_or_missing_token_is_401(orders_api: RunningOrdersApi) -> None:
    url = f"{orders_api.base_url}/v1/orders"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    assert httpx.post(url, json={"orders": []}).status_code == 401
    assert httpx.get(f"{orders_api.base_url}/healthz").status_code == 200
    with (
        OrdersApiClient(orders_api.base_url, "nope") as client,
        pytest.raises(OrdersApiAuthError, match="SHOPFLOW_ORDERS_API_TOKEN"),
    ):
        client.fetch_page(EPOCH, None, 10)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"updated_since": "yesterday"}, "updated_since: not an ISO-8601 timestamp"),
        ({"updated_since": "2026-11-25T10:00:00"}, "updated_since: timestamp has no time zone"),
        ({"page_size": "0"}, "page_size: Input should be greater than or equal to 1"),
        ({"page_size": "1001"}, "page_size: Input should be less than or equal to 1000"),
        ({"page_size": "many"}, "page_size: Input should be a valid integer"),
        ({"cursor": "%%%"}, "cursor: malformed cursor"),
        ({"cursor": "djIuMS4w"}, "cursor: malformed cursor"),
        ({"updated_since": "0001-01-01T00:00+14:00"}, "updated_since: timestamp is outside"),
        ({"cursor": HUGE_CURSOR}, "cursor: malformed cursor"),
        ({"updated_since": "2026-11-25T10:00:00Z' OR '1'='1"}, "updated_since: not an ISO-8601"),
        ({"page_size": "9" * 40}, "page_size: Input should be"),
    ],
)
def test_bad_parameters_are_422_with_a_clear_message(
    orders_api: RunningOrdersApi, params: dict[str, str], message: str
) -> None:
    with orders_api.client() as client:
        response = client._http.get("/v1/orders", params=params)
    assert response.status_code == 422
    details = response.json()["detail"]
    flattened = "; ".join(f"{d['loc'][-1]}: {d['msg']}" for d in details)
    assert message in flattened


def test_client_turns_422_into_a_request_error(orders_api: RunningOrdersApi) -> None:
    with orders_api.client() as client:
        with pytest.raises(OrdersApiRequestError, match="page_size: Input should be less"):
            client.fetch_page(EPOCH, None, 5000)
        client.post_orders(make_lines(4, "cur"))
        page = client.fetch_page(EPOCH, None, 2)
        assert page.next_cursor is not None
        with pytest.raises(OrdersApiRequestError, match="different updated_since"):
            client.fetch_page(PLACED_AT, page.next_cursor, 2)
        with pytest.raises(OrdersApiRequestError, match="unknown status 'lost'"):
            client.post_orders([dataclasses.replace(make_lines(1, "bad")[0], status="lost")])


def test_openapi_documents_the_models(orders_api: RunningOrdersApi) -> None:
    schema = httpx.get(f"{orders_api.base_url}/openapi.json").json()
    assert {"OrdersPage", "OrderLineOut", "OrderLineIn", "PostOrdersRequest"} <= set(
        schema["components"]["schemas"]
    )
    assert httpx.get(f"{orders_api.base_url}/docs").status_code == 200


def test_unreachable_api_is_service_unavailable() -> None:
    with OrdersApiClient(f"http://127.0.0.1:{free_port()}", "token") as client:
        assert not client.health()
        with pytest.raises(ServiceUnavailableError, match="shopflow services up") as caught:
            client.fetch_page(EPOCH, None, 10)
    assert isinstance(caught.value, OrdersApiUnavailableError)
    assert "\n" not in str(caught.value)


def _body(**changes: object) -> str:
    """A POST body of one otherwise valid line with `changes` (the string "NaN" as bare NaN)."""
    line: dict[str, object] = {
        "order_id": "o-1",
        "product_id": "p-1",
        "user_id": "u-1",
        "order_ts": "2026-11-25T10:00:00Z",
        "quantity": 1,
        "unit_price_inr": 10.0,
        "status": "placed",
        **changes,
    }
    return json.dumps({"orders": [line]}).replace('"NaN"', "NaN")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"unit_price_inr": "NaN"}, "unit_price_inr"),
        ({"unit_price_inr": 1e308}, "unit_price_inr"),
        ({"order_ts": "9999-12-31T23:59:00-14:00"}, "order_ts"),
        ({"order_ts": "0001-01-01T00:00:00Z"}, "order_ts"),
        ({"order_id": "o\u0000"}, "order_id"),
        ({"order_id": "x" * 300}, "order_id"),
        ({"quantity": 10**30}, "quantity"),
    ],
)
def test_implausible_order_lines_are_422_never_500(
    orders_api: RunningOrdersApi, changes: dict[str, object], field: str
) -> None:
    with orders_api.client() as client:
        response = client._http.post(
            "/v1/orders", content=_body(**changes), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert field in {str(d["loc"][-1]) for d in response.json()["detail"]}
        # Nothing of it was stored.
        assert client.fetch_page(EPOCH, None, 10).orders == []
