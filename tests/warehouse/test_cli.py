"""`shopflow load` and `shopflow metrics` on the tiny lake, through the Typer app."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from shopflow.cli.warehouse import register
from shopflow.errors import ShopflowError
from shopflow.lake import LakeLayout
from shopflow.settings import Settings
from tests.warehouse.tiny_lake import EXPECTED_UNIQUE_VISITORS


@pytest.fixture
def app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """A top-level app with the warehouse commands, pointed at the test's home."""
    monkeypatch.setenv("SHOPFLOW_HOME", str(settings.home))
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


def test_load_then_metrics_as_tables_and_json(app: typer.Typer, tiny_lake: LakeLayout) -> None:
    runner = CliRunner()
    loaded = runner.invoke(app, ["load"])
    assert loaded.exit_code == 0, loaded.output
    assert "user_behavior: 17 rows (2026-11-25, 2026-11-26)" in loaded.output
    assert "products_clean: 3 rows (whole table)" in loaded.output

    again = runner.invoke(app, ["load", "--date", "2026-11-26", "--table", "events_clean"])
    assert again.exit_code == 0, again.output
    assert "events_clean: 9 rows (2026-11-26)" in again.output

    shown = runner.invoke(app, ["metrics"])
    assert shown.exit_code == 0, shown.output
    for title in ("most sold", "most wishlisted", "most returned", "metric_daily_traffic"):
        assert title in shown.output
    assert "Desk Lamp" in shown.output

    as_json = runner.invoke(app, ["metrics", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert [(r["scope"], r["unique_visitors"]) for r in data["metric_unique_visitors"]] == [
        (scope, n) for scope, _, n in EXPECTED_UNIQUE_VISITORS
    ]
    assert data["metric_orders_by_date"][1]["date"] == "2026-11-26"


def test_errors_are_one_line_shopflow_errors(app: typer.Typer) -> None:
    runner = CliRunner()
    for args, message in (
        (["metrics"], "no warehouse at"),
        (["load"], "no curated data under"),
        (["load", "--date", "26/11/2026"], "is not a date"),
    ):
        result = runner.invoke(app, args)
        assert isinstance(result.exception, ShopflowError), args
        assert message in str(result.exception)
        assert "\n" not in str(result.exception)
