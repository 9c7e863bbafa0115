"""The Dataproc artefact through spark-submit: a Spark standalone cluster next to local[2].

Set-up (not timed): the raw zone of `etl_engines` (same simulator, same cache under
`<SHOPFLOW_HOME>/bench/etl-engines/`, default 1M valid events over 7 simulated days, seed 42); the
artefact of `make dataproc-artifact` (built into the scratch folder for this Python, or
`--param artifact=DIR` for a built `dist/`); a standalone cluster of `shopflow.services.spark_cluster`
(a master and two workers of 1 core each, on free ports of 127.0.0.1), started once and kept for the
run, as a Dataproc cluster would be.

Cases, each a fresh `spark-submit` process on a fresh lake over the same raw zone, timed from the
spawn to its exit (JVM and Python start, the work, shutdown), the same command but for `--master`:

    spark-submit --master M --driver-memory D [--executor-memory E] --py-files shopflow.zip \
        entrypoint.py --hour H

* `local[2]`: driver and executor threads in one JVM, 2 cores.
* `cluster`: `spark://127.0.0.1:PORT`: the driver here, one 1-core executor (E, default 1g,
  spark-submit's own) on each worker; tasks, shuffles and the cached intermediates cross process
  boundaries. The driver only plans, lists and commits: the executors write every output
  (`shopflow.transform.outputs`), so its peak should not grow with the data.

The driver memory D is `--param spark_memory` (default: the `etl_engines` Spark case's for the
size; pass the same value at every size to compare driver peaks), the executors' E
`--param executor_memory` (workers get E plus 1g). The hour H is the raw zone's last day at 12:00, and a
run also takes everything new since the last run, so each case recomputes every date (the same work
as `etl_engines`' first, full run). The driver's Python is this interpreter with the zip first on
its path. Peak RSS is the spark-submit process tree's (driver JVM + Python); for `cluster` the
executors' peak (the workers' children) is in the notes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Final

from bench._harness import BenchContext, BenchResult, Row, benchmark
from bench._memory import tree_rss_bytes
from bench.etl_engines import START, RawZone, cached_raw_zone, fresh_lake, spark_memory
from shopflow.services.probes import free_ports
from shopflow.services.spark_cluster import (
    ClusterConfig,
    pyspark_home,
    running_pid,
    start_cluster,
    stop_cluster,
)
from shopflow.settings import load_settings

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_CASES: Final = ("local[2]", "cluster")
_ROWS = re.compile(r"^\s*(events_clean|user_behavior)\s+([\d,]+) rows", re.MULTILINE)


def build_artefact(dist: Path) -> Path:
    """`make dataproc-artifact` for this Python into `dist`; the `dataproc/` folder."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    make = ["make", "-C", str(ROOT), "dataproc-artifact", f"DIST={dist}"]
    make += [f"DATAPROC_PYTHON={version}", f"BUILD_PYTHON={sys.executable}"]
    subprocess.run(make, check=True, capture_output=True)
    return dist / "dataproc"


def _children_rss(pids: list[int]) -> int:
    """The summed RSS of the descendants (not the processes themselves) of `pids`."""
    total = 0
    for pid in pids:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += sum(
                    tree_rss_bytes(int(c)) for c in (task / "children").read_text().split()
                )
        except OSError:
            continue
    return total


class _Peak:
    """The peak of `measure()`, sampled every 0.2 s in a thread."""

    def __init__(self, measure: Callable[[], int]) -> None:
        self.measure, self.peak = measure, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.measure())
            self._stop.wait(0.2)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _submit(
    master: str,
    memory: str,
    executor_memory: str | None,
    artefact: Path,
    home: Path,
    hour: str,
    workers: list[int],
) -> tuple[float, int, int, str]:
    """One timed spark-submit: wall seconds, driver-tree and executors' peak RSS, its output."""
    executor = ["--executor-memory", executor_memory] if executor_memory else []
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master", master,
        "--driver-memory", memory,
        *executor,
        "--conf", "spark.ui.enabled=false",
        "--py-files", str(artefact / "shopflow.zip"),
        str(artefact / "entrypoint.py"),
        "--hour", hour,
    ]  # fmt: skip
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SHOPFLOW_")
    }
    env |= {
        "SPARK_HOME": str(pyspark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SHOPFLOW_HOME": str(home),
    }
    log = home.parent / f"{home.name}.log"
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home.parent
        )
        with (
            _Peak(lambda: tree_rss_bytes(process.pid)) as driver,
            _Peak(lambda: _children_rss(workers)) as executors,
        ):
            code = process.wait()
    wall = time.perf_counter() - started
    output = log.read_text()
    if code != 0:
        tail = [line for line in output.splitlines() if line.strip()][-3:]
        raise RuntimeError(f"spark-submit --master {master} exited {code}: {' | '.join(tail)}")
    return wall, driver.peak, executors.peak, output


def _gib(size: str) -> int:
    """Whole GiB of a Spark size such as `4g` or `2048m`."""
    number, unit = int(size[:-1]), size[-1].lower()
    return number if unit == "g" else max(1, number // 1024)


@benchmark(
    "spark_cluster",
    title="The Dataproc artefact on a Spark standalone cluster (2 workers x 1 core) and local[2]",
    description=__doc__ or "",
)
def run(ctx: BenchContext) -> BenchResult:
    """Start the cluster, run each case `repeats` times (alternating), stop the cluster."""
    events = ctx.int_param("events", 1_000_000, 20_000)
    days = ctx.int_param("days", 7, 2)
    seed = ctx.int_param("seed", 42, 42)
    repeats = ctx.int_param("repeats", 1, 1)
    cases = ctx.list_param("cases", DEFAULT_CASES)
    memory = spark_memory(events, ctx.params.get("spark_memory"))
    executor_memory = ctx.params.get("executor_memory")
    base = load_settings()
    cache = Path(ctx.params.get("cache", str(base.home / "bench" / "etl-engines")))
    zone: RawZone = cached_raw_zone(cache, events, seed=seed, days=days)
    built = time.perf_counter()
    artefact = (
        Path(ctx.params["artifact"]) / "dataproc"
        if "artifact" in ctx.params
        else build_artefact(ctx.scratch / "dist")
    )
    build_seconds = time.perf_counter() - built
    hour = f"{START + timedelta(days=days - 1, hours=12):%Y-%m-%dT%H}"
    master, ui, *worker_ui = free_ports(4)
    config = ClusterConfig(
        run_dir=ctx.scratch / "cluster",
        master_port=master,
        master_ui_port=ui,
        worker_ui_ports=tuple(worker_ui),
    )
    if executor_memory:
        config = dataclasses.replace(config, worker_memory=f"{_gib(executor_memory) + 1}g")
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        start_cluster(config)
        cluster_start = time.perf_counter() - started
        workers = [pid for n in config.names[1:] if (pid := running_pid(config, n)) is not None]
        for attempt in range(repeats):
            for case in cases:
                url = config.master_url if case == "cluster" else case
                # No brackets in the path: fsspec would read `[2]` as a glob pattern.
                folder = re.sub(r"[^A-Za-z0-9-]", "", case)
                home = fresh_lake(zone, ctx.scratch / f"{folder}-{attempt}").parent
                wall, driver_peak, executors_peak, output = _submit(
                    url, memory, executor_memory, artefact, home, hour, workers
                )
                counts = dict(_ROWS.findall(output))
                notes = (
                    f"{counts.get('events_clean', '?')} events_clean / "
                    f"{counts.get('user_behavior', '?')} user_behavior rows"
                )
                if case == "cluster":
                    notes += f"; executors' peak RSS {executors_peak / 1024**2:,.0f} MiB"
                rows.append(
                    Row(
                        case=f"{case}-{zone.valid_events // 1000}k",
                        params={"events": zone.valid_events, "master": url},
                        wall_seconds=wall,
                        items=zone.valid_events,
                        peak_rss_bytes=driver_peak,
                        notes=notes,
                    )
                )
                shutil.rmtree(home, ignore_errors=True)
    finally:
        stop_cluster(config)
    return BenchResult(
        rows=rows,
        settings={
            "raw zone": f"{zone.valid_events:,} valid events over {zone.days} simulated days, "
            f"seed {zone.seed}: {zone.landed_rows:,} raw rows in {zone.event_files:,} files "
            "(cached, shared with etl_engines)",
            "command": f"spark-submit --master M --driver-memory {memory} "
            + (f"--executor-memory {executor_memory} " if executor_memory else "")
            + f"--py-files shopflow.zip entrypoint.py --hour {hour}",
            "cluster": f"standalone master + {len(config.worker_ui_ports)} workers x "
            f"{config.worker_cores} core, {config.worker_memory} each, on 127.0.0.1; started in "
            f"{cluster_start:.0f}s (not timed in the rows)",
            "artefact": f"make dataproc-artifact ({build_seconds:.0f}s, not timed)"
            if "artifact" not in ctx.params
            else str(artefact),
        },
        notes=(
            "wall s: from spawning spark-submit to its exit (JVM and Python start, the ETL, "
            "shutdown); the cluster itself was already running.",
            "peak RSS: the spark-submit process tree (driver JVM + Python driver), sampled every "
            "0.2 s; executors are the workers' children and are listed in the notes.",
        ),
    )
