"""`shopflow airflow up`, for real: the scheduler runs `shopflow_hourly` for a simulated hour by
itself, the REST API reports it, the UI lists the four DAGs, and `down` leaves no process behind."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from bench._faults.common import run as shopflow
from bench.etl_engines import RawZone, write_raw_zone

from shopflow.orchestration.local_airflow import _group_members
from tests.service_fixtures import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
DAG_IDS = ("shopflow_catalog", "shopflow_events_health", "shopflow_hourly", "shopflow_orders")
RUN_ID = "simulated-2026-11-01T10"


@pytest.fixture(scope="module")
def raw_zone(tmp_path_factory: pytest.TempPathFactory) -> RawZone:
    lake = tmp_path_factory.mktemp("airflow-raw") / "lake"
    return write_raw_zone(lake, 4000, seed=5, days=2, initial_users=200)


def processes_of(airflow_home: Path) -> list[int]:
    """Live processes of the process group `up` recorded (Airflow renames its processes and
    rewrites their environment, so the group is what identifies them all)."""
    return _group_members(int((airflow_home / "standalone.pid").read_text().split()[0]))


@pytest.fixture
def airflow(raw_zone: RawZone, tmp_path: Path) -> Iterator[tuple[dict[str, str], str, Path, str]]:
    """Airflow started by `shopflow airflow up` on a home holding a simulated raw zone."""
    home = tmp_path / "home"
    shutil.copytree(raw_zone.lake, home / "lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOPFLOW_", "AIRFLOW"))}
    env |= {
        "SHOPFLOW_HOME": str(home),
        "SHOPFLOW_AIRFLOW_PORT": str(free_port()),
        # Only the DAG under test runs (the others would pull from the shared services).
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }
    up = shopflow(env, "airflow", "up")
    assert up.returncode == 0, up.stderr[-3000:]
    url = up.stdout.split("Airflow UI and REST API: ")[1].split()[0]
    password = up.stdout.split("login: admin / ")[1].split()[0]
    try:
        yield env, url, home, password
    finally:
        down = shopflow(env, "airflow", "down")
        assert down.returncode == 0, down.stderr[-2000:]


def api(url: str, password: str) -> httpx.Client:
    token = httpx.post(
        f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30
    ).json()["access_token"]
    return httpx.Client(
        base_url=f"{url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def run_hour_to_the_end(client: httpx.Client) -> dict[str, Any]:
    created = client.post(
        "/dags/shopflow_hourly/dagRuns",
        json={
            "dag_run_id": RUN_ID,
            "logical_date": "2026-11-01T10:00:00Z",
            "data_interval_start": "2026-11-01T10:00:00Z",
            "data_interval_end": "2026-11-01T11:00:00Z",
        },
    )
    assert created.status_code == 200, created.text
    assert client.patch("/dags/shopflow_hourly", json={"is_paused": False}).status_code == 200
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = client.get("/dags/shopflow_hourly/dagRuns").json()["dag_runs"]
        for run in runs:
            # Unpausing also schedules the latest real hour, whose events will never land in
            # this home; it would hold the one active run slot (max_active_runs=1) for 30 min.
            if run["dag_run_id"] != RUN_ID and run["state"] in ("queued", "running"):
                client.patch(
                    f"/dags/shopflow_hourly/dagRuns/{run['dag_run_id']}", json={"state": "failed"}
                )
        ours = next(r for r in runs if r["dag_run_id"] == RUN_ID)
        if ours["state"] in ("success", "failed"):
            return dict(ours)
        time.sleep(2)
    raise AssertionError("the scheduler did not finish the simulated hour within 240 s")


def test_the_local_scheduler_runs_the_hourly_dag_by_itself(
    airflow: tuple[dict[str, str], str, Path, str],
) -> None:
    env, url, home, password = airflow
    airflow_home = home / "airflow"
    pid_file = (airflow_home / "standalone.pid").read_text()
    assert len(processes_of(airflow_home)) > 3, "Airflow's parts are not running"
    with api(url, password) as client:
        dags = client.get("/dags").json()["dags"]
        assert sorted(d["dag_id"] for d in dags) == list(DAG_IDS)
        run = run_hour_to_the_end(client)
        assert run["state"] == "success", run
        tasks = client.get(f"/dags/shopflow_hourly/dagRuns/{RUN_ID}/taskInstances").json()
        states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
        assert set(states.values()) == {"success"}, states
        backfill_two_dates_through_airflow(client)
    assert_same_as_shopflow_backfill(home, env)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM user_behavior "
            "WHERE date = DATE '2026-11-01'"
        ).fetchone()
    assert rows is not None and rows[0] == rows[1] > 0
    status = shopflow(env, "airflow", "status")
    assert "Airflow running" in status.stdout and "scheduler healthy" in status.stdout
    screenshot_the_dag_list(url, password)
    down = shopflow(env, "airflow", "down")
    assert down.returncode == 0 and "Airflow stopped" in down.stdout
    (airflow_home / "standalone.pid").write_text(pid_file)  # `down` removed it; look again
    assert processes_of(airflow_home) == []
    assert "Airflow stopped" in shopflow(env, "airflow", "status").stdout


def backfill_two_dates_through_airflow(client: httpx.Client) -> None:
    """An Airflow backfill of 2026-11-01 22:00 to 2026-11-02 01:00 (three hourly runs)."""
    created = client.post(
        "/backfills",
        json={
            "dag_id": "shopflow_hourly",
            "from_date": "2026-11-01T22:00:00Z",
            "to_date": "2026-11-02T00:00:00Z",
            "max_active_runs": 1,
            "reprocess_behavior": "completed",
        },
    )
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = client.get("/dags/shopflow_hourly/dagRuns").json()["dag_runs"]
        backfills = [r for r in runs if r["run_type"] == "backfill"]
        if len(backfills) == 3 and all(r["state"] in ("success", "failed") for r in backfills):
            assert {r["state"] for r in backfills} == {"success"}, backfills
            return
        time.sleep(2)
    raise AssertionError("the Airflow backfill did not finish within 240 s")


def assert_same_as_shopflow_backfill(home: Path, env: dict[str, str]) -> None:
    """The backfilled dates equal `shopflow backfill` + `shopflow load` of the same lake."""
    reference = home.parent / "reference"
    shutil.copytree(home / "lake" / "raw", reference / "lake" / "raw")
    ref_env = env | {"SHOPFLOW_HOME": str(reference)}
    for args in (("backfill", "--start", "2026-11-01", "--end", "2026-11-02"), ("load",)):
        done = shopflow(ref_env, *args)
        assert done.returncode == 0, done.stderr[-2000:]
    query = (
        "SELECT * FROM {table} WHERE date BETWEEN DATE '2026-11-01' AND DATE '2026-11-02' "
        "ORDER BY ALL"
    )
    for table in ("user_behavior", "events_clean", "orders_enriched", "traffic_hourly"):
        rows = []
        for where in (home, reference):
            with duckdb.connect(str(where / "warehouse.duckdb"), read_only=True) as conn:
                rows.append(conn.execute(query.format(table=table)).fetchall())
        assert rows[0] == rows[1] and rows[0], table


def screenshot_the_dag_list(url: str, password: str) -> None:
    """Log in to the UI in headless Chromium; the DAG list shows all four; saved as an artefact."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/", wait_until="domcontentloaded")
            page.locator("input").nth(0).fill("admin")
            page.locator("input").nth(1).fill(password)
            page.keyboard.press("Enter")
            page.wait_for_url(f"{url}/", timeout=60_000)
            page.goto(f"{url}/dags", wait_until="domcontentloaded")
            for dag_id in DAG_IDS:
                page.get_by_text(dag_id, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "airflow-dags.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "airflow-dags.png").stat().st_size > 10_000
