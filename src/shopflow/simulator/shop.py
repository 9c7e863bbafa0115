"""The deterministic simulated shop: users browse, wishlist, order and return; deliveries get dirty.

Time advances in windows of `batch_minutes`. For each window the simulator applies catalogue changes
(effective from the window's start), runs the sessions that start in it (each kept inside it, so a
price seen in a window is the catalogue price of that window), plays the returns that fall due, and
then hands over every delivery due before the window's end: on-time events, late events held back
from earlier windows, redeliveries and malformed payloads. Only the late and redelivered payloads of
the next hours are held in memory, so any number of events streams through.

Separate random streams drive behaviour, dirt and catalogue changes, and every id is a counter, so
the same configuration always yields byte-identical batches.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, Final

from shopflow.contracts import Event, OrderLine, Product, User
from shopflow.simulator.config import SimulationConfig
from shopflow.simulator.malformed import malformed_payload
from shopflow.simulator.people import PeopleFactory
from shopflow.sources.flipkart import load_catalogue

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_SECOND: Final = 1_000_000
US_PER_HOUR: Final = 3600 * US_PER_SECOND
US_PER_DAY: Final = 24 * US_PER_HOUR
IST_OFFSET_US: Final = 5 * US_PER_HOUR + 30 * 60 * US_PER_SECOND

#: Relative traffic by hour of the day in India (IST): quiet nights, a lunch bump, evening peak.
_IST_HOUR_SHAPE: Final = (
    0.35, 0.2, 0.12, 0.08, 0.08, 0.12, 0.25, 0.45, 0.65, 0.8, 0.9, 1.0,
    1.1, 1.1, 1.0, 0.95, 1.0, 1.1, 1.3, 1.6, 1.9, 2.0, 1.7, 1.0,
)  # fmt: skip
#: Relative traffic by weekday (Monday first): weekends are busier.
_WEEKDAY_SHAPE: Final = (0.92, 0.9, 0.93, 0.95, 1.0, 1.15, 1.15)
IST_HOUR_WEIGHTS: Final = tuple(w * 24 / sum(_IST_HOUR_SHAPE) for w in _IST_HOUR_SHAPE)
WEEKDAY_WEIGHTS: Final = tuple(w * 7 / sum(_WEEKDAY_SHAPE) for w in _WEEKDAY_SHAPE)

_MEAN_VIEW_GAP_S: Final = 45.0
_MAX_VIEW_GAP_S: Final = 20 * 60.0  # below the 30-minute inactivity that ends a derived session
_SAME_CATEGORY_SHARE: Final = 0.7
_PID_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_VARIANTS: Final = ("Navy", "Maroon", "Olive", "Pack of 2", "Combo", "2026 Edition", "Pro", "Mini")


def event_id_for(seed: int, sequence: int) -> str:
    """The id of the `sequence`-th valid event of a simulation."""
    return f"e-{seed}-{sequence:010d}"


def _datetime(ts_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=ts_us)


def _micros(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def _json_string(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _encode_event(event: Event, event_ts_text: str) -> bytes:
    """Byte for byte what `contracts.encode_event` writes, without its per-event `asdict` cost."""
    return (
        f'{{"event_id":{_quote(event.event_id)},"event_name":{_quote(event.event_name)},'
        f'"product_id":{_quote(event.product_id)},"user_id":{_quote(event.user_id)},'
        f'"order_id":{_json_string(event.order_id)},"price":{event.price!r},'
        f'"event_ts":"{event_ts_text}","session_id":{_json_string(event.session_id)}}}'
    ).encode()


class DeliveryKind(StrEnum):
    """Why a payload is on the bus."""

    ON_TIME = "on_time"
    LATE = "late"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One payload handed to the bus at simulated time `deliver_ts`; `event` is None if malformed."""

    payload: bytes
    kind: DeliveryKind
    deliver_ts: datetime
    event: Event | None


@dataclass(frozen=True, slots=True)
class SimBatch:
    """Everything that happens in one simulated time window.

    Catalogue versions apply from `window_start`; `order_lines` holds placed lines and the status
    updates of returned ones; `deliveries` are in delivery order.
    """

    window_start: datetime
    window_end: datetime
    deliveries: list[Delivery]
    order_lines: list[OrderLine]
    products: list[Product]
    users: list[User]

    @property
    def payloads(self) -> list[bytes]:
        """The payloads to publish, in delivery order."""
        return [delivery.payload for delivery in self.deliveries]


@dataclass(slots=True)
class GroundTruth:
    """What the simulation produced, counted as it was produced, to check the pipeline against."""

    seed: int
    valid_events: int = 0
    events_by_name: Counter[str] = field(default_factory=Counter)
    events_with_session_id: int = 0
    deliveries: int = 0
    duplicate_deliveries: int = 0
    late_deliveries: int = 0
    malformed_deliveries: int = 0
    malformed_by_kind: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    orders: int = 0
    order_lines: int = 0
    returned_lines: int = 0
    price_changes: int = 0
    new_products: int = 0
    new_users: int = 0
    renamed_users: int = 0
    first_event_ts: datetime | None = None
    last_event_ts: datetime | None = None

    def valid_event_ids(self) -> Iterator[str]:
        """Every distinct valid event id (ids are counters, so this needs no memory)."""
        return (event_id_for(self.seed, sequence) for sequence in range(self.valid_events))

    def counts(self) -> dict[str, int]:
        """The counts as a flat mapping (for summaries and JSON)."""
        counts = {
            "valid_events": self.valid_events,
            "deliveries": self.deliveries,
            "duplicate_deliveries": self.duplicate_deliveries,
            "late_deliveries": self.late_deliveries,
            "malformed_deliveries": self.malformed_deliveries,
            "sessions": self.sessions,
            "orders": self.orders,
            "order_lines": self.order_lines,
            "returned_lines": self.returned_lines,
            "price_changes": self.price_changes,
            "new_products": self.new_products,
            "new_users": self.new_users,
            "renamed_users": self.renamed_users,
        }
        counts.update({f"{name}_events": n for name, n in sorted(self.events_by_name.items())})
        return counts


@dataclass(frozen=True, slots=True)
class _Step:
    offset_us: int
    event_name: str
    product_index: int
    quantity: int


class ShopSimulator:
    """A simulated shop over the staged Flipkart catalogue; iterate `batches()` once."""

    def __init__(
        self, config: SimulationConfig, catalogue: Sequence[Product] | None = None
    ) -> None:
        self.config = config
        self.truth = GroundTruth(seed=config.seed)
        seed = config.seed
        self._behaviour = random.Random(f"{seed}:behaviour")
        self._dirt = random.Random(f"{seed}:dirt")
        self._churn = random.Random(f"{seed}:catalogue")
        people_rng = random.Random(f"{seed}:people")
        self._catalogue = tuple(load_catalogue().products if catalogue is None else catalogue)
        self._products = [product for product in self._catalogue if product.price is not None]
        if not self._products:
            raise ValueError("the catalogue has no priced product to sell")
        self._known_product_ids = {product.product_id for product in self._catalogue}
        self._rank = list(range(len(self._products)))
        people_rng.shuffle(self._rank)  # popularity order: a fixed, seed-dependent shuffle
        self._rank_by_category: dict[str | None, list[int]] = {}
        for index in self._rank:
            self._rank_by_category.setdefault(self._products[index].category, []).append(index)

        self._people = PeopleFactory(seed)
        start_date = config.start.astimezone(UTC).date()
        self._users = [
            self._people.new_user(start_date - timedelta(days=people_rng.randint(1, 730)))
            for _ in range(config.initial_users)
        ]
        self._initial_users = tuple(self._users)

        self._pending: list[tuple[int, int, Delivery]] = []
        self._returns_due: list[tuple[int, int, OrderLine]] = []
        self._delivery_sequence = 0
        self._order_sequence = 0
        self._session_sequence = 0
        self._malformed_sequence = 0
        self._started = False

    def initial_products(self) -> tuple[Product, ...]:
        """The shop's catalogue at the start (priced and unpriced products)."""
        return self._catalogue

    def initial_users(self) -> tuple[User, ...]:
        """The users signed up before the start."""
        return self._initial_users

    # -- the timeline ---------------------------------------------------------------------------

    def batches(self) -> Iterator[SimBatch]:
        """The simulation as consecutive time windows, until every event is made and delivered."""
        if self._started:
            raise RuntimeError("a ShopSimulator runs once; make a new one to run again")
        self._started = True
        window_us = self.config.batch_minutes * 60 * US_PER_SECOND
        window_start = _micros(self.config.start)
        while True:
            window_end = window_start + window_us
            products: list[Product] = []
            users: list[User] = []
            order_lines: list[OrderLine] = []
            if self._budget_left():
                products, users = self._change_catalogue(window_start, window_end)
                target = self._window_target(window_start, window_end)
                made = 0
                while made < target and self._budget_left():
                    made += self._session(window_start, window_end, order_lines)
                self._play_returns(window_end, order_lines)
            deliveries = self._due_deliveries(window_end)
            if not (deliveries or order_lines or products or users or self._budget_left()):
                if not self._pending:
                    return
            else:
                yield SimBatch(
                    window_start=_datetime(window_start),
                    window_end=_datetime(window_end),
                    deliveries=deliveries,
                    order_lines=order_lines,
                    products=products,
                    users=users,
                )
            window_start = window_end

    def _budget_left(self) -> bool:
        return self.truth.valid_events < self.config.events

    def _window_target(self, window_start: int, window_end: int) -> int:
        middle = (window_start + window_end) // 2
        ist = _datetime(middle + IST_OFFSET_US)
        weight = IST_HOUR_WEIGHTS[ist.hour] * WEEKDAY_WEIGHTS[ist.weekday()]
        expected = self.config.events_per_day * (window_end - window_start) / US_PER_DAY * weight
        return round(expected * self._behaviour.uniform(0.9, 1.1))

    def _due_deliveries(self, window_end: int) -> list[Delivery]:
        due: list[Delivery] = []
        while self._pending and self._pending[0][0] < window_end:
            due.append(heapq.heappop(self._pending)[2])
        return due

    # -- catalogue changes ----------------------------------------------------------------------

    def _count_for_window(self, per_day: float, window_start: int, window_end: int) -> int:
        expected = per_day * (window_end - window_start) / US_PER_DAY
        whole = math.floor(expected)
        return whole + (1 if self._churn.random() < expected - whole else 0)

    def _change_catalogue(
        self, window_start: int, window_end: int
    ) -> tuple[list[Product], list[User]]:
        dirt = self.config.dirt
        today = _datetime(window_start).date()
        products: list[Product] = []
        users: list[User] = []
        for _ in range(
            self._count_for_window(dirt.price_changes_per_day, window_start, window_end)
        ):
            changed = self._reprice()
            if changed is not None:
                products.append(changed)
        for _ in range(self._count_for_window(dirt.new_products_per_day, window_start, window_end)):
            products.append(self._new_product(today))
        for _ in range(self._count_for_window(dirt.new_users_per_day, window_start, window_end)):
            user = self._people.new_user(today)
            self._users.append(user)
            users.append(user)
            self.truth.new_users += 1
        for _ in range(
            self._count_for_window(dirt.renamed_users_per_day, window_start, window_end)
        ):
            index = self._churn.randrange(len(self._users))
            self._users[index] = self._people.renamed(self._users[index])
            users.append(self._users[index])
            self.truth.renamed_users += 1
        return products, users

    def _reprice(self) -> Product | None:
        index = self._churn.randrange(len(self._products))
        product = self._products[index]
        assert product.price is not None
        new_price = float(max(1, round(product.price * self._churn.uniform(0.8, 1.15))))
        if product.retail_price_inr is not None:
            new_price = min(new_price, product.retail_price_inr)
        if new_price == product.price:
            new_price = product.price - 1 if product.price > 1 else product.price + 1
            if product.retail_price_inr is not None and new_price > product.retail_price_inr:
                return None
        changed = replace(product, price=new_price)
        self._products[index] = changed
        self.truth.price_changes += 1
        return changed

    def _new_product(self, listing_date: date) -> Product:
        base = self._products[self._churn.randrange(len(self._products))]
        assert base.price is not None
        product_id = base.product_id[:3]
        while len(product_id) < 16 or product_id in self._known_product_ids:
            suffix = "".join(self._churn.choice(_PID_ALPHABET) for _ in range(13))
            product_id = base.product_id[:3] + suffix
        price = float(max(1, round(base.price * self._churn.uniform(0.85, 1.25))))
        product = Product(
            product_id=product_id,
            product_name=f"{base.product_name} ({self._churn.choice(_VARIANTS)})",
            category=base.category,
            category_path=base.category_path,
            brand=base.brand,
            price=price,
            retail_price_inr=max(price, base.retail_price_inr or price),
            date=listing_date,
        )
        self._known_product_ids.add(product_id)
        index = len(self._products)
        self._products.append(product)
        self._rank.insert(self._churn.randrange(len(self._rank) + 1), index)
        same_category = self._rank_by_category.setdefault(product.category, [])
        same_category.insert(self._churn.randrange(len(same_category) + 1), index)
        self.truth.new_products += 1
        return product

    # -- behaviour ------------------------------------------------------------------------------

    def _pick_user(self) -> User:
        rng = self._behaviour
        count = len(self._users)
        if rng.random() < 0.15:  # the recently signed up are the keenest
            recent = max(1, count // 20)
            return self._users[count - 1 - int(recent * rng.random())]
        return self._users[int(count * rng.random() ** 1.5)]  # a few heavy users, a long tail

    def _pick_product(self, category: str | None, same_category: bool) -> int:
        ranked = self._rank_by_category[category] if same_category else self._rank
        return ranked[int(len(ranked) * self._behaviour.random() ** 3)]

    def _gap_us(self) -> int:
        seconds = min(_MAX_VIEW_GAP_S, 3.0 + self._behaviour.expovariate(1 / _MEAN_VIEW_GAP_S))
        return int(seconds * US_PER_SECOND)

    def _new_session_id(self) -> str | None:
        if self._behaviour.random() >= self.config.session_id_share:
            return None
        self._session_sequence += 1
        return f"s-{self.config.seed}-{self._session_sequence:09d}"

    def _plan_session(self) -> list[_Step]:
        rng = self._behaviour
        config = self.config
        extra_views_p = 1 / config.mean_views_per_session
        views = 1
        if extra_views_p < 1:  # geometric number of further views, mean `mean_views - 1`
            views += int(math.log(1.0 - rng.random()) / math.log(1.0 - extra_views_p))
        steps: list[_Step] = []
        offset_us = 0
        viewed: list[int] = []
        product_index = self._pick_product(None, same_category=False)
        for view in range(views):
            if view:
                offset_us += self._gap_us()
                category = self._products[product_index].category
                product_index = self._pick_product(
                    category, same_category=rng.random() < _SAME_CATEGORY_SHARE
                )
            steps.append(_Step(offset_us, "view", product_index, 0))
            viewed.append(product_index)
            if rng.random() < config.wishlist_per_view:
                offset_us += int(rng.uniform(2, 30) * US_PER_SECOND)
                steps.append(_Step(offset_us, "wishlist", product_index, 0))
        if rng.random() < config.order_per_session:
            offset_us += self._gap_us()
            candidates = list(dict.fromkeys(viewed))
            lines = min(len(candidates), rng.choices((1, 2, 3), weights=(75, 20, 5))[0])
            for ordered in rng.sample(candidates, lines):
                quantity = rng.choices((1, 2, 3), weights=(85, 12, 3))[0]
                steps.append(_Step(offset_us, "order", ordered, quantity))
        return steps

    def _session(self, window_start: int, window_end: int, order_lines: list[OrderLine]) -> int:
        """Run one session inside the window; return how many valid events it made."""
        rng = self._behaviour
        user = self._pick_user()
        session_id = self._new_session_id()
        steps = self._plan_session()
        duration_us = steps[-1].offset_us
        # Start anywhere the whole session fits; one longer than the window is cut at its end.
        room_us = max(1, window_end - window_start - duration_us)
        start = window_start + int(rng.random() * room_us)
        self.truth.sessions += 1
        order_id: str | None = None
        made = 0
        for step in steps:
            ts_us = start + step.offset_us
            if ts_us >= window_end or not self._budget_left():
                break
            product = self._products[step.product_index]
            assert product.price is not None
            if step.event_name != "order":
                self._emit(
                    step.event_name,
                    product.product_id,
                    user.user_id,
                    None,
                    product.price,
                    ts_us,
                    session_id,
                )
                made += 1
                continue
            if order_id is None:
                self._order_sequence += 1
                order_id = f"o-{self.config.seed}-{self._order_sequence:09d}"
                self.truth.orders += 1
            line = OrderLine(
                order_id=order_id,
                product_id=product.product_id,
                user_id=user.user_id,
                order_ts=_datetime(ts_us),
                quantity=step.quantity,
                unit_price_inr=product.price,
            )
            order_lines.append(line)
            self.truth.order_lines += 1
            amount = product.price * step.quantity
            self._emit(
                "order", product.product_id, user.user_id, order_id, amount, ts_us, session_id
            )
            made += 1
            if rng.random() < self.config.return_per_order_line:
                low, high = self.config.return_after_hours
                due_us = ts_us + int(rng.uniform(low, high) * US_PER_HOUR)
                heapq.heappush(self._returns_due, (due_us, self.truth.order_lines, line))
        return made

    def _play_returns(self, window_end: int, order_lines: list[OrderLine]) -> None:
        while self._returns_due and self._returns_due[0][0] < window_end and self._budget_left():
            due_us, _, line = heapq.heappop(self._returns_due)
            session_id = self._new_session_id()
            amount = line.unit_price_inr * line.quantity
            self._emit(
                "return", line.product_id, line.user_id, line.order_id, amount, due_us, session_id
            )
            order_lines.append(replace(line, status="returned"))
            self.truth.returned_lines += 1

    # -- events and deliveries ------------------------------------------------------------------

    def _emit(
        self,
        event_name: str,
        product_id: str,
        user_id: str,
        order_id: str | None,
        price: float,
        ts_us: int,
        session_id: str | None,
    ) -> None:
        truth = self.truth
        event_ts = _datetime(ts_us)
        event = Event(
            event_id=event_id_for(self.config.seed, truth.valid_events),
            event_name=event_name,
            product_id=product_id,
            user_id=user_id,
            order_id=order_id,
            price=float(price),
            event_ts=event_ts,
            session_id=session_id,
        )
        event_ts_text = event_ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        payload = _encode_event(event, event_ts_text)
        truth.valid_events += 1
        truth.events_by_name[event_name] += 1
        if session_id is not None:
            truth.events_with_session_id += 1
        if truth.first_event_ts is None or event_ts < truth.first_event_ts:
            truth.first_event_ts = event_ts
        if truth.last_event_ts is None or event_ts > truth.last_event_ts:
            truth.last_event_ts = event_ts

        dirt = self.config.dirt
        rng = self._dirt
        kind = DeliveryKind.ON_TIME
        deliver_us = ts_us
        if rng.random() < dirt.late_rate:
            kind = DeliveryKind.LATE
            deliver_us = ts_us + int(
                rng.uniform(dirt.late_min_hours, dirt.late_max_hours) * US_PER_HOUR
            )
            truth.late_deliveries += 1
        self._deliver(Delivery(payload, kind, _datetime(deliver_us), event), deliver_us)
        if rng.random() < dirt.duplicate_rate:
            again_us = deliver_us + int(
                rng.uniform(1.0, dirt.redelivery_max_seconds) * US_PER_SECOND
            )
            self._deliver(
                Delivery(payload, DeliveryKind.DUPLICATE, _datetime(again_us), event), again_us
            )
            truth.duplicate_deliveries += 1
        if rng.random() < dirt.malformed_rate:
            body: dict[str, Any] = json.loads(payload)
            body["event_id"] = f"e-{self.config.seed}-m{self._malformed_sequence:09d}"
            self._malformed_sequence += 1
            malformed_kind, broken = malformed_payload(body, rng)
            self._deliver(Delivery(broken, DeliveryKind.MALFORMED, event_ts, None), ts_us)
            truth.malformed_deliveries += 1
            truth.malformed_by_kind[malformed_kind.value] += 1

    def _deliver(self, delivery: Delivery, deliver_us: int) -> None:
        self._delivery_sequence += 1
        self.truth.deliveries += 1
        heapq.heappush(self._pending, (deliver_us, self._delivery_sequence, delivery))


def simulate(config: SimulationConfig) -> Iterator[SimBatch]:
    """The batches of a fresh simulation for `config`."""
    return ShopSimulator(config).batches()
