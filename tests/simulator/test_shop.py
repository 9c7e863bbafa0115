"""The simulated shop: deterministic, a realistic funnel, honest dirt, and ground truth that adds up."""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest

from shopflow.contracts import Event, InvalidEventError, encode_event, parse_event
from shopflow.errors import ShopflowError
from shopflow.simulator import (
    DeliveryKind,
    DirtConfig,
    ShopSimulator,
    SimBatch,
    SimulationConfig,
)

DIRT = DirtConfig(
    duplicate_rate=0.05,
    late_rate=0.04,
    late_min_hours=1.0,
    late_max_hours=3.0,
    malformed_rate=0.03,
    price_changes_per_day=400.0,
    new_products_per_day=40.0,
    new_users_per_day=60.0,
    renamed_users_per_day=30.0,
)
CONFIG = SimulationConfig(
    seed=11,
    events=8_000,
    events_per_day=6_000,
    initial_users=300,
    session_id_share=0.6,
    mean_views_per_session=5.0,
    wishlist_per_view=0.08,
    order_per_session=0.2,
    return_per_order_line=0.25,
    return_after_hours=(0.5, 3.0),
    dirt=DIRT,
)


@dataclass(frozen=True)
class Run:
    """One finished simulation, kept whole (it is small)."""

    simulator: ShopSimulator
    batches: list[SimBatch]

    @property
    def valid_events(self) -> list[Event]:
        """Each valid event once, from its first delivery."""
        seen: dict[str, Event] = {}
        for batch in self.batches:
            for delivery in batch.deliveries:
                if delivery.event is not None:
                    seen.setdefault(delivery.event.event_id, delivery.event)
        return list(seen.values())


def _run(config: SimulationConfig) -> Run:
    simulator = ShopSimulator(config)
    return Run(simulator, list(simulator.batches()))


@pytest.fixture(scope="module")
def run() -> Run:
    return _run(CONFIG)


def _within_binomial(observed: int, trials: int, probability: float) -> bool:
    """Whether `observed` successes in `trials` are within 4.5 standard deviations of expected."""
    expected = trials * probability
    sigma = math.sqrt(max(trials * probability * (1 - probability), 1.0))
    return abs(observed - expected) <= 4.5 * sigma


def _fingerprint(batches: list[SimBatch]) -> list[object]:
    return [
        (
            b.window_start,
            b.window_end,
            b.payloads,
            [d.deliver_ts for d in b.deliveries],
            b.order_lines,
            b.products,
            b.users,
        )
        for b in batches
    ]


def test_same_seed_gives_identical_output_and_another_seed_differs(run: Run) -> None:
    again = _run(CONFIG)
    assert _fingerprint(again.batches) == _fingerprint(run.batches)
    assert again.simulator.initial_users() == run.simulator.initial_users()
    other = _run(replace(CONFIG, seed=12))
    assert [b.payloads for b in other.batches] != [b.payloads for b in run.batches]
    assert other.simulator.initial_users() != run.simulator.initial_users()


def test_ground_truth_counts_match_the_deliveries(run: Run) -> None:
    truth = run.simulator.truth
    deliveries = [d for b in run.batches for d in b.deliveries]
    kinds = Counter(d.kind for d in deliveries)
    assert truth.valid_events == CONFIG.events
    assert truth.deliveries == len(deliveries)
    assert kinds[DeliveryKind.DUPLICATE] == truth.duplicate_deliveries
    assert kinds[DeliveryKind.LATE] == truth.late_deliveries
    assert kinds[DeliveryKind.MALFORMED] == truth.malformed_deliveries
    assert kinds[DeliveryKind.ON_TIME] + kinds[DeliveryKind.LATE] == truth.valid_events
    valid_ids = {d.event.event_id for d in deliveries if d.event is not None}
    assert valid_ids == set(truth.valid_event_ids())
    assert sum(truth.malformed_by_kind.values()) == truth.malformed_deliveries
    assert Counter(e.event_name for e in run.valid_events) == truth.events_by_name


def test_dirt_rates_are_within_tolerance_of_the_config(run: Run) -> None:
    truth = run.simulator.truth
    n = truth.valid_events
    assert _within_binomial(truth.duplicate_deliveries, n, DIRT.duplicate_rate)
    assert _within_binomial(truth.late_deliveries, n, DIRT.late_rate)
    assert _within_binomial(truth.malformed_deliveries, n, DIRT.malformed_rate)
    assert set(truth.malformed_by_kind) == {
        "bad_json",
        "wrong_type",
        "missing_key",
        "unknown_event",
    }


def test_funnel_rates_are_within_tolerance_of_the_config(run: Run) -> None:
    truth = run.simulator.truth
    by_name = truth.events_by_name
    assert by_name["view"] > by_name["wishlist"] > by_name["return"] > 0
    assert by_name["view"] > by_name["order"] > by_name["return"]
    assert _within_binomial(by_name["wishlist"], by_name["view"], CONFIG.wishlist_per_view)
    assert _within_binomial(truth.orders, truth.sessions, CONFIG.order_per_session)
    assert by_name["view"] / truth.sessions == pytest.approx(
        CONFIG.mean_views_per_session, rel=0.15
    )
    # Returns falling due after the last event are never played, so allow a shortfall.
    return_share = truth.returned_lines / truth.order_lines
    assert 0.6 * CONFIG.return_per_order_line <= return_share <= 1.3 * CONFIG.return_per_order_line
    session_share = truth.events_with_session_id / truth.valid_events
    assert session_share == pytest.approx(CONFIG.session_id_share, abs=0.1)


def test_every_valid_delivery_parses_and_every_malformed_one_fails(run: Run) -> None:
    for batch in run.batches:
        for delivery in batch.deliveries:
            if delivery.kind is DeliveryKind.MALFORMED:
                assert delivery.event is None
                with pytest.raises(InvalidEventError):
                    parse_event(delivery.payload)
            else:
                event = parse_event(delivery.payload)
                assert event == delivery.event
                assert encode_event(event) == delivery.payload


def test_session_ids_are_present_on_some_events_and_absent_on_others(run: Run) -> None:
    with_session = [e for e in run.valid_events if e.session_id is not None]
    assert 0 < len(with_session) < len(run.valid_events)
    by_session: dict[str, set[str]] = {}
    for event in with_session:
        by_session.setdefault(event.session_id or "", set()).add(event.user_id)
    assert all(len(users) == 1 for users in by_session.values())


def test_order_events_and_order_lines_agree(run: Run) -> None:
    placed = [line for b in run.batches for line in b.order_lines if line.status == "placed"]
    orders = [e for e in run.valid_events if e.event_name == "order"]
    assert len(placed) == len(orders) == run.simulator.truth.order_lines
    lines_by_key = {(ln.order_id, ln.product_id, ln.user_id): ln for ln in placed}
    assert len(lines_by_key) == len(placed)
    for event in orders:
        assert event.order_id is not None
        line = lines_by_key[(event.order_id, event.product_id, event.user_id)]
        assert line.order_ts == event.event_ts
        assert event.price == pytest.approx(line.unit_price_inr * line.quantity)
    assert len({line.order_id for line in placed}) == run.simulator.truth.orders


def test_returns_only_follow_earlier_orders_of_the_same_user(run: Run) -> None:
    orders = {
        (e.order_id, e.product_id, e.user_id): e
        for e in run.valid_events
        if e.event_name == "order"
    }
    returns = [e for e in run.valid_events if e.event_name == "return"]
    assert returns
    for returned in returns:
        order = orders[(returned.order_id, returned.product_id, returned.user_id)]
        assert order.event_ts < returned.event_ts
        assert returned.price == order.price
    updates = [line for b in run.batches for line in b.order_lines if line.status == "returned"]
    assert {(u.order_id, u.product_id, u.user_id) for u in updates} == {
        (r.order_id, r.product_id, r.user_id) for r in returns
    }


def test_late_events_are_late_by_the_configured_amount(run: Run) -> None:
    late = [d for b in run.batches for d in b.deliveries if d.kind is DeliveryKind.LATE]
    assert late
    for delivery in late:
        assert delivery.event is not None
        delay = delivery.deliver_ts - delivery.event.event_ts
        assert timedelta(hours=DIRT.late_min_hours) <= delay <= timedelta(hours=DIRT.late_max_hours)
    on_time = [d for b in run.batches for d in b.deliveries if d.kind is DeliveryKind.ON_TIME]
    assert all(d.event is not None and d.deliver_ts == d.event.event_ts for d in on_time)


def test_batches_deliver_within_their_window_in_order(run: Run) -> None:
    for previous, batch in zip(run.batches, run.batches[1:], strict=False):
        assert previous.window_end == batch.window_start
    for batch in run.batches:
        times = [d.deliver_ts for d in batch.deliveries]
        assert times == sorted(times)
        assert all(batch.window_start <= ts < batch.window_end for ts in times)


def test_duplicates_redeliver_the_same_payload_after_the_first(run: Run) -> None:
    first: dict[bytes, datetime] = {}
    for batch in run.batches:
        for delivery in batch.deliveries:
            if delivery.kind is DeliveryKind.DUPLICATE:
                assert delivery.deliver_ts > first[delivery.payload]
            elif delivery.kind is not DeliveryKind.MALFORMED:
                first[delivery.payload] = delivery.deliver_ts


def test_event_prices_are_the_catalogue_price_at_that_moment(run: Run) -> None:
    history: dict[str, list[tuple[datetime, float]]] = {}
    start = run.batches[0].window_start
    for product in run.simulator.initial_products():
        if product.price is not None:
            history[product.product_id] = [(start, product.price)]
    for batch in run.batches:
        for product in batch.products:
            assert product.price is not None
            history.setdefault(product.product_id, []).append((batch.window_start, product.price))
    priced = [e for e in run.valid_events if e.event_name in ("view", "wishlist")]
    assert priced
    for event in priced:
        versions = history[event.product_id]
        at = bisect.bisect_right([ts for ts, _ in versions], event.event_ts) - 1
        assert at >= 0, "an event before its product existed"
        assert event.price == versions[at][1]


def test_events_reference_known_users_and_products(run: Run) -> None:
    users = {u.user_id: u for u in run.simulator.initial_users()}
    products = {p.product_id for p in run.simulator.initial_products() if p.price is not None}
    assert all(re.fullmatch(r"u-\d{6}", user_id) for user_id in users)
    for batch in run.batches:
        for user in batch.users:
            users[user.user_id] = user
        products.update(p.product_id for p in batch.products)
        for delivery in batch.deliveries:
            if delivery.event is not None:
                assert delivery.event.user_id in users
                assert delivery.event.product_id in products


def test_catalogue_changes_reprice_add_products_and_add_or_rename_users(run: Run) -> None:
    truth = run.simulator.truth
    initial_products = {p.product_id: p for p in run.simulator.initial_products()}
    initial_users = {u.user_id: u for u in run.simulator.initial_users()}
    changed = [p for b in run.batches for p in b.products]
    repriced = [p for p in changed if p.product_id in initial_products]
    added = [p for p in changed if p.product_id not in initial_products]
    assert truth.price_changes > 0 and truth.new_products > 0
    assert len({p.product_id for p in added}) == truth.new_products  # a new one may be repriced
    assert all(re.fullmatch(r"[A-Z0-9]{16}", p.product_id) for p in added)
    assert any(p.price != initial_products[p.product_id].price for p in repriced)
    for product in changed:
        assert product.price is not None
        assert product.retail_price_inr is None or product.price <= product.retail_price_inr
    user_versions = [u for b in run.batches for u in b.users]
    renamed = [u for u in user_versions if u.user_id in initial_users]
    assert truth.new_users > 0 and truth.renamed_users > 0
    assert any(u.user_name != initial_users[u.user_id].user_name for u in renamed)


def test_evening_hours_in_india_are_busier_than_the_night() -> None:
    config = SimulationConfig(
        seed=3, events=40_000, events_per_day=20_000, initial_users=200, dirt=DirtConfig.clean()
    )
    simulator = ShopSimulator(config)
    per_ist_hour: Counter[int] = Counter()
    for batch in simulator.batches():
        for delivery in batch.deliveries:
            assert delivery.event is not None
            per_ist_hour[(delivery.event.event_ts + timedelta(hours=5, minutes=30)).hour] += 1
    evening = sum(per_ist_hour[h] for h in (19, 20, 21, 22))
    night = sum(per_ist_hour[h] for h in (2, 3, 4, 5))
    assert evening > 4 * night


def test_clean_dirt_means_exactly_one_delivery_per_event() -> None:
    run = _run(SimulationConfig(seed=5, events=2_000, initial_users=50, dirt=DirtConfig.clean()))
    kinds = Counter(d.kind for b in run.batches for d in b.deliveries)
    assert kinds == Counter({DeliveryKind.ON_TIME: 2_000})
    assert not any(b.products or b.users for b in run.batches)


def test_it_streams_a_huge_simulation_one_window_at_a_time() -> None:
    simulator = ShopSimulator(SimulationConfig(events=10_000_000, initial_users=100))
    first_two = list(islice(simulator.batches(), 2))
    assert len(first_two) == 2
    assert simulator.truth.valid_events < 10_000


def test_zero_events_gives_no_batches() -> None:
    assert list(ShopSimulator(SimulationConfig(events=0, initial_users=10)).batches()) == []


def test_a_simulator_runs_once() -> None:
    simulator = ShopSimulator(SimulationConfig(events=10, initial_users=10))
    list(simulator.batches())
    with pytest.raises(RuntimeError):
        list(simulator.batches())


@pytest.mark.parametrize(
    "overrides",
    [
        {"seed": -1},
        {"events_per_day": 0},
        {"batch_minutes": 7},
        {"session_id_share": 1.5},
        {"start": datetime(2026, 11, 1)},
        {"return_after_hours": (5.0, 1.0)},
    ],
)
def test_bad_configuration_is_an_actionable_error(overrides: dict[str, object]) -> None:
    with pytest.raises(ShopflowError, match="simulator: "):
        SimulationConfig(**overrides)  # type: ignore[arg-type]


def test_bad_dirt_is_an_actionable_error() -> None:
    with pytest.raises(ShopflowError, match="late_max_hours"):
        DirtConfig(late_min_hours=3, late_max_hours=1)
    with pytest.raises(ShopflowError, match="duplicate_rate"):
        DirtConfig(duplicate_rate=2)


def test_users_are_indian_faker_users_with_shop_ids(run: Run) -> None:
    users = run.simulator.initial_users()
    assert [u.user_id for u in users] == [f"u-{n:06d}" for n in range(1, len(users) + 1)]
    assert all(u.email and "@" in u.email and u.city and " " in u.user_name for u in users)
    assert all(u.date < CONFIG.start.astimezone(UTC).date() for u in users)
