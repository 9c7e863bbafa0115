"""The fault suite's shared parts: outcomes, running the command line, reading results."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bench.etl_engines import RawZone
from shopflow.warehouse.schema import HISTORY_TABLES

REPO: Final = Path(__file__).resolve().parents[2]

#: Scenario sizes: small in `make test`, full in `python -m bench faults`.
SIZES: Final = {
    "small": {
        "events": 3000,
        "kills": 2,
        "rounds": 1,
        "attempts": 1,
        "stream_events": 12_000,
        "malformed": 300,
        "landing_kills": 2,
        "pulls": 3,
        "cuts": 1,
    },
    "full": {
        "events": 200_000,
        "kills": 10,
        "rounds": 10,
        "attempts": 5,
        "stream_events": 1_000_000,
        "malformed": 10_000,
        "landing_kills": 20,
        "pulls": 10,
        "cuts": 5,
    },
}


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
    notes: list[str] = field(default_factory=list)
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
    # Paths differ from run to run: keep their last part only.
    text = re.sub(r"(?:/[\w.=\-]+){2,}", lambda m: "…/" + m.group(0).rsplit("/", 1)[-1], text)
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


def warehouse_tables(home: Path, *, with_history: bool = False) -> dict[str, pa.Table]:
    """Every warehouse table, rows sorted, for comparing two warehouses; without the history
    tables (`quality_results`: each run appends its own, stamped with its time) unless asked."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
            ).fetchall()
            if with_history or r[0] not in HISTORY_TABLES
        ]
        tables = {}
        for name in names:
            table = conn.sql(f'SELECT * FROM "{name}"').to_arrow_table()
            tables[name] = table.sort_by([(c, "ascending") for c in table.column_names])
        return tables


def unreadable_warehouse(home: Path) -> str | None:
    """Why the warehouse file of `home` cannot be read (None: it reads, or there is none yet)."""
    path = home / "warehouse.duckdb"
    if not path.exists():
        return None
    try:
        warehouse_tables(home, with_history=True)  # every row of every table
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None


def warehouse_event_ids(home: Path) -> Counter[str]:
    """How often each event_id is in the warehouse's user_behavior."""
    path = home / "warehouse.duckdb"
    if not path.exists():
        return Counter()
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute("SELECT event_id FROM user_behavior").fetchall()
    return Counter(r[0] for r in rows)


def raw_event_ids(lake: Path) -> set[str]:
    """Distinct event ids of the raw zone's files: the recount the warehouse must equal."""
    ids: set[str] = set()
    for path in (lake / "raw" / "events").rglob("*.parquet"):
        if not path.name.startswith((".", "_")):
            ids.update(pq.read_table(path, columns=["event_id"])["event_id"].to_pylist())
    return ids


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


@dataclass(frozen=True, slots=True)
class Reference:
    """What an uninterrupted `etl` + `load` builds from a raw zone, and how long each took."""

    tables: dict[str, pa.Table]
    etl_seconds: float
    load_seconds: float


_references: dict[str, Reference] = {}


def reference_warehouse(zone: RawZone, scratch: Path) -> Reference:
    """The uninterrupted run of a raw zone (made once per zone)."""
    if zone.lake in _references:
        return _references[zone.lake]
    home = scratch / "reference"
    copy_raw_zone(zone, home)
    env = shopflow_env(home)
    seconds = []
    for step in ("etl", "load"):
        started = time.monotonic()
        result = run(env, step)
        if result.returncode != 0:
            raise RuntimeError(f"reference `shopflow {step}` failed: {result.stderr[-2000:]}")
        seconds.append(time.monotonic() - started)
    reference = Reference(warehouse_tables(home), seconds[0], seconds[1])
    _references[zone.lake] = reference
    return reference


def same_warehouse(outcome: Outcome, reference: Reference, home: Path) -> None:
    """Every table of the warehouse under `home` equals the reference's."""
    tables = warehouse_tables(home)
    if sorted(tables) != sorted(reference.tables):
        outcome.problems.append("the warehouse tables differ from an uninterrupted run's")
        return
    for name, table in reference.tables.items():
        if not tables[name].equals(table):
            outcome.problems.append(f"table {name} differs from an uninterrupted run's")


def written_since(paths: list[Path], since: float) -> bool:
    """Whether any file under `paths` was modified at or after `since` (a time.time())."""
    for root in paths:
        candidates = root.rglob("*") if root.is_dir() else [root]
        for path in candidates:
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime >= since:
                    return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
