"""`shopflow seed` and `shopflow simulate` against the real PostgreSQL, orders API and Pub/Sub emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from shopflow.contracts import InvalidEventError, parse_event
from shopflow.settings import Settings
from shopflow.simulator import DirtConfig, ShopSimulator, SimulationConfig
from shopflow.sources.bus.factory import make_consumer
from shopflow.sources.flipkart import load_catalogue
from tests.conftest import TEST_PG_ADMIN_URL
from tests.sources.orders_api.conftest import RunningOrdersApi, orders_api, start_orders_api

__all__ = ["orders_api", "start_orders_api"]


@pytest.fixture
def sources(
    pubsub_settings: Settings, orders_api: RunningOrdersApi
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings (and the matching environment) for a fresh shop DB, an orders API and a topic."""
    dbname = f"shopflow_test_{uuid.uuid4().hex[:12]}"
    api = orders_api.settings
    settings = pubsub_settings.model_copy(
        update={
            "source_db_url": make_conninfo(TEST_PG_ADMIN_URL, dbname=dbname),
            "orders_api_port": api.orders_api_port,
            "orders_api_token": api.orders_api_token,
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update(
        {
            "SHOPFLOW_HOME": str(settings.home),
            "SHOPFLOW_SOURCE_DB_URL": settings.source_db_url,
            "SHOPFLOW_ORDERS_API_PORT": str(api.orders_api_port),
            "SHOPFLOW_ORDERS_API_TOKEN": api.orders_api_token.get_secret_value(),
            "SHOPFLOW_BUS": "pubsub",
            "SHOPFLOW_PUBSUB_EMULATOR_HOST": str(settings.pubsub_emulator_host),
            "SHOPFLOW_EVENTS_TOPIC": settings.events_topic,
            "SHOPFLOW_EVENTS_SUBSCRIPTION": settings.events_subscription,
        }
    )
    yield settings, env
    with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def _shopflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from shopflow.cli.main import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _drain(settings: Settings, expected: int) -> list[bytes]:
    consumer = make_consumer(settings)
    payloads: list[bytes] = []
    try:
        for _ in range(60):
            messages = consumer.receive(max_messages=1000, timeout_seconds=2.0)
            consumer.acknowledge(messages)
            payloads.extend(message.payload for message in messages)
            if len(payloads) >= expected and not messages:
                break
    finally:
        consumer.close()
    return payloads


@pytest.mark.integration
def test_seed_then_simulate_feeds_all_three_sources(
    sources: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = sources
    seeded = _shopflow(env, "seed", "--seed", "9", "--users", "200")
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded the shop DB" in seeded.stdout

    simulated = _shopflow(
        env,
        "simulate",
        "--events", "3000", "--seed", "9", "--users", "200", "--events-per-day", "4000",
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    summary = simulated.stdout.strip().splitlines()[-1]
    assert summary.startswith("simulated 3,000 events (seed 9)")

    # The same configuration, run in memory, is the ground truth to compare against.
    reference = ShopSimulator(
        SimulationConfig(
            seed=9, events=3000, initial_users=200, events_per_day=4000, dirt=DirtConfig()
        )
    )
    batches = list(reference.batches())
    truth = reference.truth
    assert f"published {truth.deliveries:,} payloads" in summary

    payloads = _drain(settings, truth.deliveries)
    assert len(payloads) >= truth.deliveries  # at least once
    valid: set[str] = set()
    malformed = 0
    for payload in payloads:
        try:
            valid.add(parse_event(payload).event_id)
        except InvalidEventError:
            malformed += 1
    assert valid == set(truth.valid_event_ids())
    assert malformed >= truth.malformed_deliveries

    placed = {
        (line.order_id, line.product_id)
        for batch in batches
        for line in batch.order_lines
        if line.status == "placed"
    }
    with psycopg.connect(settings.source_db_url) as conn:
        products = conn.execute("SELECT count(*) FROM products").fetchone()
        users = conn.execute("SELECT count(*) FROM users").fetchone()
    assert products is not None and users is not None
    assert products[0] == len(load_catalogue().products) + truth.new_products
    assert users[0] == 200 + truth.new_users

    from shopflow.sources.orders_api.client import OrdersApiClient

    stored: Counter[str] = Counter()
    keys: set[tuple[str, str]] = set()
    with OrdersApiClient.from_settings(settings) as client:
        cursor: str | None = None
        while True:
            page = client.fetch_page(datetime(2000, 1, 1, tzinfo=UTC), cursor, 1000)
            for line in page.orders:
                keys.add((line.order_id, line.product_id))
                stored[line.status] += 1
            cursor = page.next_cursor
            if cursor is None:
                break
    assert keys == placed
    assert stored["returned"] == truth.returned_lines


@pytest.mark.integration
def test_simulate_reports_an_unreachable_shop_db_in_one_line(
    sources: tuple[Settings, dict[str, str]],
) -> None:
    _, env = sources
    env = {**env, "SHOPFLOW_SOURCE_DB_URL": "postgresql://postgres@127.0.0.1:1/shopflow"}
    result = _shopflow(env, "simulate", "--events", "10", "--users", "5")
    assert result.returncode == 2
    assert result.stderr.startswith("shopflow: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
