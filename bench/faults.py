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

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from bench._harness import BenchContext, BenchResult, Row, benchmark
from bench.etl_engines import RawZone, write_raw_zone
from shopflow.contracts import Event, encode_event

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


# ---------------------------------------------------------------------------------------------
# Scenarios


def _written_since(paths: list[Path], since: float) -> bool:
    """Whether any file under `paths` was modified at or after `since` (a time.time())."""
    for root in paths:
        candidates = root.rglob("*") if root.is_dir() else [root]
        for path in candidates:
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime >= since:
                    return True
    return False


def kill_mid_run(
    env: dict[str, str],
    args: tuple[str, ...],
    rng: random.Random,
    full_seconds: float,
    written: list[Path],
    *,
    after_first_write: bool,
) -> tuple[bool, bool]:
    """Start `shopflow ARGS` and SIGKILL it: at a random moment of a normal run's length, or
    (`after_first_write`) a random moment up to 0.3 s after it first wrote to one of `written`.

    Returns whether the kill hit a live run, and whether that run had already written (the kill
    then came mid-write: after some output, before the end).
    """
    since = time.time()
    process = start(env, *args)
    if after_first_write:
        deadline = time.monotonic() + 2 * full_seconds + 30
        while process.poll() is None and time.monotonic() < deadline:
            if _written_since(written, since):
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
    else:
        time.sleep(rng.uniform(0.1, 0.95) * full_seconds)
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return alive and process.returncode == -signal.SIGKILL, _written_since(written, since)


def scenario_kill_etl_and_load(zone: RawZone, scratch: Path, kills: int, seed: int) -> Outcome:
    """kill -9 of `shopflow etl`, then of `shopflow load`, `kills` times each; then normal runs."""
    outcome = Outcome(f"kill -9 of etl and of load, {kills} times each")
    started = time.monotonic()
    reference = reference_warehouse(zone, scratch)
    rng = random.Random(seed)
    home = scratch / "kills"
    lake = copy_raw_zone(zone, home)
    env = shopflow_env(home)
    # Kills land within a normal run's length.
    steps = ((("etl",), reference.etl_seconds), (("load",), reference.load_seconds))
    targets = {
        "etl": [lake / "curated"],
        "load": [home / "warehouse.duckdb", home / "warehouse.duckdb.wal"],
    }
    for args, seconds in steps:
        if args == ("load",) and not must_succeed(run(env, "etl"), outcome):
            break
        mid_write = 0
        for n in range(kills):
            outcome.injections += 1
            alive, wrote = kill_mid_run(
                env, args, rng, seconds, targets[args[0]], after_first_write=n % 2 == 1
            )
            mid_write += alive and wrote
            if not alive:
                outcome.problems.append(f"a kill of `shopflow {args[0]}` came after it finished")
        if mid_write == 0:
            outcome.problems.append(f"no kill of `shopflow {args[0]}` came after it had written")
        outcome.notes.append(f"{mid_write} of {kills} kills of {args[0]} hit it mid-write")
    for args in (("etl",), ("load",)):
        must_succeed(run(env, *args), outcome)
    compare(outcome, raw_event_ids(lake), home)
    same_warehouse(outcome, reference, home)
    leftovers = [p for p in (lake / "curated").rglob(".*.tmp")]
    if leftovers:
        outcome.problems.append(f"{len(leftovers)} temp files left in curated/")
    outcome.seconds = time.monotonic() - started
    return outcome


def _damage_pages(data: bytes, rng: random.Random) -> bytes:
    """The same file with its data pages overwritten and its footer intact."""
    footer_length = int.from_bytes(data[-8:-4], "little")
    end = len(data) - 8 - footer_length
    return data[:4] + rng.randbytes(end - 4) + data[end:]


def _inject_corrupt_files(lake: Path, rng: random.Random, rounds: int) -> int:
    """Unreadable or misplaced files among the raw events, and one readable file in an unusual
    encoding that must load; how many must be quarantined."""
    files = sorted((lake / "raw" / "events").glob("date=2*/hour=*/*.parquet"))
    injected = 0
    for n in range(rounds):
        victim = rng.choice(files)
        data = victim.read_bytes()
        folder = victim.parent
        table = pq.read_table(victim)
        (folder / f"truncated-{n}.parquet").write_bytes(data[: len(data) // 2])
        (folder / f"garbage-{n}.parquet").write_bytes(rng.randbytes(4096))
        price = table.schema.get_field_index("price")
        wrong = table.set_column(price, "price", pa.array(["cheap"] * table.num_rows))
        pq.write_table(wrong, folder / f"price-as-text-{n}.parquet")
        plain = folder / f"plain-{n}.parquet"
        pq.write_table(table, plain, compression="none", use_dictionary=False)
        plain.with_name(f"pages-damaged-{n}.parquet").write_bytes(
            _damage_pages(plain.read_bytes(), rng)
        )
        plain.unlink()
        ts = table.schema.get_field_index("event_ts")
        nanos = table.set_column(ts, "event_ts", table["event_ts"].cast(pa.timestamp("ns", "UTC")))
        pq.write_table(nanos, folder / f"nanoseconds-{n}.parquet")
        shutil.copy(victim, folder.parent / f"outside-an-hour-folder-{n}.parquet")
        injected += 6
        # Readable, in encodings a reader resolves itself: must load, not be quarantined.
        ids = pa.array([f"encoded-{n}-{i}" for i in range(table.num_rows)], pa.large_string())
        encoded = table.set_column(0, "event_id", ids)
        name = table.schema.get_field_index("event_name")
        encoded = encoded.set_column(name, "event_name", table["event_name"].dictionary_encode())
        pq.write_table(encoded, folder / f"encoded-{n}.parquet")
    return injected


def scenario_corrupt_raw_files(zone: RawZone, scratch: Path, rounds: int, seed: int) -> Outcome:
    """Unreadable and misplaced files in the raw zone, a readable one in unusual encodings and a
    partition outside the accepted dates; then etl and load."""
    outcome = Outcome(f"corrupt or misplaced files in the raw zone ({rounds} rounds of 6 kinds)")
    started = time.monotonic()
    home = scratch / "corrupt"
    lake = copy_raw_zone(zone, home)
    # A partition landed before event times were bounded (a copy of good events): skipped and
    # reported, never moved.
    far = lake / "raw" / "events" / "date=9999-12-31" / "hour=23"
    far.mkdir(parents=True)
    shutil.copy(sorted((lake / "raw" / "events").rglob("*.parquet"))[0], far / "far-future.parquet")
    outcome.injections = _inject_corrupt_files(lake, random.Random(seed), rounds)
    env = shopflow_env(home)
    etl = run(env, "etl")
    if must_succeed(etl, outcome):
        if f"{outcome.injections} files quarantined" not in etl.stdout:
            outcome.problems.append("the run summary does not count the quarantined files")
        if "skipped 1 raw partitions outside the accepted event dates" not in etl.stdout:
            outcome.problems.append("the far-future partition was not reported as skipped")
        must_succeed(run(env, "load"), outcome)
    if not (far / "far-future.parquet").exists():
        outcome.problems.append("a partition outside the accepted dates was moved")
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
    outcome = Outcome(
        "services unreachable at start (bus, orders API, shop DB, warehouse); token never shown"
    )
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
    secret = "s3cret-token-that-must-never-be-printed"
    for settings, args in cases:
        outcome.injections += 1
        result = run(shopflow_env(home, orders_api_token=secret, **settings), *args, timeout=300)
        if result.returncode == 0:
            outcome.problems.append(f"`shopflow {' '.join(args)}` succeeded against {dead}")
        else:
            user_error(result, outcome)
        if secret in result.stdout + result.stderr:
            outcome.problems.append(f"`shopflow {' '.join(args)}` printed the API token")
    for args in (("--help",), ("services", "status"), ("ingest", "orders", "--help")):
        shown = run(shopflow_env(home, orders_api_token=secret), *args)
        if secret in shown.stdout + shown.stderr:
            outcome.problems.append(f"`shopflow {' '.join(args)}` printed the API token")
    written = [p for p in (home / "lake").rglob("*.parquet")] if (home / "lake").exists() else []
    if written:
        outcome.problems.append(f"{len(written)} lake files written by failed runs")
    outcome.seconds = time.monotonic() - started
    return outcome


# -- the bus ------------------------------------------------------------------------------------

#: The valid events' times: a fixed past day, within every landing bound.
EVENTS_START: Final = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def valid_payloads(count: int, prefix: str) -> list[bytes]:
    """`count` distinct valid events over a day."""
    return [
        encode_event(
            Event(
                event_id=f"{prefix}-{n:08d}",
                event_name=("view", "view", "view", "wishlist")[n % 4],
                product_id=f"p-{n % 211}",
                user_id=f"u-{n % 997}",
                order_id=None,
                price=float(100 + n % 900),
                event_ts=EVENTS_START + timedelta(seconds=(n * 7) % 86_400),
                session_id=None,
            )
        )
        for n in range(count)
    ]


def malformed_payloads(count: int, rng: random.Random) -> list[bytes]:
    """`count` distinct payloads the landing must dead-letter, of every kind the issue lists."""
    body = json.loads(valid_payloads(1, "m")[0])

    def variant(n: int) -> bytes:
        b = {**body, "event_id": f"bad-{n:08d}"}
        kind = n % 14
        if kind == 0:
            return f"not json {n}".encode()
        if kind == 1:
            return json.dumps([b, n]).encode()
        if kind == 2:
            del b[rng.choice(["event_id", "event_name", "product_id", "user_id", "event_ts"])]
            return json.dumps({**b, "n": n}).encode()
        if kind == 3:
            return json.dumps({**b, "price": None}).encode()
        if kind == 4:
            return json.dumps({**b, "price": f"{n}.00"}).encode()
        if kind == 5:
            return json.dumps({**b, "event_name": f"teleport-{n}"}).encode()
        if kind == 6:
            return json.dumps({**b, "price": -1 - n}).encode()
        if kind == 7:
            return json.dumps({**b}).replace('"price": 100.0', '"price": NaN').encode()
        if kind == 8:
            return json.dumps({**b, "event_ts": "2026-11-20T10:00:00"}).encode()
        if kind == 9:
            return json.dumps({**b, "event_ts": f"9999-12-31T23:{n % 60:02d}:00Z"}).encode()
        if kind == 10:
            return json.dumps({**b, "event_ts": f"0001-01-01T00:{n % 60:02d}:00+14:00"}).encode()
        if kind == 11:
            return b"\xff\xfe" + str(n).encode() + b"\x80 not utf-8"
        if kind == 12:
            # Near the Kafka producer's 1 MB message limit.
            return json.dumps({**b, "product_id": "x" * (900_000 + n)}).encode()
        return b"[" * 20_000 + str(n).encode() + b"]" * 20_000

    return [variant(n) for n in range(count)]


#: How soon Pub/Sub hands a killed consumer's unacknowledged messages to the next one.
PUBSUB_ACK_DEADLINE_SECONDS: Final = 10


def bus_env(home: Path, name: str, bus: str = "kafka", **settings: str) -> dict[str, str]:
    """Settings for a private topic and consumer group / subscription on `bus`."""
    return shopflow_env(
        home,
        bus=bus,
        events_topic=f"faults-{name}",
        events_subscription=f"faults-{name}-landing",
        kafka_consumer_group=f"faults-{name}",
        landing_batch_max_messages="2000",
        landing_batch_max_seconds="1",
        **settings,
    )


def _bus_settings(env: dict[str, str]) -> Any:
    from shopflow.settings import load_settings

    names = ("bus", "events_topic", "events_subscription", "kafka_consumer_group")
    values = {n: env[f"SHOPFLOW_{n.upper()}"] for n in names}
    return load_settings(home=Path(env["SHOPFLOW_HOME"]), **values)


def publish(env: dict[str, str], payloads: list[bytes]) -> None:
    """Publish to the topic `env` names, creating it (and its subscription) first."""
    from shopflow.sources.bus.factory import ensure_event_topic, make_publisher
    from shopflow.sources.bus.pubsub import ensure_topic_and_subscription

    settings = _bus_settings(env)
    if settings.bus.value == "pubsub":
        # A short ack deadline: a killed consumer's messages come back in seconds, not minutes.
        ensure_topic_and_subscription(settings, ack_deadline_seconds=PUBSUB_ACK_DEADLINE_SECONDS)
    else:
        ensure_event_topic(settings)
    publisher = make_publisher(settings)
    try:
        publisher.publish(payloads)
    finally:
        publisher.close()


def dead_letter_payloads(lake: Path) -> Counter[bytes]:
    """How often each payload is in `deadletter/events/`."""
    files = [str(p) for p in (lake / "deadletter" / "events").rglob("*.parquet")]
    if not files:
        return Counter()
    table = ds.dataset(files, format="parquet").to_table(columns=["payload", "reason"])
    if any(not r for r in table.column("reason").to_pylist()):
        raise AssertionError("a dead letter without a reason")
    return Counter(table.column("payload").to_pylist())


def raw_files(lake: Path) -> int:
    """How many raw event files have landed."""
    return sum(1 for _ in (lake / "raw" / "events").rglob("*.parquet"))


def _stream_outcome(
    outcome: Outcome, env: dict[str, str], valid: list[bytes], malformed: list[bytes]
) -> None:
    """ETL and load after landing, then the warehouse and the dead letters checked."""
    home = Path(env["SHOPFLOW_HOME"])
    lake = home / "lake"
    for args in (("etl",), ("load",)):
        must_succeed(run(env, *args), outcome)
    compare(outcome, {json.loads(p)["event_id"] for p in valid}, home)
    dead = dead_letter_payloads(lake)
    outcome.dead_lettered = len(dead)
    missing = set(malformed) - set(dead)
    if missing:
        outcome.problems.append(f"{len(missing)} malformed payloads not in the dead letters")


def scenario_malformed_stream(
    scratch: Path, valid_count: int, malformed_count: int, seed: int
) -> Outcome:
    """Malformed payloads of every kind mixed into the stream; the consumer lands the rest."""
    outcome = Outcome(f"{malformed_count:,} malformed messages mixed into the stream (Kafka)")
    started = time.monotonic()
    rng = random.Random(seed)
    home = scratch / "malformed"
    env = bus_env(home, f"malformed-{seed}-{time.time_ns()}")
    valid = valid_payloads(valid_count, "v")
    malformed = malformed_payloads(malformed_count, rng)
    stream = valid + malformed
    rng.shuffle(stream)
    publish(env, stream)
    outcome.injections = malformed_count
    landing = run(env, "ingest", "events", "--idle-stop-seconds", "6")
    must_succeed(landing, outcome)
    _stream_outcome(outcome, env, valid, malformed)
    outcome.seconds = time.monotonic() - started
    return outcome


def scenario_kill_landing(
    scratch: Path, valid_count: int, kills: int, seed: int, bus: str = "kafka"
) -> Outcome:
    """kill -9 of the landing consumer `kills` times mid-stream, restarted each time."""
    outcome = Outcome(f"kill -9 of the landing consumer, {kills} times ({bus})")
    started = time.monotonic()
    rng = random.Random(seed)
    home = scratch / f"landing-kills-{bus}"
    env = bus_env(home, f"kills-{seed}-{time.time_ns()}", bus)
    lake = home / "lake"
    valid = valid_payloads(valid_count, "k")
    malformed = malformed_payloads(max(1, valid_count // 100), rng)
    stream = valid + malformed
    rng.shuffle(stream)
    publish(env, stream)
    landed_before = 0
    for _ in range(kills):
        process = start(env, "ingest", "events", "--idle-stop-seconds", "30")
        # Kill once this run has landed a batch of its own: the kill then hits a live consumer
        # between (or inside) later batches, never before it started.
        deadline = time.monotonic() + 60
        while raw_files(lake) <= landed_before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        alive = process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.communicate()
        outcome.injections += 1
        landed_now = raw_files(lake)
        if not alive or landed_now <= landed_before:
            outcome.problems.append("a kill did not hit a consumer that was landing")
        if len(raw_event_ids(lake)) >= len(valid):
            outcome.problems.append("a kill came after the whole stream had landed")
        landed_before = landed_now
    # Long enough for Kafka to drop the killed members (session timeout) and reassign, and for
    # Pub/Sub to redeliver what they held (ack deadline).
    final = run(env, "ingest", "events", "--idle-stop-seconds", "20")
    must_succeed(final, outcome)
    _stream_outcome(outcome, env, valid, malformed)
    outcome.seconds = time.monotonic() - started
    return outcome


# -- a service going away mid-run ----------------------------------------------------------------


class TcpProxy:
    """A loopback TCP relay in front of a real service, that can cut every connection at once.

    `bytes_per_second` slows the relay down, so that a transfer is long enough to be cut in
    the middle.
    """

    def __init__(self, target: tuple[str, int], bytes_per_second: int | None = None) -> None:
        self.target = target
        self.port = _free_port()
        self._rate = bytes_per_second
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (again) on the same port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and reset every open connection: the service is gone."""
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for sock in self._sockets:
                # shutdown first: a close alone does not wake a thread blocked in recv, and the
                # peer would never hear of it.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(16_384):
                sink.sendall(chunk)
                if self._rate:
                    time.sleep(len(chunk) / self._rate)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def scenario_services_go_away(scratch: Path, cuts: int, seed: int) -> Outcome:
    """The shop DB (a catalogue pull) and the Pub/Sub emulator (landing) cut off mid-run through a
    relay, `cuts` times each: one line, non-zero exit, nothing committed, a clean resume."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from shopflow.settings import load_settings
    from shopflow.simulator import ShopSimulator, SimulationConfig
    from shopflow.simulator.publish import seed_shop
    from shopflow.sources.shop_db import ensure_shop_db

    outcome = Outcome(f"shop DB and Pub/Sub cut off mid-run, {cuts} times each")
    started = time.monotonic()
    rng = random.Random(seed)
    home = scratch / "go-away"
    lake = home / "lake"
    base = load_settings(home=home)
    dbname = f"shopflow_faults_{seed}_{time.time_ns() % 10**9}"
    db_url = make_conninfo(base.source_db_url, dbname=dbname)
    shop = base.model_copy(update={"source_db_url": db_url})
    ensure_shop_db(shop)
    seed_shop(shop, ShopSimulator(SimulationConfig(seed=seed, events=0, initial_users=2000)))
    parts = conninfo_to_dict(db_url)
    # Slow enough that a pull of the whole catalogue takes seconds and can be cut inside it.
    target = (str(parts.get("host") or "127.0.0.1"), int(str(parts.get("port") or 5432)))
    db_proxy = TcpProxy(target, 400_000)
    db_proxy.start()
    proxied = make_conninfo(db_url, host="127.0.0.1", port=db_proxy.port)
    env = shopflow_env(home, source_db_url=proxied)
    for _ in range(cuts):
        pull = start(env, "ingest", "catalog")
        time.sleep(rng.uniform(1.5, 4.0))  # past start-up, inside the transfer
        db_proxy.cut()
        out, err = pull.communicate(timeout=300)
        outcome.injections += 1
        result = subprocess.CompletedProcess(pull.args, pull.returncode, out, err)
        if pull.returncode == 0:
            outcome.problems.append("a catalogue pull finished although the DB went away")
        else:
            user_error(result, outcome)
        if (lake / "_state" / "products_watermark.json").exists() or list(
            (lake / "raw").rglob("*.parquet")
        ):
            outcome.problems.append("a cut-off catalogue pull committed something")
        db_proxy.start()
    must_succeed(run(env, "ingest", "catalog"), outcome)
    with psycopg_connect(db_url) as conn:
        products = {r[0] for r in conn.execute("SELECT product_id FROM products").fetchall()}
    landed = pq.read_table(str(lake / "raw" / "products")).column("product_id").to_pylist()
    counts = Counter(landed)
    outcome.lost += len(products - set(counts))
    outcome.doubled += sum(1 for n in counts.values() if n > 1)
    drop_database(base.source_db_url, dbname)

    # The bus: the landing consumer reading through a relay to the emulator.
    emulator = base.pubsub_emulator_host or "127.0.0.1:8085"
    host, port = emulator.rsplit(":", 1)
    bus_proxy = TcpProxy((host, int(port)))
    bus_proxy.start()
    name = f"go-away-{seed}-{time.time_ns()}"
    env = bus_env(home, name, "pubsub", pubsub_emulator_host=f"127.0.0.1:{bus_proxy.port}")
    valid = valid_payloads(6000 * cuts, "g")
    publish(env, valid)
    for _ in range(cuts):
        landing = start(env, "ingest", "events", "--idle-stop-seconds", "30")
        deadline = time.monotonic() + 60
        before = raw_files(lake)
        while raw_files(lake) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        bus_proxy.cut()
        out, err = landing.communicate(timeout=300)
        outcome.injections += 1
        result = subprocess.CompletedProcess(landing.args, landing.returncode, out, err)
        if landing.returncode == 0:
            outcome.problems.append("the landing consumer exited 0 although the bus went away")
        else:
            user_error(result, outcome)
        bus_proxy.start()
    must_succeed(run(env, "ingest", "events", "--idle-stop-seconds", "20"), outcome)
    bus_proxy.cut()
    landed_events = Counter(
        pq.read_table(str(lake / "raw" / "events")).column("event_id").to_pylist()
    )
    expected = {json.loads(p)["event_id"] for p in valid}
    outcome.events_in = len(expected) + len(products)
    outcome.in_warehouse = len(set(landed_events)) + len(counts)
    outcome.lost += len(expected - set(landed_events))
    outcome.notes.append(
        "checked in the lake (raw products and events), not the warehouse: the pulls and the "
        "landing are what the cuts hit; duplicates in raw events are removed by the ETL"
    )
    outcome.seconds = time.monotonic() - started
    return outcome


def psycopg_connect(url: str) -> Any:
    """A psycopg connection (imported here: the bench imports nothing heavy at start)."""
    import psycopg

    return psycopg.connect(url, autocommit=True)


def drop_database(admin_url: str, dbname: str) -> None:
    """Drop a database the scenario made."""
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg_connect(make_conninfo(admin_url, dbname="postgres")) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


# -- the orders API -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_orders_api(home: Path, port: int, **faults: str) -> subprocess.Popen[bytes]:
    """A private orders API (its own SQLite store under `home`) with fault injection."""
    env = shopflow_env(
        home,
        orders_api_port=str(port),
        orders_api_store=str(home / "orders.sqlite3"),
        **faults,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "shopflow.sources.orders_api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the orders API did not start")


def scenario_orders_api_faults(zone: RawZone, scratch: Path, pulls: int, seed: int) -> Outcome:
    """The orders API failing 20% with 5xx, 10% with 429 + Retry-After, 10% slow, and restarted
    under a pull; every order line exactly once in the lake and the warehouse."""
    from shopflow.contracts import OrderLine
    from shopflow.sources.orders_api.client import OrdersApiClient

    outcome = Outcome(f"orders API 5xx/429/slow and restarted mid-pull, {pulls} pulls")
    started = time.monotonic()
    home = scratch / "orders-faults"
    lake = copy_raw_zone(zone, home)
    posted = ds.dataset(str(lake / "raw" / "orders"), format="parquet").to_table()
    shutil.rmtree(lake / "raw" / "orders")
    port = _free_port()
    faults = {
        "orders_api_fault_5xx_rate": "0.2",
        "orders_api_fault_429_rate": "0.1",
        "orders_api_fault_slow_rate": "0.1",
        "orders_api_fault_slow_seconds": "0.3",
        "orders_api_fault_seed": str(seed),
    }
    api = start_orders_api(home, port, **faults)
    lines = [
        OrderLine(
            order_id=r["order_id"],
            product_id=r["product_id"],
            user_id=r["user_id"],
            order_ts=r["order_ts"],
            quantity=r["quantity"],
            unit_price_inr=r["unit_price_inr"],
            status=r["status"],
        )
        for r in posted.to_pylist()
    ]
    env = shopflow_env(home, orders_api_port=str(port))
    try:
        batch = max(1, len(lines) // pulls)
        with OrdersApiClient(f"http://127.0.0.1:{port}", "local-dev-token") as client:
            for n in range(0, len(lines), batch):
                client.post_orders(lines[n : n + batch])
                pull = start(env, "ingest", "orders")
                if n == batch:  # the API goes away under this pull and comes back
                    time.sleep(0.3)
                    api.send_signal(signal.SIGKILL)
                    api.wait()
                    outcome.injections += 1
                    time.sleep(1.0)
                    api = start_orders_api(home, port, **faults)
                out, err = pull.communicate(timeout=600)
                outcome.injections += 1
                if pull.returncode != 0:
                    user_error(
                        subprocess.CompletedProcess(pull.args, pull.returncode, out, err), outcome
                    )
        again = run(env, "ingest", "orders")  # whatever a failed pull left
        must_succeed(again, outcome)
    finally:
        api.kill()
        api.wait()
    for args in (("etl",), ("load",)):
        must_succeed(run(env, *args), outcome)
    expected = {(r["order_id"], r["product_id"]) for r in posted.to_pylist()}
    raw = ds.dataset(str(lake / "raw" / "orders"), format="parquet").to_table()
    landed = Counter(zip(raw["order_id"].to_pylist(), raw["product_id"].to_pylist(), strict=True))
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute("SELECT order_id, product_id FROM orders_enriched").fetchall()
    in_warehouse = Counter((a, b) for a, b in rows)
    outcome.events_in = len(expected)
    outcome.in_warehouse = sum(in_warehouse.values())
    outcome.lost = len(expected - set(in_warehouse)) + len(expected - set(landed))
    outcome.doubled = sum(1 for n in in_warehouse.values() if n > 1)
    outcome.seconds = time.monotonic() - started
    return outcome


# -- disk full ----------------------------------------------------------------------------------


def _fill(mount: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about `leave_bytes` free on `mount`."""
    filler = mount / "filler.bin"
    free = shutil.disk_usage(mount).free
    with filler.open("ab") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
    return filler


def _visible_damage(lake: Path) -> list[Path]:
    """Data files a reader would see that cannot be read."""
    damaged = []
    for path in lake.rglob("*.parquet"):
        if path.name.startswith((".", "_")) or "quarantine" in path.parts:
            continue
        try:
            pq.read_metadata(path)
        except Exception:
            damaged.append(path)
    return damaged


def scenario_disk_full(zone: RawZone, scratch: Path, attempts: int) -> Outcome:
    """`SHOPFLOW_HOME` on a small tmpfs filled up under the ETL and the load; then space freed."""
    outcome = Outcome(f"disk full under etl and load (tmpfs home), {attempts} times each")
    started = time.monotonic()
    reference = reference_warehouse(zone, scratch)
    raw_bytes = sum(p.stat().st_size for p in (Path(zone.lake) / "raw").rglob("*") if p.is_file())
    mount = scratch / "tmpfs-home"
    mount.mkdir(parents=True, exist_ok=True)
    size_mb = raw_bytes * 6 // 1_000_000 + 64
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        outcome.problems.append(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        return outcome
    try:
        home = mount / "home"
        lake = copy_raw_zone(zone, home)
        env = shopflow_env(home)
        rng = random.Random(len(zone.lake))
        for step in ("etl", "load"):
            for _ in range(attempts):
                filler = _fill(mount, rng.randrange(10_000, 200_000))
                outcome.injections += 1
                result = run(env, step)
                if result.returncode == 0:
                    outcome.problems.append(f"`shopflow {step}` succeeded on a full disk")
                else:
                    user_error(result, outcome)
                filler.unlink()
                damaged = _visible_damage(lake)
                if damaged:
                    outcome.problems.append(f"{len(damaged)} partial files visible after {step}")
            if step == "etl":
                if (lake / "_state" / "etl_hourly.json").exists():
                    outcome.problems.append("the ETL state advanced on a full disk")
                must_succeed(run(env, "etl"), outcome)
        must_succeed(run(env, "load"), outcome)
        compare(outcome, raw_event_ids(lake), home)
        same_warehouse(outcome, reference, home)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    outcome.seconds = time.monotonic() - started
    return outcome


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


def run_suite(scratch: Path, size: str, seed: int = 7) -> list[Outcome]:
    """Every scenario at one size, in order."""
    sizes = SIZES[size]
    zone = write_raw_zone(scratch / "raw-zone" / "lake", sizes["events"], seed=seed, days=2)
    scenarios: list[Callable[[], Outcome]] = [
        lambda: scenario_kill_etl_and_load(zone, scratch, sizes["kills"], seed),
        lambda: scenario_corrupt_raw_files(zone, scratch, sizes["rounds"], seed),
        lambda: scenario_concurrent_runs(zone, scratch, sizes["attempts"]),
        lambda: scenario_unreachable_services(scratch),
        lambda: scenario_malformed_stream(
            scratch, sizes["stream_events"] // 10, sizes["malformed"], seed
        ),
        lambda: scenario_kill_landing(
            scratch, sizes["stream_events"], sizes["landing_kills"], seed
        ),
        lambda: scenario_orders_api_faults(zone, scratch, sizes["pulls"], seed),
        lambda: scenario_disk_full(zone, scratch, sizes["attempts"]),
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
    scenario_notes = [f"{o.scenario}: {note}" for o in outcomes for note in o.notes]
    lines += ["", *(f"- {note}" for note in [*scenario_notes, *notes]), ""]
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
