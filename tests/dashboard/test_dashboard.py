"""The dashboard: its data on the hand-computed tiny warehouse, its page in Streamlit's test
runner, and the real server (`shopflow dashboard`) rendered by headless Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import urlopen

import pytest
from streamlit.testing.v1 import AppTest

from shopflow.dashboard import APP_PATH, DashboardUnavailable, read_snapshot, streamlit_command
from shopflow.dashboard.server import dashboard_environment
from shopflow.lake import LakeLayout
from shopflow.metrics import METRIC_VIEWS, load_warehouse, select_sql
from shopflow.settings import Settings, load_settings
from shopflow.warehouse import duckdb_path, open_warehouse
from tests.dashboard.live_files import write_live_file
from tests.warehouse.tiny_lake import DAY1, DAY2

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARTS = '[data-testid="stVegaLiteChart"]'


@pytest.fixture
def warehouse(settings: Settings, tiny_lake: LakeLayout) -> Path:
    """The tiny dataset loaded into the test home's DuckDB warehouse (views created)."""
    load_warehouse(settings)
    return duckdb_path(settings)


# -- data ---------------------------------------------------------------------------------------


def test_whole_range_is_exactly_the_metric_views(settings: Settings, warehouse: Path) -> None:
    snapshot = read_snapshot(settings)
    assert (snapshot.first_date, snapshot.last_date, snapshot.events) == (DAY1, DAY2, 17)
    assert (snapshot.start, snapshot.end) == (DAY1, DAY2)
    views = open_warehouse(settings, must_exist=True)
    try:
        for view in METRIC_VIEWS:
            assert snapshot.metrics[view.name] == views.query(select_sql(view, "duckdb")), view
    finally:
        views.close()


def test_freshness(settings: Settings, warehouse: Path) -> None:
    freshness = read_snapshot(settings).freshness
    assert freshness.latest_event_ts is not None
    assert freshness.latest_event_ts.isoformat() == "2026-11-26T19:00:00+00:00"
    assert freshness.latest_ingest_ts == freshness.latest_event_ts  # tiny lake: ingest = event
    assert freshness.last_loaded is not None
    assert abs(freshness.last_loaded.timestamp() - warehouse.stat().st_mtime) < 1


def test_one_day_follows_the_metric_definitions(settings: Settings, warehouse: Path) -> None:
    # 2026-11-26 alone, by hand: e09..e17, shopping sessions s4..s7 (s8 holds only a return),
    # orders o2 (400) and o3 (400), the returns of o1 (200) and o2 (400); users u1, u2, u4.
    m = read_snapshot(settings, DAY2, DAY2).metrics
    top = {
        r["product_id"]: (r["lines_sold"], r["units_sold"], r["wishlisted"], r["returned"])
        for r in m["metric_top_products"]
    }
    # Units from the API lines of that day only; o4 (p2) was cancelled.
    assert top == {"p1": (0, 0, 1, 1), "p2": (0, 0, 0, 0), "p3": (2, 2, 1, 1)}
    overall = m["metric_avg_spend_per_session"][0]
    assert overall["scope"] == "overall"
    assert (overall["sessions"], overall["spend_inr"], overall["avg_spend_per_session_inr"]) == (
        4,
        200.0,
        50.0,
    )
    visitors = [(r["scope"], r["date"], r["unique_visitors"]) for r in m["metric_unique_visitors"]]
    assert visitors == [("overall", None, 3), ("day", DAY2, 3)]
    assert [(r["date"], r["orders"], r["net_amount_inr"]) for r in m["metric_orders_by_date"]] == [
        (DAY2, 2, 200.0)
    ]
    assert {r["date"] for r in m["metric_daily_traffic"]} == {DAY2}
    # A range past the data is clamped to it.
    assert read_snapshot(settings, date(2020, 1, 1), date(2030, 1, 1)).start == DAY1


def test_reporting_timezone_dates_the_daily_figures(settings: Settings, warehouse: Path) -> None:
    # e16 at 19:00 UTC on DAY2 is 00:30 on the next date in Asia/Kolkata (UTC+05:30).
    kolkata = settings.model_copy(update={"reporting_timezone": "Asia/Kolkata"})
    day3 = date(2026, 11, 27)
    snapshot = read_snapshot(kolkata)
    assert (snapshot.first_date, snapshot.last_date, snapshot.events) == (DAY1, day3, 17)
    traffic = {
        (r["date"], r["event_name"]): r["events"] for r in snapshot.metrics["metric_daily_traffic"]
    }
    assert traffic[(day3, "view")] == 1
    assert traffic[(DAY2, "view")] == 2  # e09, e11; e16 moved on
    # The date filter picks the reporting date: the next date alone holds e16 only.
    only = read_snapshot(kolkata, day3, day3).metrics["metric_daily_traffic"]
    assert [(r["date"], r["event_name"], r["events"]) for r in only] == [(day3, "view", 1)]


def test_missing_and_empty_warehouse_say_why(settings: Settings) -> None:
    with pytest.raises(DashboardUnavailable, match=r"No warehouse at .* run `shopflow demo`"):
        read_snapshot(settings)
    open_warehouse(settings).close()  # tables, no rows
    with pytest.raises(DashboardUnavailable, match="The warehouse is empty"):
        read_snapshot(settings)


# -- page (Streamlit's script runner, no browser) ---------------------------------------------------


def _app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("SHOPFLOW_HOME", str(settings.home))
    return AppTest.from_file(str(APP_PATH), default_timeout=60)


def test_page_without_warehouse_shows_a_message(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(settings, monkeypatch).run()
    assert not at.exception
    assert len(at.warning) == 1
    assert "No warehouse at" in at.warning[0].value
    assert not at.get("vega_lite_chart")


def test_live_panel_needs_no_warehouse(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    write_live_file(settings, "part-00000", [("l1", "view", now), ("l2", "order", now)])
    at = _app(settings, monkeypatch).run()
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Events in the last 15 min"] == "2"
    assert values["Newest event's age"].endswith(" s")
    assert len(at.get("vega_lite_chart")) == 1  # the live chart; the warehouse part says why not
    assert "No warehouse at" in at.warning[0].value


def test_page_date_filter_changes_the_numbers(
    settings: Settings, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(settings, monkeypatch).run()
    assert not at.exception
    # Three top-products charts, spend, visitors, orders, traffic; no live panel chart.
    assert len(at.get("vega_lite_chart")) == 7
    assert any("No live events yet" in i.value for i in at.info)
    values = {m.label: m.value for m in at.metric}
    assert values["Average spend per session"] == "₹64.29"  # 450 / 7
    assert values["Unique visitors in the range"] == "4"
    assert "latest event: 2026-11-26 19:00:00 UTC" in at.caption[0].value

    at.sidebar.date_input[0].set_value((DAY2, DAY2)).run()
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Average spend per session"] == "₹50.00"  # 200 / 4
    assert values["Unique visitors in the range"] == "3"
    assert values["Orders in the range"] == "2"


# -- launcher -------------------------------------------------------------------------------------


def test_streamlit_runs_offline_and_settings_round_trip(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = streamlit_command("127.0.0.1", 8600)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    for option in (
        "--browser.gatherUsageStats=false",
        "--server.headless=true",
        "--server.fileWatcherType=none",
        "--server.port=8600",
        "--browser.serverAddress=127.0.0.1",
    ):
        assert option in command
    env = dashboard_environment(settings)
    assert env["SHOPFLOW_HOME"] == str(settings.home.resolve())
    # The dashboard reads the warehouse only: it is never handed the orders API token.
    assert "SHOPFLOW_ORDERS_API_TOKEN" not in env
    for key, value in env.items():
        if key.startswith("SHOPFLOW_"):
            monkeypatch.setenv(key, value)
    assert load_settings() == settings.model_copy(update={"home": settings.home.resolve()})


# -- the real server in headless Chromium --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(settings: Settings, warehouse: Path, tmp_path: Path) -> Iterator[str]:
    """`shopflow dashboard` on a free port, as its own process group; yields its URL."""
    port = _free_port()
    log = tmp_path / "dashboard.log"
    entry = (
        "import typer; from shopflow.cli.dashboard import register; "
        "app = typer.Typer(); app.callback()(lambda: None); register(app); app()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env["SHOPFLOW_HOME"] = str(settings.home)
    # The shop is Indian: daily charts dated in Kolkata (e16, 19:00 UTC on DAY2, is on DAY2 + 1).
    env["SHOPFLOW_REPORTING_TIMEZONE"] = "Asia/Kolkata"
    # One live event, as the stream would have written it, for the "last minutes" panel.
    write_live_file(settings, "part-00000", [("live-1", "order", datetime.now(UTC))])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", entry, "dashboard", "--port", str(port), "--host", "127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=settings.home.parent,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urlopen(url + "_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "dashboard did not start:\n" + log.read_text()
            time.sleep(0.3)
        assert f"shopflow dashboard: {url}" in log.read_text()
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.integration
def test_dashboard_renders_its_charts_in_headless_chromium(served: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    outside: list[str] = []
    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.on(
                    "console",
                    lambda msg: (
                        errors.append(f"console {msg.type}: {msg.text}")
                        if msg.type == "error"
                        else None
                    ),
                )
                page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
                context.on(
                    "request",
                    lambda req: (
                        outside.append(req.url)
                        if urlparse(req.url).hostname not in {"127.0.0.1", "localhost", None}
                        and urlparse(req.url).scheme in {"http", "https", "ws", "wss"}
                        else None
                    ),
                )
                page.goto(served, wait_until="domcontentloaded")
                # Eight charts (live panel, three top products, spend, visitors, orders,
                # traffic), each drawn by Vega as an SVG with marks inside.
                page.wait_for_function(
                    """sel => [...document.querySelectorAll(sel)].filter(
                        c => c.querySelector('svg .mark-rect')).length >= 8""",
                    arg=CHARTS,
                    timeout=60_000,
                )
                page.wait_for_load_state("networkidle")
                assert page.locator(CHARTS).count() == 8
                expected = (
                    "shopflow dashboard",
                    "Data freshness",
                    "latest event: 2026-11-26 19:00:00 UTC",
                    "Top products",
                    "Average spend per session",
                    "₹64.29",
                    "Unique visitors",
                    "Orders by date",
                    "Daily traffic",
                    "Last minutes (live)",
                    "Events in the last 15 min",
                    "re-read every 5 s",
                )
                # Streamlit streams elements over its websocket: on a loaded machine the figures
                # can arrive after the charts, so wait for the text rather than read it once.
                # On a time-out the assertions below name what is missing.
                with contextlib.suppress(PlaywrightTimeoutError):
                    page.wait_for_function(
                        "texts => texts.every(t => document.body.innerText.includes(t))",
                        arg=list(expected),
                        timeout=60_000,
                    )
                body = page.locator("body").inner_text()
                for text in expected:
                    assert text in body, text
                assert "Traceback" not in body
                # No chart runs past the right edge of a 1400-px window (the third top-products
                # chart once did): every drawing's right edge within its chart's container.
                overflow = page.evaluate(
                    """sel => [...document.querySelectorAll(sel)].flatMap(c => {
                        const box = c.getBoundingClientRect();
                        return [...c.querySelectorAll('canvas, svg.marks')]
                            .map(d => d.getBoundingClientRect().right - Math.min(box.right, 1400))
                            .filter(over => over > 1);
                    })""",
                    CHARTS,
                )
                assert overflow == [], f"charts cut off at the right by {overflow} px"
                # Chart order: live panel, then Most sold, Most wishlisted, Most returned, ...
                charts = page.locator(CHARTS)
                returned = charts.nth(3)
                assert "Most returned" in (returned.text_content() or "")
                box = returned.locator("svg.marks").bounding_box()
                assert box is not None
                assert box["x"] >= 0 and box["x"] + box["width"] <= 1400, box
                # The spend histogram is several real bars, not one tall one: each bar at least
                # a fifth as tall as the tallest (tiny lake: the two users who spent, u1 at
                # 25 and u4 at 200 INR per session, in two bins; u2 and u3 are not drawn).
                spend = charts.nth(4)
                assert "log-scale bins" in (spend.text_content() or "")
                heights = spend.evaluate(
                    """c => [...c.querySelectorAll('.mark-rect path')]
                        .map(b => b.getBoundingClientRect().height)"""
                )
                tallest = max(heights)
                assert len([h for h in heights if h >= tallest / 5]) >= 2, heights
                assert "2 users who spent; 2 who spent nothing" in (spend.text_content() or "")
                # A daily chart dated in Kolkata: 2026-11-27 holds e16 (19:00 UTC on the 26th).
                traffic = charts.nth(7)
                labels = traffic.text_content() or ""
                assert "date (Asia/Kolkata)" in labels, labels
                assert "Nov 27" in labels, labels
                # Streamlit scrolls inside its own container: grow the window to fit the page.
                height = page.evaluate(
                    "() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
                )
                page.set_viewport_size({"width": 1400, "height": min(int(height) + 100, 6000)})
                page.wait_for_timeout(500)
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert errors == []
    assert outside == []


def test_port_in_use_is_one_line(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from shopflow.cli.dashboard import register
    from shopflow.errors import ShopflowError

    monkeypatch.setenv("SHOPFLOW_HOME", str(settings.home))
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    register(app)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["dashboard", "--port", str(port)])
    assert isinstance(result.exception, ShopflowError)
    assert f"cannot serve the dashboard on 127.0.0.1:{port}" in str(result.exception)
    assert "\n" not in str(result.exception)
