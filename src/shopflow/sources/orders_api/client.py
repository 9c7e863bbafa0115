"""HTTP client of the orders API: one raw page per call, every failure a typed error.

Retrying is the caller's business (the resilient ingest, through tenacity):
`OrdersApiError.retryable` says which failures are worth another try, and
`OrdersApiRateLimitedError.retry_after_seconds` how long to wait.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import TracebackType
from typing import Any, ClassVar, Final

import httpx

from shopflow.contracts import OrderLine
from shopflow.errors import ServiceUnavailableError, ShopflowError
from shopflow.settings import Settings

POST_CHUNK_LINES: Final = 1000


class OrdersApiError(ShopflowError):
    """The orders API answered with an error, or could not be asked."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class OrdersApiAuthError(OrdersApiError):
    """401: the token was missing or wrong."""


class OrdersApiRequestError(OrdersApiError):
    """4xx other than 401/429 (mostly 422): the request itself is wrong; retrying will not help."""


class OrdersApiRateLimitedError(OrdersApiError):
    """429: too many requests; wait `retry_after_seconds` (if the server said) and retry."""

    retryable = True

    def __init__(self, message: str, retry_after_seconds: float | None) -> None:
        super().__init__(message, 429)
        self.retry_after_seconds = retry_after_seconds


class OrdersApiServerError(OrdersApiError):
    """5xx: the server failed; retry with backoff."""

    retryable = True


class OrdersApiTimeoutError(OrdersApiError):
    """No (complete) answer within the client's timeout; retry with backoff."""

    retryable = True


class OrdersApiUnavailableError(OrdersApiError, ServiceUnavailableError):
    """The API could not be reached at all (connection refused, unknown host)."""

    retryable = True


@dataclass(frozen=True, slots=True)
class ApiOrderLine:
    """One order line as the API serves it."""

    order_id: str
    product_id: str
    user_id: str
    date: date
    order_ts: datetime
    quantity: int
    unit_price_inr: float
    status: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OrdersPage:
    """One page of `GET /v1/orders`; `next_cursor` is None once nothing more has changed."""

    orders: list[ApiOrderLine]
    next_cursor: str | None


def _iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no time zone")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(response: httpx.Response) -> str:
    """The server's explanation: FastAPI's `detail`, flattened to one line."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()) if p != 'query')}: {item.get('msg')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail) if detail is not None else ""


class OrdersApiClient:
    """Talks to the orders API at `base_url` with a bearer token."""

    def __init__(self, base_url: str, token: str, timeout_seconds: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_seconds,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, timeout_seconds: float | None = None
    ) -> OrdersApiClient:
        """A client for the API the settings point at (timeout: `orders_api_timeout_seconds`)."""
        return cls(
            settings.orders_api_base_url,
            settings.orders_api_token.get_secret_value(),
            timeout_seconds=timeout_seconds or settings.orders_api_timeout_seconds,
        )

    def __enter__(self) -> OrdersApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise OrdersApiTimeoutError(
                f"orders API at {self.base_url} did not answer {method} {path} in time "
                f"({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise OrdersApiUnavailableError(
                f"cannot reach the orders API at {self.base_url} ({exc}): start it with "
                "`shopflow services up` or set SHOPFLOW_ORDERS_API_URL"
            ) from None
        if response.is_success:
            return response
        status = response.status_code
        where = f"orders API {method} {path} -> {status}"
        detail = _error_detail(response)
        if status == 401:
            raise OrdersApiAuthError(
                f"{where}: {detail or 'unauthorized'} (check SHOPFLOW_ORDERS_API_TOKEN)", status
            )
        if status == 429:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            raise OrdersApiRateLimitedError(f"{where}: {detail or 'rate limited'}", retry_after)
        if status >= 500:
            raise OrdersApiServerError(f"{where}: {detail or 'server error'}", status)
        raise OrdersApiRequestError(f"{where}: {detail or response.reason_phrase}", status)

    def health(self) -> bool:
        """Whether the API answers its health check."""
        try:
            return bool(self._request("GET", "/healthz").json().get("status") == "ok")
        except (OrdersApiError, ValueError):
            return False

    def post_orders(self, lines: Sequence[OrderLine], chunk_size: int = POST_CHUNK_LINES) -> int:
        """Upsert order lines, `chunk_size` per request; returns how many were inserted or changed.

        Each chunk is its own transaction on the server: on an error, earlier chunks stay stored
        (re-posting them is harmless).
        """
        stored = 0
        for start in range(0, len(lines), chunk_size):
            body = {
                "orders": [
                    {
                        "order_id": line.order_id,
                        "product_id": line.product_id,
                        "user_id": line.user_id,
                        "order_ts": _iso_utc(line.order_ts),
                        "quantity": line.quantity,
                        "unit_price_inr": line.unit_price_inr,
                        "status": line.status,
                    }
                    for line in lines[start : start + chunk_size]
                ]
            }
            stored += int(self._request("POST", "/v1/orders", json=body).json()["stored"])
        return stored

    def fetch_page(self, updated_since: datetime, cursor: str | None, page_size: int) -> OrdersPage:
        """One page of order lines changed at or after `updated_since` (zone-aware), in change
        order; pass the returned `next_cursor` back, with the same `updated_since`, for the next."""
        params: dict[str, str | int] = {
            "updated_since": _iso_utc(updated_since),
            "page_size": page_size,
        }
        if cursor is not None:
            params["cursor"] = cursor
        response = self._request("GET", "/v1/orders", params=params)
        try:
            body = response.json()
            orders = [
                ApiOrderLine(
                    order_id=row["order_id"],
                    product_id=row["product_id"],
                    user_id=row["user_id"],
                    date=date.fromisoformat(row["date"]),
                    order_ts=_parse_ts(row["order_ts"]),
                    quantity=int(row["quantity"]),
                    unit_price_inr=float(row["unit_price_inr"]),
                    status=row["status"],
                    updated_at=_parse_ts(row["updated_at"]),
                )
                for row in body["orders"]
            ]
            next_cursor = body["next_cursor"]
        except (ValueError, KeyError, TypeError) as exc:
            # A truncated or garbled body is a server-side failure worth retrying.
            raise OrdersApiServerError(
                f"orders API GET /v1/orders returned a malformed page ({type(exc).__name__}: "
                f"{exc})",
                response.status_code,
            ) from None
        return OrdersPage(orders=orders, next_cursor=next_cursor)
