"""The fault suite: the real pipeline under injected faults, checked against a recount of the lake.

Each scenario runs the `shopflow` command line in child processes against a fresh
`SHOPFLOW_HOME` (local profile, DuckDB engine, real Kafka broker where a bus is needed), injects
its fault many times over, lets the pipeline finish normally, and then compares the warehouse's
`user_behavior` with the events that should be there: a recount of the raw lake (or, for the
streaming scenario, the valid events published). `lost` = expected events missing from the
warehouse, `doubled` = events present more than once; `errors seen` = the distinct lines users
saw on stderr. `python -m bench faults` runs the full sizes and rewrites `RELIABILITY.md`; the
small sizes run in `make test` (tests/faults).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from bench._harness import BenchContext, BenchResult, Row, benchmark
from bench.etl_engines import RawZone, write_raw_zone

REPO: Final = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class Outcome:
    """What one scenario did and found."""

    scenario: str
    injections: int = 0
    events_in: int = 0
    in_warehouse: int = 0
    lost: int = 0
    doubled: int = 0
    dead_lettered: int = 0
    errors_seen: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing doubled, and every scenario-specific check held."""
        return self.lost == 0 and self.doubled == 0 and not self.problems

    def row(self) -> dict[str, object]:
        """The RELIABILITY.md row."""
        return {
            "scenario": self.scenario,
            "injections": self.injections,
            "events in": self.events_in,
            "in warehouse": self.in_warehouse,
            "lost": self.lost,
            "doubled": self.doubled,
            "dead-lettered": self.dead_lettered,
            "errors seen by the user": " / ".join(self.errors_seen) or "none",
            "verdict": "pass" if self.passed else "FAIL: " + "; ".join(self.problems),
        }


# ---------------------------------------------------------------------------------------------
# Running the command line and reading what it left


def shopflow_env(home: Path, **settings: str) -> dict[str, str]:
    """This process's environment without SHOPFLOW_*, plus a home and the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update({"SHOPFLOW_HOME": str(home), "SHOPFLOW_ETL_ENGINE": "duckdb"})
    env.update({f"SHOPFLOW_{k.upper()}": v for k, v in settings.items()})
    return env


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`shopflow ARGS` as a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "shopflow.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`shopflow ARGS` to the end."""
    return subprocess.run(
        [sys.executable, "-m", "shopflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def user_error(result: subprocess.CompletedProcess[str], outcome: Outcome) -> None:
    """Record what a failed command showed; a traceback or a multi-line error is a problem."""
    lines = result.stderr.strip().splitlines()
    if "Traceback" in result.stderr or len(lines) != 1:
        outcome.problems.append(f"`{' '.join(result.args[3:])}` printed {len(lines)} lines")
        return
    text = lines[0].removeprefix("shopflow: error: ")
    generic = text.split(":")[0][:80]
    if generic not in outcome.errors_seen:
        outcome.errors_seen.append(generic)


def must_succeed(result: subprocess.CompletedProcess[str], outcome: Outcome) -> bool:
    """Whether the command succeeded; a failure is a problem of the scenario."""
    if result.returncode == 0:
        return True
    tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
    outcome.problems.append(f"`{' '.join(result.args[3:])}` exited {result.returncode}: {tail}")
    return False


def warehouse_tables(home: Path) -> dict[str, pa.Table]:
    """Every warehouse table, rows sorted, for comparing two warehouses."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        tables = {}
        for name in names:
            table = conn.sql(f'SELECT * FROM "{name}"').to_arrow_table()
            tables[name] = table.sort_by([(c, "ascending") for c in table.column_names])
        return tables


def warehouse_event_ids(home: Path) -> Counter[str]:
    """How often each event_id is in the warehouse's user_behavior."""
    path = home / "warehouse.duckdb"
    if not path.exists():
        return Counter()
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("SELECT event_id FROM user_behavior").fetchall()
    return Counter(r[0] for r in rows)


def raw_event_ids(lake: Path) -> set[str]:
    """Distinct event ids of the raw zone's readable files: the recount the warehouse must equal."""
    root = lake / "raw" / "events"
    files = [str(p) for p in root.rglob("*.parquet") if not p.name.startswith((".", "_"))]
    if not files:
        return set()
    table = ds.dataset(files, format="parquet").to_table(columns=["event_id"])
    return set(table.column("event_id").to_pylist())


def compare(outcome: Outcome, expected: set[str], home: Path) -> None:
    """Fill lost / doubled / in_warehouse from the warehouse against `expected`."""
    found = warehouse_event_ids(home)
    outcome.events_in = len(expected)
    outcome.in_warehouse = sum(found.values())
    outcome.lost = len(expected - set(found))
    outcome.doubled = sum(1 for n in found.values() if n > 1)
    extra = set(found) - expected
    if extra:
        outcome.problems.append(f"{len(extra)} events in the warehouse that were never sent")


def copy_raw_zone(zone: RawZone, home: Path) -> Path:
    """A fresh home whose lake holds a private copy of the raw zone (scenarios move files)."""
    if home.exists():
        shutil.rmtree(home)
    lake = home / "lake"
    lake.mkdir(parents=True)
    shutil.copytree(Path(zone.lake) / "raw", lake / "raw")
    return lake


def reference_warehouse(zone: RawZone, scratch: Path) -> dict[str, pa.Table]:
    """The warehouse an uninterrupted `etl` + `load` builds from the raw zone."""
    home = scratch / "reference"
    copy_raw_zone(zone, home)
    env = shopflow_env(home)
    for args in (("etl",), ("load",)):
        result = run(env, *args)
        if result.returncode != 0:
            raise RuntimeError(f"reference `shopflow {args[0]}` failed: {result.stderr[-2000:]}")
    return warehouse_tables(home)


def same_warehouse(outcome: Outcome, reference: dict[str, pa.Table], home: Path) -> None:
    """Every table of the warehouse under `home` equals the reference's."""
    tables = warehouse_tables(home)
    if sorted(tables) != sorted(reference):
        outcome.problems.append("the warehouse tables differ from an uninterrupted run's")
        return
    for name, table in reference.items():
        if not tables[name].equals(table):
            outcome.problems.append(f"table {name} differs from an uninterrupted run's")


# ---------------------------------------------------------------------------------------------
# Scenarios


def kill_mid_run(
    env: dict[str, str], args: tuple[str, ...], rng: random.Random, full_seconds: float
) -> bool:
    """Start `shopflow ARGS`, SIGKILL it at a random moment of a normal run's length; whether the
    kill hit it while it was still running (it did not finish first)."""
    process = start(env, *args)
    time.sleep(rng.uniform(0.15, 0.9) * full_seconds)
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return alive and process.returncode == -signal.SIGKILL


def _timed(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    result = run(env, *args)
    if result.returncode != 0:
        raise RuntimeError(f"`shopflow {' '.join(args)}` failed: {result.stderr[-2000:]}")
    return time.monotonic() - started


def scenario_kill_etl_and_load(zone: RawZone, scratch: Path, kills: int, seed: int) -> Outcome:
    """kill -9 of `shopflow etl`, then of `shopflow load`, `kills` times each; then normal runs."""
    outcome = Outcome(f"kill -9 of etl and of load, {kills} times each")
    started = time.monotonic()
    reference = reference_warehouse(zone, scratch)
    rng = random.Random(seed)
    home = scratch / "kills"
    lake = copy_raw_zone(zone, home)
    env = shopflow_env(home)
    # A normal run's length in this very home, so kills land inside it (then undone below).
    etl_seconds = _timed(env, "etl")
    load_seconds = _timed(env, "load")
    copy_raw_zone(zone, home)
    for args, seconds in ((("etl",), etl_seconds), (("load",), load_seconds)):
        if args == ("load",) and not must_succeed(run(env, "etl"), outcome):
            break
        for _ in range(kills):
            outcome.injections += 1
            if not kill_mid_run(env, args, rng, seconds):
                outcome.problems.append(f"a kill of `shopflow {args[0]}` came after it finished")
    for args in (("etl",), ("load",)):
        must_succeed(run(env, *args), outcome)
    compare(outcome, raw_event_ids(lake), home)
    same_warehouse(outcome, reference, home)
    leftovers = [p for p in (lake / "curated").rglob(".*.tmp")]
    if leftovers:
        outcome.problems.append(f"{len(leftovers)} temp files left in curated/")
    outcome.seconds = time.monotonic() - started
    return outcome


def _inject_corrupt_files(lake: Path, rng: random.Random, rounds: int) -> int:
    """Truncated, garbage and wrong-schema files among the raw events; how many were injected."""
    files = sorted((lake / "raw" / "events").rglob("*.parquet"))
    injected = 0
    for n in range(rounds):
        victim = rng.choice(files)
        data = victim.read_bytes()
        folder = victim.parent
        (folder / f"truncated-{n}.parquet").write_bytes(data[: len(data) // 2])
        (folder / f"garbage-{n}.parquet").write_bytes(rng.randbytes(4096))
        table = pq.read_table(victim)
        price = table.schema.get_field_index("price")
        wrong = table.set_column(price, "price", pa.array(["cheap"] * table.num_rows))
        pq.write_table(wrong, folder / f"price-as-text-{n}.parquet")
        injected += 3
    return injected


def scenario_corrupt_raw_files(zone: RawZone, scratch: Path, rounds: int, seed: int) -> Outcome:
    """Truncated, garbage and wrong-schema Parquet files in the raw zone; then etl and load."""
    outcome = Outcome(f"corrupt files in the raw zone ({rounds} rounds of 3 kinds)")
    started = time.monotonic()
    home = scratch / "corrupt"
    lake = copy_raw_zone(zone, home)
    outcome.injections = _inject_corrupt_files(lake, random.Random(seed), rounds)
    env = shopflow_env(home)
    etl = run(env, "etl")
    if must_succeed(etl, outcome):
        if f"{outcome.injections} files quarantined" not in etl.stdout:
            outcome.problems.append("the run summary does not count the quarantined files")
        must_succeed(run(env, "load"), outcome)
    reasons = list((lake / "quarantine").rglob("*.reason.json"))
    outcome.dead_lettered = len(reasons)
    if len(reasons) != outcome.injections:
        outcome.problems.append(f"{len(reasons)} of {outcome.injections} files quarantined")
    if any(not json.loads(p.read_text()).get("reason") for p in reasons):
        outcome.problems.append("a quarantined file has no reason")
    # A second run finds nothing left to quarantine and still succeeds.
    again = run(env, "etl")
    if must_succeed(again, outcome) and "0 files quarantined" not in again.stdout:
        outcome.problems.append("a later run quarantined files again")
    compare(outcome, raw_event_ids(lake), home)
    outcome.seconds = time.monotonic() - started
    return outcome


def scenario_concurrent_runs(zone: RawZone, scratch: Path, attempts: int) -> Outcome:
    """A second `etl` and a `load` started while an `etl` runs: refused, naming the holder."""
    outcome = Outcome(f"a second etl and a load during an etl, {attempts} times")
    started = time.monotonic()
    reference = reference_warehouse(zone, scratch)
    home = scratch / "concurrent"
    lake = copy_raw_zone(zone, home)
    env = shopflow_env(home)
    for _ in range(attempts):
        first = start(env, "backfill", "--start", "2026-11-01", "--end", "2026-12-31")
        time.sleep(1.5)  # past start-up: the lock is taken before any lake write
        for args in (("etl",), ("load",)):
            outcome.injections += 1
            second = run(env, *args)
            if first.poll() is not None:
                outcome.problems.append("the first run finished before the second started")
            elif second.returncode == 0:
                outcome.problems.append(f"`shopflow {args[0]}` ran beside a running etl")
            elif "holds its writer lock" not in second.stderr or "backfill" not in second.stderr:
                outcome.problems.append(f"`shopflow {args[0]}` refused without naming the holder")
            else:
                user_error(second, outcome)
        _, err = first.communicate()
        if first.returncode != 0:
            outcome.problems.append(f"the first run failed: {err.strip()[-300:]}")
    for args in (("etl",), ("load",)):
        must_succeed(run(env, *args), outcome)
    compare(outcome, raw_event_ids(lake), home)
    same_warehouse(outcome, reference, home)
    outcome.seconds = time.monotonic() - started
    return outcome


def scenario_unreachable_services(scratch: Path) -> Outcome:
    """Every source and the warehouse unreachable: one line each, non-zero exit, nothing written."""
    outcome = Outcome("services unreachable at start (bus, orders API, shop DB, warehouse)")
    started = time.monotonic()
    home = scratch / "unreachable"
    home.mkdir(parents=True, exist_ok=True)
    dead = "127.0.0.1:1"
    cases: list[tuple[dict[str, str], tuple[str, ...]]] = [
        (
            {"bus": "kafka", "kafka_bootstrap_servers": dead},
            ("ingest", "events", "--max-seconds", "5"),
        ),
        ({"pubsub_emulator_host": dead}, ("ingest", "events", "--max-seconds", "5")),
        ({"orders_api_url": f"http://{dead}"}, ("ingest", "orders")),
        ({"source_db_url": f"postgresql://postgres@{dead}/shopflow"}, ("ingest", "catalog")),
        ({}, ("metrics",)),
        ({}, ("load",)),
        ({}, ("etl",)),
    ]
    for settings, args in cases:
        outcome.injections += 1
        result = run(shopflow_env(home, **settings), *args, timeout=300)
        if result.returncode == 0:
            outcome.problems.append(f"`shopflow {' '.join(args)}` succeeded against {dead}")
        else:
            user_error(result, outcome)
    written = [p for p in (home / "lake").rglob("*.parquet")] if (home / "lake").exists() else []
    if written:
        outcome.problems.append(f"{len(written)} lake files written by failed runs")
    outcome.seconds = time.monotonic() - started
    return outcome


#: Scenario sizes: small in `make test`, full in `python -m bench faults`.
SIZES: Final = {
    "small": {"events": 3000, "kills": 2, "rounds": 1, "attempts": 1},
    "full": {"events": 200_000, "kills": 10, "rounds": 10, "attempts": 5},
}


def run_suite(scratch: Path, size: str, seed: int = 7) -> list[Outcome]:
    """Every scenario at one size, in order."""
    sizes = SIZES[size]
    zone = write_raw_zone(scratch / "raw-zone" / "lake", sizes["events"], seed=seed, days=2)
    scenarios: list[Callable[[], Outcome]] = [
        lambda: scenario_kill_etl_and_load(zone, scratch, sizes["kills"], seed),
        lambda: scenario_corrupt_raw_files(zone, scratch, sizes["rounds"], seed),
        lambda: scenario_concurrent_runs(zone, scratch, sizes["attempts"]),
        lambda: scenario_unreachable_services(scratch),
    ]
    return [scenario() for scenario in scenarios]


def reliability_markdown(outcomes: list[Outcome], size: str, notes: list[str]) -> str:
    """RELIABILITY.md: the table and how it was measured."""
    rows = [o.row() for o in outcomes]
    header = list(rows[0])
    lines = [
        "# Reliability",
        "",
        "What the fault suite (`python -m bench faults`, `bench/faults.py`) found when it ran the "
        "real pipeline under injected faults. *lost*: events of the raw lake's recount (or "
        "published valid events) missing from the warehouse's `user_behavior`; *doubled*: events "
        "there more than once; *errors seen by the user*: the distinct one-line errors printed. "
        "The small size of every scenario runs in `make test` (`tests/faults/`).",
        "",
        f"Size: **{size}** ({', '.join(f'{k} {v:,}' for k, v in SIZES[size].items())}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[h]).replace("|", "\\|") for h in header) + " |")
    lines += ["", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines)


@benchmark(
    "faults",
    title="Fault suite",
    description=(
        "Each scenario of `bench/faults.py` at the full size (`--quick`: the small size of "
        "`make test`); rewrites RELIABILITY.md (`--param report=PATH` elsewhere). One row per "
        "scenario: its injections and wall time; the notes say lost/doubled and the verdict."
    ),
)
def faults(context: BenchContext) -> BenchResult:
    """Run the fault suite and write RELIABILITY.md."""
    size = "small" if context.quick else context.params.get("size", "full")
    outcomes = run_suite(context.scratch, size)
    report = Path(context.params.get("report", REPO / "RELIABILITY.md"))
    report.write_text(reliability_markdown(outcomes, size, []))
    rows = [
        Row(
            case=o.scenario,
            params={"size": size},
            wall_seconds=o.seconds,
            items=o.injections,
            unit="injections",
            notes=f"lost {o.lost}, doubled {o.doubled}: {o.row()['verdict']}",
        )
        for o in outcomes
    ]
    settings: dict[str, Any] = {"size": size, **SIZES[size], "report": str(report)}
    return BenchResult(rows=rows, settings=settings)
