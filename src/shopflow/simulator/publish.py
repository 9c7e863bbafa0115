"""Feeding a simulation to the real sources: the shop DB, the orders API and the event bus."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shopflow.errors import ShopflowError
from shopflow.settings import Settings
from shopflow.simulator.config import SimulationConfig
from shopflow.simulator.records import GroundTruth
from shopflow.simulator.shop import ShopSimulator

#: Called after each published window with the ground truth so far.
ProgressCallback = Callable[[GroundTruth], None]


@dataclass(frozen=True, slots=True)
class SeedReport:
    """What seeding the shop DB wrote (rows inserted or changed; unchanged rows are not counted)."""

    products: int
    users: int
    catalogue_products: int
    initial_users: int


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What one simulation sent where (catalogue and user versions, not rows changed), and how long it took."""

    truth: GroundTruth
    seed: SeedReport
    payloads_published: int
    order_lines_posted: int
    products_upserted: int
    users_upserted: int
    seconds: float

    def summary_line(self) -> str:
        """One line with the counts, for the end of `shopflow simulate`."""
        truth = self.truth
        rate = self.payloads_published / self.seconds if self.seconds > 0 else 0.0
        return (
            f"simulated {truth.valid_events:,} events (seed {truth.seed}): "
            f"published {self.payloads_published:,} payloads "
            f"({truth.duplicate_deliveries:,} duplicates, {truth.late_deliveries:,} late, "
            f"{truth.malformed_deliveries:,} malformed) at {rate:,.0f}/s; "
            f"posted {self.order_lines_posted:,} order lines ({truth.orders:,} orders, "
            f"{truth.returned_lines:,} returned); upserted {self.products_upserted:,} products "
            f"and {self.users_upserted:,} users ({truth.price_changes:,} price changes, "
            f"{truth.new_products:,} new products, {truth.new_users:,} new and "
            f"{truth.renamed_users:,} renamed users)"
        )


class _Pacer:
    """Holds publishing to at most `per_second` payloads per second of wall time."""

    def __init__(self, per_second: float | None) -> None:
        if per_second is not None and per_second <= 0:
            raise ShopflowError(f"--rate must be positive, got {per_second}")
        self.per_second = per_second
        self._started = time.monotonic()
        self._sent = 0

    @property
    def chunk(self) -> int:
        """How many payloads to publish between pauses (about a tenth of a second's worth)."""
        return max(1, int(self.per_second / 10)) if self.per_second else 1_000_000

    def sent(self, count: int) -> None:
        """Record `count` more sent payloads and sleep until they are due."""
        self._sent += count
        if self.per_second:
            ahead = self._sent / self.per_second - (time.monotonic() - self._started)
            if ahead > 0:
                time.sleep(ahead)


def seed_shop(settings: Settings, simulator: ShopSimulator) -> SeedReport:
    """Create the shop DB schema (idempotent) and upsert the catalogue and the initial users."""
    from shopflow.sources.shop_db import ensure_shop_db, upsert_products, upsert_users

    ensure_shop_db(settings)
    products = simulator.initial_products()
    users = simulator.initial_users()
    return SeedReport(
        products=upsert_products(settings, products),
        users=upsert_users(settings, users),
        catalogue_products=len(products),
        initial_users=len(users),
    )


def publish_simulation(
    settings: Settings,
    config: SimulationConfig,
    *,
    rate_per_second: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> PublishReport:
    """Seed the shop, then run the simulation window by window into the three sources.

    Per window: catalogue changes go to the shop DB first, then the order lines to the orders
    API, then the payloads to the bus, so an event never arrives before what it refers to.
    """
    from shopflow.sources.bus.factory import ensure_event_topic, make_publisher
    from shopflow.sources.orders_api.client import OrdersApiClient
    from shopflow.sources.shop_db import upsert_products, upsert_users

    pacer = _Pacer(rate_per_second)
    simulator = ShopSimulator(config)
    started = time.monotonic()
    seeded = seed_shop(settings, simulator)
    ensure_event_topic(settings)
    published = posted = products = users = 0
    publisher = make_publisher(settings)
    try:
        with OrdersApiClient.from_settings(settings) as orders_api:
            for batch in simulator.batches():
                if batch.products:
                    upsert_products(settings, batch.products)
                    products += len(batch.products)
                if batch.users:
                    upsert_users(settings, batch.users)
                    users += len(batch.users)
                if batch.order_lines:
                    orders_api.post_orders(batch.order_lines)
                    posted += len(batch.order_lines)
                payloads = batch.payloads
                for start in range(0, len(payloads), pacer.chunk):
                    chunk = payloads[start : start + pacer.chunk]
                    published += publisher.publish(chunk)
                    pacer.sent(len(chunk))
                if on_progress is not None:
                    on_progress(simulator.truth)
    finally:
        publisher.close()
    return PublishReport(
        truth=simulator.truth,
        seed=seeded,
        payloads_published=published,
        order_lines_posted=posted,
        products_upserted=products,
        users_upserted=users,
        seconds=time.monotonic() - started,
    )
