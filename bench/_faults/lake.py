"""Fault scenarios of the ETL and the load: kill -9, corrupt files, concurrent writers, a full disk."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench._faults.common import (
    Outcome,
    compare,
    copy_raw_zone,
    must_succeed,
    raw_event_ids,
    reference_warehouse,
    run,
    same_warehouse,
    shopflow_env,
    start,
    unreadable_warehouse,
    user_error,
    warehouse_tables,
    written_since,
)
from bench.etl_engines import RawZone

#: Tries at one kill before a kill that always comes after the run's end counts as a problem.
KILL_ATTEMPTS = 4


def kill_mid_run(
    env: dict[str, str],
    args: tuple[str, ...],
    rng: random.Random,
    full_seconds: float,
    written: list[Path],
    *,
    after_first_write: bool,
    scale: float = 1.0,
) -> tuple[bool, bool]:
    """Start `shopflow ARGS` and SIGKILL it: at a random moment of a normal run's length, or
    (`after_first_write`) a random moment up to 0.3 s after it first wrote to one of `written`;
    `scale` shrinks those moments (a retry after a kill that came too late).

    Returns whether the kill hit a live run, and whether that run had already written (the kill
    then came mid-write: after some output, before the end).
    """
    since = time.time()
    process = start(env, *args)
    if after_first_write:
        deadline = time.monotonic() + 2 * full_seconds + 30
        while process.poll() is None and time.monotonic() < deadline:
            if written_since(written, since):
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3) * scale)
    else:
        time.sleep(rng.uniform(0.1, 0.95) * full_seconds * scale)
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return alive and process.returncode == -signal.SIGKILL, written_since(written, since)


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
        # The load writes a private copy that replaces the warehouse file when it is done.
        "load": [home / ".warehouse.duckdb.loading", home / ".warehouse.duckdb.loading.wal"],
    }
    for args, seconds in steps:
        if args == ("load",) and not must_succeed(run(env, "etl"), outcome):
            break
        mid_write = 0
        for n in range(kills):
            outcome.injections += 1
            # A run faster than the reference (a less loaded machine) can finish before its
            # kill: try again, sooner, rather than count a kill that never happened.
            for attempt in range(KILL_ATTEMPTS):
                alive, wrote = kill_mid_run(
                    env, args, rng, seconds, targets[args[0]],
                    after_first_write=n % 2 == 1, scale=0.5**attempt,
                )  # fmt: skip
                if alive:
                    break
            mid_write += alive and wrote
            if not alive:
                outcome.problems.append(
                    f"a kill of `shopflow {args[0]}` came after it finished, {KILL_ATTEMPTS} times"
                )
            if args == ("load",) and (damage := unreadable_warehouse(home)):
                outcome.problems.append(f"the warehouse was unreadable after a kill: {damage}")
        if mid_write == 0:
            outcome.problems.append(f"no kill of `shopflow {args[0]}` came after it had written")
        outcome.notes.append(f"{mid_write} of {kills} kills of {args[0]} hit it mid-write")
    for args in (("etl",), ("load",)):
        must_succeed(run(env, *args), outcome)
    compare(outcome, raw_event_ids(lake), home)
    same_warehouse(outcome, reference, home)
    leftovers = [*(lake / "curated").rglob(".*.tmp"), *home.glob(".warehouse.duckdb.loading*")]
    if leftovers:
        outcome.problems.append(f"{len(leftovers)} temp files left behind: {leftovers[0]}")
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
        if "skipped 1 raw files outside the accepted event dates" not in etl.stdout:
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


def _wait_until_holding(lock: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait until `process` is the holder a local writer lock names (or it has exited)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if json.loads(lock.read_bytes() or b"{}").get("pid") == process.pid:
                return
        except (OSError, ValueError):
            pass  # not created, or being written
        time.sleep(0.1)


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
        # Until the backfill holds the lock (taken before any lake write): a fixed pause was
        # too short on a loaded machine, where the second `etl` took the lock first.
        _wait_until_holding(lake / "_state" / "locks" / "writer.lock", first)
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


def _first_day_loaded(
    env: dict[str, str], lake: Path, home: Path, outcome: Outcome
) -> dict[str, pa.Table]:
    """Load the lake's first curated date, so the full-disk loads have a warehouse to harm."""
    first_day = min(
        p.name.removeprefix("date=") for p in (lake / "curated" / "events_clean").glob("date=*")
    )
    must_succeed(run(env, "load", "--date", first_day), outcome)
    return warehouse_tables(home)


def scenario_disk_full(
    zone: RawZone, scratch: Path, attempts: int, steps: tuple[str, ...] = ("etl", "load")
) -> Outcome:
    """`SHOPFLOW_HOME` on a small tmpfs filled up under the ETL and the load; then space freed."""
    outcome = Outcome(
        f"disk full under {' and '.join(steps)} (tmpfs home), {attempts} times (load: twice that)"
    )
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
        rng = random.Random(attempts)
        for step in steps:
            before = _first_day_loaded(env, lake, home, outcome) if step == "load" else None
            # The load fails twice per attempt: at its copy of the warehouse, and inside the commit.
            for attempt in range(attempts * 2 if before is not None else attempts):
                leave = rng.randrange(10_000, 200_000)
                if before is not None and attempt % 2:
                    # Room for the load's copy of the warehouse but not for all it writes, so
                    # the failure comes inside DuckDB's commit rather than at the copy.
                    size = (home / "warehouse.duckdb").stat().st_size
                    leave += size + rng.randrange(0, 2 * raw_bytes)
                filler = _fill(mount, leave)
                outcome.injections += 1
                result = run(env, step)
                if result.returncode == 0:
                    outcome.problems.append(f"`shopflow {step}` succeeded on a full disk")
                else:
                    user_error(result, outcome)
                filler.unlink()
                if before is not None:
                    if damage := unreadable_warehouse(home):
                        outcome.problems.append(
                            f"the warehouse was unreadable after a load: {damage}"
                        )
                    elif warehouse_tables(home).keys() != before.keys() or any(
                        not table.equals(before[name])
                        for name, table in warehouse_tables(home).items()
                    ):
                        outcome.problems.append(
                            "a load that failed for want of space changed the warehouse"
                        )
                damaged = _visible_damage(lake)
                if damaged:
                    outcome.problems.append(f"{len(damaged)} partial files visible after {step}")
            if step == "etl":
                if (lake / "_state" / "etl_hourly.json").exists():
                    outcome.problems.append("the ETL state advanced on a full disk")
                must_succeed(run(env, "etl"), outcome)
        must_succeed(run(env, "load"), outcome)
        if damage := unreadable_warehouse(home):
            outcome.problems.append(f"the warehouse is unreadable after space was freed: {damage}")
        else:
            compare(outcome, raw_event_ids(lake), home)
            same_warehouse(outcome, reference, home)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    outcome.seconds = time.monotonic() - started
    return outcome
