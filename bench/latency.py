"""Publish → warehouse latency of the live path: landing consumer + `shopflow stream` on a real bus.

Set-up per case (not timed): a home whose lake holds a simulated day of history (the `etl_engines`
raw zone of `--param history` valid events over one day, copied, with its curated zone and
warehouse made by `shopflow etl` + `shopflow load` on DuckDB); a fresh topic and subscription (or
consumer group); the landing consumer (`shopflow ingest events`) and the stream (`shopflow stream
--trigger-seconds T`) started as real processes; the stream's first micro-batch (the history) is
awaited before anything is published.

A case publishes valid simulator events (the shop's products and users, clean: the landing
benchmark measures dirt) at a steady `rate` for `minutes`, in chunks of a tenth of a second, each
stamped with its publish time as `event_ts` and a unique `event_id`. A poller reads the live part
of `user_behavior_current` as the dashboard's live panel does (`warehouse.live.live_select_sql`,
an in-memory DuckDB over the live Parquet) every `poll` seconds and records when each event id is
first there (`bench._visibility`). An event's latency is that time minus its publish time
(resolution: the poll interval, or a poll's own duration if longer; both are in the notes); events
not visible `drain` seconds after the last publish count as never visible (an infinite latency).
The landing consumer's and the stream's CPU (cores used over the window: CPU seconds of their
process trees / wall seconds) and peak RSS (process tree, sampled every second) are in the notes;
a run of 20 minutes or more also gives p95 and the stream's peak RSS per `window_minutes` (10) of
publishing, to show whether either grows as the hour fills. Rates run from low to high per bus; a
bus stops at its first rate whose p95 is over the target (30 s): the highest rate at or under it
is that bus's sustainable rate.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import psutil

from bench._harness import BenchContext, BenchResult, Row, benchmark
from bench._memory import tree_rss_bytes
from bench._visibility import Floats, Ledger, Visibility, percentile
from bench.etl_engines import cached_raw_zone
from shopflow.settings import BusKind, Settings, load_settings

#: The issue's target: p95 publish → visible at or under this.
TARGET_P95_SECONDS: Final = 30.0
DEFAULT_RATES: Final = {
    "kafka": ("1000", "2500", "5000", "10000"),
    "pubsub": ("1000", "2500", "5000"),
}
QUICK_RATES: Final = {"kafka": ("200",), "pubsub": ("200",)}


@dataclass
class Usage:
    """CPU seconds and peak RSS of one process tree over a window."""

    pid: int
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peak_rss: int = 0
    #: (epoch seconds, RSS bytes) of each sample.
    samples: list[tuple[float, int]] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        return _tree_cpu(self.pid)

    def sample(self) -> None:
        rss = tree_rss_bytes(self.pid)
        self.samples.append((time.time(), rss))
        self.peak_rss = max(self.peak_rss, rss)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _tree_cpu(pid: int) -> float:
    total = 0.0
    for proc in _tree(pid):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _shopflow(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shopflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"shopflow {' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}"
        )


def history_home(ctx: BenchContext, events: int) -> Path:
    """A home with a day of history: raw zone, curated zone and warehouse (made once per run)."""
    cache = Path(ctx.params.get("cache", str(load_settings().home / "bench" / "etl-engines")))
    zone = cached_raw_zone(cache, events, seed=42, days=1)
    home = ctx.scratch / "history"
    if not (home / "warehouse.duckdb").is_file():
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(Path(zone.lake), home / "lake", symlinks=False)
        env = _env(Settings(home=home))
        _shopflow(env, "etl", "--engine", "duckdb")
        _shopflow(env, "load")
    return home


def _env(settings: Settings) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    return {
        **base,
        **settings.child_environment(with_secrets=True),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


@dataclass
class Case:
    """One (bus, rate) run's home, settings and child processes."""

    bus: str
    rate: int
    settings: Settings
    env: dict[str, str]
    logs: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        child = subprocess.Popen(
            [sys.executable, "-m", "shopflow.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children[name] = child
        return child

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in self.children.values():
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


@contextmanager
def running_case(bus: str, rate: int, history: Path, scratch: Path, trigger: int) -> Iterator[Case]:
    """A copy of the history home with the landing consumer and the stream running on it."""
    from shopflow.sources.bus.factory import ensure_event_topic
    from shopflow.warehouse.live import ensure_current_view

    home = scratch / f"{bus}-{rate}"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(history, home, symlinks=False)
    tag = uuid.uuid4().hex[:8]
    base = load_settings()
    settings = base.model_copy(
        update={
            "home": home,
            "lake_root": None,
            "bus": BusKind(bus),
            "events_topic": f"latency-{tag}",
            "events_subscription": f"latency-{tag}-landing",
            "kafka_consumer_group": f"latency-{tag}",
        }
    )
    ensure_event_topic(settings)
    ensure_current_view(settings)
    logs = home / "logs"
    logs.mkdir()
    case = Case(bus, rate, settings, _env(settings), logs)
    try:
        case.start("landing", "ingest", "events")
        case.start("stream", "stream", "--trigger-seconds", str(trigger))
        _await_first_batch(case)
        yield case
    finally:
        case.stop()


def _await_first_batch(case: Case, bound: float = 600.0) -> None:
    from shopflow.transform.streaming import checkpoint_location

    commits = Path(checkpoint_location(case.settings)) / "commits"
    deadline = time.monotonic() + bound
    while not (commits.is_dir() and any(commits.iterdir())):
        for name, child in case.children.items():
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited {child.returncode}: {case.log(name)[-800:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stream committed no micro-batch in {bound:.0f} s")
        time.sleep(1)


def event_pool(settings: Settings, size: int) -> list[dict[str, Any]]:
    """Valid simulated events (products and users of the shop), to be re-stamped when sent."""
    from shopflow.simulator.config import DirtConfig, SimulationConfig
    from shopflow.simulator.shop import ShopSimulator

    config = SimulationConfig(seed=42, events=size, dirt=DirtConfig.clean())
    pool: list[dict[str, Any]] = []
    for batch in ShopSimulator(config).batches():
        pool.extend(json.loads(p) for p in batch.payloads)
        if len(pool) >= size:
            break
    return pool[:size]


def _seconds(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.1f}"


def _by_window(
    ledger: Ledger, latencies: Floats, started: float, window_minutes: float, stream: Usage
) -> str:
    """p95 and the stream's peak RSS per window of publishing (empty if no windows asked for)."""
    if window_minutes <= 0:
        return ""
    window = window_minutes * 60
    parts = []
    for k, (a, b) in enumerate(ledger.window_bounds(started, window)):
        rss = max(
            (r for t, r in stream.samples if k * window <= t - started < (k + 1) * window),
            default=0,
        )
        parts.append(f"{_seconds(percentile(latencies[a:b], 0.95))} s / {rss / 1024**3:.1f} GiB")
    return f"; p95 / stream peak RSS per {window_minutes:g} min: " + ", ".join(parts)


def run_case(
    case: Case,
    pool: list[dict[str, Any]],
    minutes: float,
    poll: float,
    drain: float,
    window_minutes: float = 0.0,
) -> tuple[Row, float]:
    """Publish at the case's rate for `minutes`; the row and the p95 latency."""
    from shopflow.sources.bus.factory import make_publisher

    prefix = f"lat-{case.rate}-"
    usage = {name: Usage(child.pid) for name, child in case.children.items()}
    for u in usage.values():
        u.cpu_start = u.cpu_seconds()
    chunk = max(1, case.rate // 10)
    ledger = Ledger(math.ceil(case.rate * minutes * 60) + 2 * chunk)
    publisher = make_publisher(case.settings)
    window = minutes * 60
    with Visibility(case.settings, prefix, poll, ledger) as visible:
        started = time.time()
        sent = 0
        next_sample = started
        try:
            while (now := time.time()) - started < window and sent + chunk <= ledger.stamp.size:
                stamp = datetime.fromtimestamp(now, UTC).isoformat()
                payloads = []
                for n in range(sent, sent + chunk):
                    event = dict(pool[n % len(pool)], event_id=f"{prefix}{n:09d}", event_ts=stamp)
                    payloads.append(json.dumps(event).encode())
                publisher.publish(payloads)
                done = time.time()
                ledger.record_published(sent, chunk, now, done)
                sent += chunk
                if done >= next_sample:
                    for u in usage.values():
                        u.sample()
                    next_sample = done + 1.0
                ahead = sent / case.rate - (time.time() - started)
                if ahead > 0:
                    time.sleep(ahead)
        finally:
            publisher.close()
        published_seconds = time.time() - started
        for u in usage.values():
            u.cpu_end = u.cpu_seconds()
        deadline = time.time() + drain
        while time.time() < deadline and ledger.visible < ledger.sent:
            for u in usage.values():
                u.sample()
            time.sleep(1)
    latencies = ledger.latencies()
    p50, p95, p99 = (percentile(latencies, q) for q in (0.50, 0.95, 0.99))
    missing = int(np.isinf(latencies).sum())
    cpu = {n: (u.cpu_end - u.cpu_start) / published_seconds for n, u in usage.items()}
    polls = np.asarray(visible.poll_durations)
    notes = (
        f"p50 {_seconds(p50)} s, p95 {_seconds(p95)} s, p99 {_seconds(p99)} s"
        f"{f', {missing:,} never visible within {drain:.0f} s' if missing else ''}; "
        f"sent at {sent / published_seconds:,.0f}/s; "
        f"landing {cpu['landing']:.2f} cores, {usage['landing'].peak_rss / 1024**2:,.0f} MiB; "
        f"stream {cpu['stream']:.2f} cores, {usage['stream'].peak_rss / 1024**2:,.0f} MiB; "
        f"poll p50 {percentile(polls, 0.5):.2f} s, max {percentile(polls, 1.0):.2f} s"
        f"{_by_window(ledger, latencies, started, window_minutes, usage['stream'])}"
    )
    row = Row(
        case=f"{case.bus}-{case.rate}/s",
        params={"bus": case.bus, "rate": case.rate, "minutes": minutes},
        wall_seconds=published_seconds,
        items=sent,
        peak_rss_bytes=usage["stream"].peak_rss,
        notes=notes,
    )
    return row, p95


@benchmark(
    "latency",
    title="Publish → warehouse latency of the live path",
    description=__doc__ or "",
)
def run(ctx: BenchContext) -> BenchResult:
    """Each bus's rates, low to high, until p95 passes the target."""
    minutes = float(ctx.params.get("minutes", "0.5" if ctx.quick else "5"))
    history = ctx.int_param("history", 50_000, 2_000)
    poll = float(ctx.params.get("poll", "1"))
    drain = float(ctx.params.get("drain", "120"))
    trigger = int(ctx.params.get("trigger", "2"))
    # Long runs report p95 and the stream's memory per window too: does either grow?
    window_minutes = float(ctx.params.get("window_minutes", "10" if minutes >= 20 else "0"))
    buses = ctx.list_param("buses", ("kafka", "pubsub"))
    if minutes <= 0 or poll <= 0 or drain < 0 or trigger < 1 or window_minutes < 0:
        raise ValueError(
            "--param minutes and poll must be positive, drain and window_minutes at least 0, "
            "trigger 1+"
        )
    unknown = sorted(set(buses) - set(DEFAULT_RATES))
    if unknown:
        raise ValueError(f"--param buses: unknown {', '.join(unknown)}; known: kafka, pubsub")
    from shopflow.services import ensure_services, service_statuses, stop_services

    base = load_settings().model_copy(update={"home": ctx.scratch})
    ours = [s.name for s in service_statuses(base, buses) if s.state == "stopped"]
    ensure_services(base, buses)
    try:
        return _run(ctx, minutes, history, poll, drain, trigger, window_minutes, buses)
    finally:
        if ours:
            stop_services(base, ours)


def _run(
    ctx: BenchContext,
    minutes: float,
    history: int,
    poll: float,
    drain: float,
    trigger: int,
    window_minutes: float,
    buses: list[str],
) -> BenchResult:
    home = history_home(ctx, history)
    pool = event_pool(load_settings(), 20_000 if not ctx.quick else 2_000)
    rows: list[Row] = []
    sustainable: dict[str, str] = {}
    for bus in buses:
        defaults = (QUICK_RATES if ctx.quick else DEFAULT_RATES)[bus]
        rates = [int(r) for r in ctx.list_param(f"{bus}_rates", defaults)]
        if any(rate < 1 for rate in rates):
            raise ValueError(f"--param {bus}_rates: each rate must be at least 1 event/s")
        best = "none"
        for rate in rates:
            with running_case(bus, rate, home, ctx.scratch, trigger) as case:
                row, p95 = run_case(case, pool, minutes, poll, drain, window_minutes)
            rows.append(row)
            print(f"{row.case}: {row.notes}", file=sys.stderr, flush=True)
            shutil.rmtree(case.settings.home, ignore_errors=True)
            if p95 > TARGET_P95_SECONDS:
                break
            best = f"{rate:,}/s"
        sustainable[bus] = best
    return BenchResult(
        rows=rows,
        settings={
            "history": f"{history:,} valid simulated events over one day, with its curated zone "
            "and warehouse (DuckDB ETL + load)",
            "window": f"{minutes:g} min of publishing per rate; poll every {poll:g} s; drain "
            f"{drain:.0f} s; stream trigger {trigger:g} s",
            "highest rate with p95 ≤ 30 s": ", ".join(f"{b}: {r}" for b, r in sustainable.items()),
        },
        notes=(
            "wall s: the publishing window; throughput: events sent per second of it.",
            "peak RSS: the stream's process tree (Python + Spark JVM); the landing's is in the notes.",
            "CPU: cores used by each process tree over the publishing window (CPU seconds / wall).",
        ),
    )
