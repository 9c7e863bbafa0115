"""The Dataproc artefact on a real multi-process Spark cluster: a standalone master and two workers
(`shopflow.services.spark_cluster`, as `make spark-cluster-up` starts them), the README's
submission with only the master changed (and a driver result limit that a collected output
would break), and a warehouse identical to a local run's.

    spark-submit --master spark://127.0.0.1:PORT --py-files shopflow.zip entrypoint.py --hour H

The driver's Python has only the compiled distributions runtime-provided.txt lists (shopflow
comes from the zip); the lake is a small simulator raw zone landed by the landing's own code. The
local run is `shopflow etl --hour H` on the local profile's engine (DuckDB) over the same raw
zone; both lakes are loaded with `shopflow load`'s gated load and every warehouse table and metric
view compared. The master's JSON and each worker's prove where the work ran.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.etl_engines import RawZone, fresh_lake, write_raw_zone

from shopflow.quality import gated_load
from shopflow.services.probes import free_ports
from shopflow.services.processes import group_alive
from shopflow.services.spark_cluster import (
    ClusterConfig,
    alive_workers,
    get_json,
    master_state,
    running_pid,
    start_cluster,
    stop_cluster,
)
from shopflow.settings import Settings
from shopflow.transform.engine import open_etl_session
from shopflow.transform.jobs import run_etl
from shopflow.transform.requests import etl_request
from tests.integration.test_engine_parity import _curated, _warehouse, assert_same
from tests.packaging.conftest import SPARK_HOME, SPARK_SUBMIT, clean_env, cluster_python

pytestmark = pytest.mark.integration

#: Measured only on a shared, busy machine (load average 13-19 on 2 cores): the session's setup
#: (wheel, wheelhouse, artefact) took 135-350 s and the test's body over 550 s, past the suite's
#: default 900 s for the two together.
TIMEOUT_SECONDS = 1800

EVENTS = 3000
HOUR = "2026-11-02T12"  # the raw zone's second day; the run also takes everything new (day one)


def _answer(url: str, timeout_seconds: float = 120) -> dict[str, Any]:
    """A Spark UI's JSON document; asked again while the UI is slow to answer (a loaded machine
    made a single 2 s request time out in CI)."""
    deadline = time.monotonic() + timeout_seconds
    while (document := get_json(url, timeout=10)) is None:
        assert time.monotonic() < deadline, f"{url} did not answer in {timeout_seconds:.0f} s"
        time.sleep(1)
    assert isinstance(document, dict), document
    return document


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterConfig]:
    """A running master and two 1-core workers on free ports; stopped afterwards, leaving no
    process behind (nor any executor in their process groups)."""
    master, ui, *workers = free_ports(4)
    config = ClusterConfig(
        run_dir=tmp_path / "spark-cluster",
        master_port=master,
        master_ui_port=ui,
        worker_ui_ports=tuple(workers),
        worker_memory="1g",
    )
    pids: list[int | None] = []
    try:
        state = start_cluster(config)
        pids = [running_pid(config, name) for name in config.names]
        assert [w["host"] for w in alive_workers(state)] == ["127.0.0.1"] * 2
        yield config
    finally:
        stop_cluster(config)
    assert None not in pids and len(set(pids)) == 3
    assert [group_alive(pid) for pid in pids if pid is not None] == [False] * 3
    assert master_state(config) is None


@pytest.mark.timeout(TIMEOUT_SECONDS)
def test_artefact_on_the_standalone_cluster_gives_the_local_runs_warehouse(
    artefact: Path,
    wheelhouse: Path,
    cluster: ClusterConfig,
    settings: Settings,
    tmp_path: Path,
) -> None:
    zone: RawZone = write_raw_zone(
        tmp_path / "raw" / "lake", EVENTS, seed=7, days=2, initial_users=300
    )
    python = cluster_python(artefact, wheelhouse, tmp_path / "runtime")
    homes = {run: fresh_lake(zone, tmp_path / "homes" / run).parent for run in ("cluster", "local")}

    out = artefact / "dataproc"
    command = [
        str(SPARK_SUBMIT),
        "--master", cluster.master_url,
        # No output is collected to the driver (issue 14.1): results over 128 KiB in one job
        # fail the run (the 3000 events' outputs collected whole, as before, failed it at
        # 217 KiB). Broadcast joins are off: Spark collects their small side on the driver,
        # bounded by the catalogue and the broadcast threshold, not by the events.
        "--conf", "spark.driver.maxResultSize=128k",
        "--conf", "spark.sql.autoBroadcastJoinThreshold=-1",
        # Partition folders listed on the driver, as local sessions do: above 32 paths Spark lists
        # them with a job whose results (file listings, ~130 KiB for this lake) count too.
        "--conf", "spark.sql.sources.parallelPartitionDiscovery.threshold=100000",
        "--py-files", str(out / "shopflow.zip"),
        str(out / "entrypoint.py"),
        "--hour", HOUR,
    ]  # fmt: skip
    env = clean_env(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=str(python),
        PYSPARK_DRIVER_PYTHON=str(python),
        SHOPFLOW_HOME=str(homes["cluster"]),
    )
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900
    )
    output = done.stdout + done.stderr
    # spark-submit passes the Python driver's stderr on to its stdout, between Spark's log lines.
    python_lines = [line for line in done.stdout.splitlines() if not line[:2].isdigit()]
    errors = [line for line in python_lines if "Error" in line or "Exception:" in line]
    assert done.returncode == 0, "\n".join([*errors[:10], "...", *python_lines[-20:]])
    assert f"etl (hour {HOUR}): event dates 2026-11-01, 2026-11-02;" in output, output[-4000:]

    # The work ran on the cluster: the master finished the application, each worker ran one of
    # its executors, and each executor's own log has tasks it finished.
    state = _answer(cluster.master_json_url)
    (app,) = state["completedapps"]
    assert (app["name"], app["state"], app["cores"]) == ("shopflow-etl", "FINISHED", 2)
    for index, name in enumerate(cluster.names[1:]):
        worker = _answer(cluster.worker_json_url(index))
        assert [e["appid"] for e in worker["finishedexecutors"]] == [app["id"]], name
        logs = list((cluster.run_dir / name / app["id"]).glob("*/stderr"))
        assert len(logs) == 1, name
        assert "INFO Executor: Finished task" in logs[0].read_text(), name

    local = settings.model_copy(update={"home": homes["local"], "etl_engine": "duckdb"})
    on_cluster = settings.model_copy(update={"home": homes["cluster"]})
    run_etl(open_etl_session(local, app_name="local"), local, etl_request(hour=HOUR))

    cluster_tables, local_tables = _curated(on_cluster), _curated(local)
    assert sorted(cluster_tables) == sorted(local_tables)
    for name in cluster_tables:
        assert_same(name, cluster_tables[name], local_tables[name])
    assert cluster_tables["user_behavior"].num_rows == EVENTS

    for home in (on_cluster, local):
        gated_load(home)
    cluster_wh, local_wh = _warehouse(on_cluster), _warehouse(local)
    assert sorted(cluster_wh) == sorted(local_wh)
    assert {"user_behavior", "metric_top_products", "metric_daily_traffic"} <= set(cluster_wh)
    for name in cluster_wh:
        assert cluster_wh[name].num_rows > 0, name
        assert_same(f"warehouse {name}", cluster_wh[name], local_wh[name])
