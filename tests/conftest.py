"""Fixtures every test tier shares. Tier-specific fixtures live in the conftest.py of their folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopflow.settings import Settings, load_settings

pytest_plugins = ["tests.service_fixtures", "tests.spark_fixtures"]

#: PostgreSQL server the tests use; each test that needs a database creates its own.
TEST_PG_ADMIN_URL = os.environ.get(
    "SHOPFLOW_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def shopflow_home(tmp_path: Path) -> Path:
    """A fresh, empty SHOPFLOW_HOME for one test."""
    home = tmp_path / "shopflow-home"
    home.mkdir()
    return home


@pytest.fixture
def settings(shopflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Local-profile settings whose every write goes under a per-test home.

    The environment is cleared of SHOPFLOW_* so a developer's own configuration cannot leak in.
    """
    for key in list(os.environ):
        if key.startswith("SHOPFLOW_") and not key.startswith("SHOPFLOW_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(shopflow_home.parent)
    yield load_settings(home=shopflow_home)
