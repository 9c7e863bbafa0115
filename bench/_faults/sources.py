"""Fault scenarios of the sources: services unreachable or cut off mid-run, a failing orders API."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from bench._faults.bus import (
    bus_env,
    publish,
    raw_files,
    valid_payloads,
)
from bench._faults.common import (
    Outcome,
    copy_raw_zone,
    free_port,
    must_succeed,
    run,
    shopflow_env,
    start,
    user_error,
)
from bench.etl_engines import RawZone


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


# -- a service going away mid-run ----------------------------------------------------------------


class TcpProxy:
    """A loopback TCP relay in front of a real service, that can cut every connection at once.

    `bytes_per_second` slows the relay down, so that a transfer is long enough to be cut in
    the middle.
    """

    def __init__(self, target: tuple[str, int], bytes_per_second: int | None = None) -> None:
        self.target = target
        self.port = free_port()
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


def must_fail(process: subprocess.Popen[str], outcome: Outcome, problem: str) -> None:
    """Wait for a command whose service was cut off: it must fail, with one line."""
    out, err = process.communicate(timeout=300)
    outcome.injections += 1
    if process.returncode == 0:
        outcome.problems.append(problem)
    else:
        user_error(subprocess.CompletedProcess(process.args, process.returncode, out, err), outcome)


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
        must_fail(pull, outcome, "a catalogue pull finished although the DB went away")
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
        must_fail(landing, outcome, "the landing consumer exited 0 although the bus went away")
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
    """The orders API failing 20% with 5xx, 10% with 429 + Retry-After, 10% past the client's
    timeout, and restarted under a pull; every order line exactly once in the lake and the
    warehouse."""
    from shopflow.contracts import OrderLine
    from shopflow.sources.orders_api.client import OrdersApiClient

    outcome = Outcome(f"orders API 5xx, 429, timeouts and a restart mid-pull, {pulls} pulls")
    started = time.monotonic()
    home = scratch / "orders-faults"
    lake = copy_raw_zone(zone, home)
    posted = ds.dataset(str(lake / "raw" / "orders"), format="parquet").to_table()
    shutil.rmtree(lake / "raw" / "orders")
    port = free_port()
    faults = {
        "orders_api_fault_5xx_rate": "0.2",
        "orders_api_fault_429_rate": "0.1",
        "orders_api_fault_slow_rate": "0.1",
        # Slower than the ingest's timeout below: these requests time out and are retried.
        "orders_api_fault_slow_seconds": "1.5",
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
    env = shopflow_env(home, orders_api_port=str(port), orders_api_timeout_seconds="1")
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
