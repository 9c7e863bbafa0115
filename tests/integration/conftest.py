"""Fixtures of the pipeline integration tests: every real source of one shop, per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from shopflow.settings import Settings
from tests.conftest import TEST_PG_ADMIN_URL
from tests.sources.orders_api.conftest import RunningOrdersApi, orders_api, start_orders_api

__all__ = ["orders_api", "start_orders_api"]


@pytest.fixture
def shop_settings(pubsub_settings: Settings, orders_api: RunningOrdersApi) -> Iterator[Settings]:
    """Settings for a fresh shop database, a running orders API and a Pub/Sub topic of this test."""
    dbname = f"shopflow_test_{uuid.uuid4().hex[:12]}"
    api = orders_api.settings
    yield pubsub_settings.model_copy(
        update={
            "source_db_url": make_conninfo(TEST_PG_ADMIN_URL, dbname=dbname),
            "orders_api_port": api.orders_api_port,
            "orders_api_token": api.orders_api_token,
        }
    )
    with psycopg.connect(TEST_PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
