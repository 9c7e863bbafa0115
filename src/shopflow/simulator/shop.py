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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, timedelta
from typing import Any, Final

from shopflow.contracts import Event, OrderLine, Product, User
from shopflow.simulator.clock import (
    IST_HOUR_WEIGHTS,
    IST_OFFSET_US,
    US_PER_DAY,
    US_PER_HOUR,
    US_PER_SECOND,
    WEEKDAY_WEIGHTS,
    datetime_from_us,
    us_from_datetime,
)
from shopflow.simulator.config import SimulationConfig
from shopflow.simulator.malformed import malformed_payload
from shopflow.simulator.people import PeopleFactory
from shopflow.simulator.records import (
    Delivery,
    DeliveryKind,
    GroundTruth,
    SimBatch,
    encode_event_payload,
    event_id_for,
)
from shopflow.sources.flipkart import load_catalogue

_MEAN_VIEW_GAP_S: Final = 45.0
_MAX_VIEW_GAP_S: Final = 20 * 60.0  # below the 30-minute inactivity that ends a derived session
_SAME_CATEGORY_SHARE: Final = 0.7
_PID_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_VARIANTS: Final = ("Navy", "Maroon", "Olive", "Pack of 2", "Combo", "2026 Edition", "Pro", "Mini")


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
        window_start = us_from_datetime(self.config.start)
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
                    window_start=datetime_from_us(window_start),
                    window_end=datetime_from_us(window_end),
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
        ist = datetime_from_us(middle + IST_OFFSET_US)
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
        today = datetime_from_us(window_start).date()
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
                order_ts=datetime_from_us(ts_us),
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
        event_ts = datetime_from_us(ts_us)
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
        payload = encode_event_payload(event, event_ts_text)
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
        self._deliver(Delivery(payload, kind, datetime_from_us(deliver_us), event), deliver_us)
        if rng.random() < dirt.duplicate_rate:
            again_us = deliver_us + int(
                rng.uniform(1.0, dirt.redelivery_max_seconds) * US_PER_SECOND
            )
            self._deliver(
                Delivery(payload, DeliveryKind.DUPLICATE, datetime_from_us(again_us), event),
                again_us,
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
