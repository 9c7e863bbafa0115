"""The orders REST API: a FastAPI app over the SQLite order store, with optional fault injection.

    GET  /v1/orders?updated_since=<ISO-8601 with zone>&page_size=<n>&cursor=<opaque>
         -> {"orders": [{order_id, product_id, user_id, date, order_ts, quantity,
                         unit_price_inr, status, updated_at}], "next_cursor": str | null}
    POST /v1/orders  {"orders": [{order_id, product_id, user_id, order_ts, quantity,
                                  unit_price_inr, status}]}  -> {"stored": n}
    GET  /healthz    -> {"status": "ok"}

`/v1` needs `Authorization: Bearer <SHOPFLOW_ORDERS_API_TOKEN>`.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the annotations of the endpoints
# defined inside create_app, which refer to its local variables.

import base64
import binascii
import datetime as dt
import math
import random
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shopflow.contracts import ORDER_STATUSES, OrderLine, PrintableId
from shopflow.settings import Settings
from shopflow.sources.orders_api.store import OrdersStore, datetime_to_us

MAX_POST_LINES: Final = 10_000
#: Plausible order lines only: no year 1, no 1e308 rupees.
EARLIEST_ORDER_TS: Final = datetime(2000, 1, 1, tzinfo=UTC)
MAX_ORDER_TS_AHEAD: Final = dt.timedelta(hours=24)
MAX_UNIT_PRICE_INR: Final = 10_000_000.0
#: Cursor fields are SQLite integers.
_INT64_MAX: Final = 2**63 - 1
RETRY_AFTER_SECONDS: Final = 1
_CURSOR_VERSION: Final = "v1"
_BEGINNING_OF_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)


class OrderLineIn(BaseModel):
    """One order line to store (insert, or update by `order_id` + `product_id`)."""

    model_config = ConfigDict(extra="forbid")

    order_id: PrintableId
    product_id: PrintableId
    user_id: PrintableId
    order_ts: AwareDatetime = Field(description="When the order was placed, with a time zone.")
    quantity: int = Field(ge=1, le=1_000_000)
    unit_price_inr: float = Field(ge=0, le=MAX_UNIT_PRICE_INR, allow_inf_nan=False)
    status: str = Field(default="placed", description=f"One of: {', '.join(ORDER_STATUSES)}.")

    @field_validator("order_ts")
    @classmethod
    def _plausible_order_ts(cls, value: datetime) -> datetime:
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("order_ts is outside the calendar in UTC") from None
        if not EARLIEST_ORDER_TS <= utc <= datetime.now(UTC) + MAX_ORDER_TS_AHEAD:
            raise ValueError(
                f"order_ts must be between {EARLIEST_ORDER_TS:%Y-%m-%d} and now (UTC) "
                f"plus {MAX_ORDER_TS_AHEAD.total_seconds() / 3600:g} h"
            )
        return utc

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        if value not in ORDER_STATUSES:
            raise ValueError(
                f"unknown status {value!r}; expected one of {', '.join(ORDER_STATUSES)}"
            )
        return value


class PostOrdersRequest(BaseModel):
    """A batch of order lines to upsert."""

    model_config = ConfigDict(extra="forbid")

    orders: list[OrderLineIn] = Field(max_length=MAX_POST_LINES)


class PostOrdersResponse(BaseModel):
    """How many of the posted lines were inserted or changed (identical lines are not counted)."""

    stored: int


class OrderLineOut(BaseModel):
    """One stored order line; `updated_at` is assigned by the API on every insert or change."""

    order_id: str
    product_id: str
    user_id: str
    date: dt.date = Field(description="UTC date of order_ts.")
    order_ts: datetime
    quantity: int
    unit_price_inr: float
    status: str
    updated_at: datetime


class OrdersPage(BaseModel):
    """One page of order lines in change order; follow `next_cursor` until it is null."""

    orders: list[OrderLineOut]
    next_cursor: str | None = Field(
        description="Opaque; pass back as `cursor` with the same `updated_since`. "
        "Null: nothing more changed as of this request."
    )


class Health(BaseModel):
    """Liveness of the API and its store."""

    status: Literal["ok"]


def encode_cursor(after_seq: int, updated_since_us: int) -> str:
    """The opaque cursor for "changes after sequence `after_seq`" of one `updated_since` query."""
    raw = f"{_CURSOR_VERSION}.{after_seq}.{updated_since_us}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[int, int]:
    """`(after_seq, updated_since_us)` of a cursor; ValueError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, after_seq, since_us = raw.split(".")
        if version != _CURSOR_VERSION:
            raise ValueError
        seq, since = int(after_seq), int(since_us)
        if not (0 <= seq <= _INT64_MAX and -_INT64_MAX <= since <= _INT64_MAX):
            raise ValueError
        return seq, since
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed cursor: pass back a next_cursor exactly as received") from None


def _query_error(name: str, message: str, value: object) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", name), "msg": message, "type": "value_error", "input": value}]
    )


def parse_updated_since(value: str | None) -> datetime:
    """An `updated_since` query value as a UTC datetime; RequestValidationError if it is not."""
    if value is None:
        return _BEGINNING_OF_TIME
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _query_error(
            "updated_since",
            "not an ISO-8601 timestamp; expected e.g. 2026-11-25T10:00:00Z",
            value,
        ) from None
    if parsed.tzinfo is None:
        raise _query_error(
            "updated_since",
            "timestamp has no time zone; add one, e.g. 2026-11-25T10:00:00Z",
            value,
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _query_error(
            "updated_since", "timestamp is outside the calendar in UTC", value
        ) from None


class FaultInjector:
    """Decides, reproducibly from a seed, which requests fail (5xx, 429) or are slowed down."""

    def __init__(self, settings: Settings) -> None:
        self.rate_5xx = settings.orders_api_fault_5xx_rate
        self.rate_429 = settings.orders_api_fault_429_rate
        self.slow_rate = settings.orders_api_fault_slow_rate
        self.slow_seconds = settings.orders_api_fault_slow_seconds
        self._rng = random.Random(settings.orders_api_fault_seed)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any fault can happen."""
        return (
            self.rate_5xx > 0 or self.rate_429 > 0 or (self.slow_rate > 0 and self.slow_seconds > 0)
        )

    def draw(self) -> tuple[int | None, bool]:
        """`(status to fail with or None, whether to be slow)` for the next request."""
        with self._lock:
            failure_draw, slow_draw, status_draw = (self._rng.random() for _ in range(3))
        status: int | None = None
        if failure_draw < self.rate_5xx:
            status = (500, 502, 503)[math.floor(status_draw * 3)]
        elif failure_draw < self.rate_5xx + self.rate_429:
            status = 429
        return status, slow_draw < self.slow_rate

    def apply(self) -> None:
        """Sleep and/or raise the injected failure for one request."""
        status, slow = self.draw()
        if slow:
            time.sleep(self.slow_seconds)
        if status == 429:
            raise HTTPException(
                status_code=429,
                detail="injected fault: rate limited, retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if status is not None:
            raise HTTPException(status_code=status, detail="injected fault: server error")


def create_app(settings: Settings, store: OrdersStore | None = None) -> FastAPI:
    """The orders API over `store` (default: the SQLite file at settings.orders_api_store_path)."""
    orders_store = store or OrdersStore(settings.orders_api_store_path)
    expected_token = settings.orders_api_token.get_secret_value().encode()
    max_page_size = settings.orders_api_max_page_size
    faults = FaultInjector(settings)
    bearer = HTTPBearer(auto_error=False, description="SHOPFLOW_ORDERS_API_TOKEN")

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), expected_token
        ):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token: send "
                "'Authorization: Bearer <SHOPFLOW_ORDERS_API_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title="Shopflow orders API",
        version="1",
        description="Order lines of the simulated shop, as a change feed ordered by updated_at.",
    )

    @app.exception_handler(RequestValidationError)
    def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The inputs are not echoed: they may be NaN (not JSON), huge, or an injection attempt.
        detail = [
            {
                "loc": list(error.get("loc", ())),
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail[:20]})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    @v1.get(
        "/orders",
        response_model=OrdersPage,
        responses={
            401: {"description": "Missing or invalid bearer token."},
            422: {"description": "Bad updated_since, page_size or cursor."},
            429: {"description": "Rate limited (fault injection); see Retry-After."},
        },
        summary="Order lines changed at or after updated_since, in change order",
    )
    def list_orders(
        updated_since: Annotated[
            str | None,
            Query(
                description="ISO-8601 timestamp with a time zone; lines whose updated_at is at "
                "or after it. Default: all lines.",
                examples=["2026-11-25T10:00:00Z"],
            ),
        ] = None,
        page_size: Annotated[int, Query(ge=1, le=max_page_size)] = max_page_size,
        cursor: Annotated[
            str | None, Query(description="next_cursor of the previous page.")
        ] = None,
    ) -> Response:
        if faults.enabled:
            faults.apply()
        since = parse_updated_since(updated_since)
        since_us = datetime_to_us(since)
        after_seq = 0
        if cursor is not None:
            try:
                after_seq, cursor_since_us = decode_cursor(cursor)
            except ValueError as exc:
                raise _query_error("cursor", str(exc), cursor) from None
            if cursor_since_us != since_us:
                raise _query_error(
                    "cursor",
                    "cursor was issued for a different updated_since; "
                    "keep updated_since fixed while following cursors",
                    cursor,
                )
        # One extra row tells whether another page exists without a second query.
        lines = orders_store.changes_after(since, after_seq, page_size + 1)
        has_more = len(lines) > page_size
        lines = lines[:page_size]
        page = OrdersPage.model_construct(
            orders=[
                OrderLineOut.model_construct(
                    order_id=line.order_id,
                    product_id=line.product_id,
                    user_id=line.user_id,
                    date=line.date,
                    order_ts=line.order_ts,
                    quantity=line.quantity,
                    unit_price_inr=line.unit_price_inr,
                    status=line.status,
                    updated_at=line.updated_at,
                )
                for line in lines
            ],
            next_cursor=encode_cursor(lines[-1].change_seq, since_us) if has_more else None,
        )
        # Serialised by pydantic-core directly: the rows are already valid.
        return Response(content=page.model_dump_json(), media_type="application/json")

    @v1.post(
        "/orders",
        response_model=PostOrdersResponse,
        responses={401: {"description": "Missing or invalid bearer token."}},
        summary="Insert or update a batch of order lines",
    )
    def post_orders(body: PostOrdersRequest) -> PostOrdersResponse:
        lines = [
            OrderLine(
                order_id=line.order_id,
                product_id=line.product_id,
                user_id=line.user_id,
                order_ts=line.order_ts,
                quantity=line.quantity,
                unit_price_inr=line.unit_price_inr,
                status=line.status,
            )
            for line in body.orders
        ]
        return PostOrdersResponse(stored=orders_store.upsert(lines))

    @app.get("/healthz", response_model=Health, summary="Liveness (no auth)")
    def healthz() -> Health:
        orders_store.ping()
        return Health(status="ok")

    app.include_router(v1)
    return app
