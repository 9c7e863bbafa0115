"""The live path's processes for the integration tests: the landing consumer and `shopflow stream`
as children, events to publish, and a kill -9 of the stream in the middle of a micro-batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from shopflow.settings import Settings
from shopflow.sources.bus.factory import make_publisher

#: How long a burst may take to show once the stream runs (2 shared cores).
BURST_BOUND_S = 120.0


def event(event_id: str, user: str, ts: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_name": "view",
        "product_id": "p1",
        "user_id": user,
        "order_id": None,
        "price": 10.0,
        "event_ts": ts.isoformat(),
        "session_id": None,
    }


def publish(settings: Settings, payloads: Sequence[bytes | dict[str, Any]]) -> float:
    publisher = make_publisher(settings)
    try:
        publisher.publish(p if isinstance(p, bytes) else json.dumps(p).encode() for p in payloads)
    finally:
        publisher.close()
    return time.monotonic()


class Processes:
    """The landing consumer and the stream as child processes, logs under the home."""

    def __init__(self, settings: Settings) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
        self.env = {
            **base,
            **settings.child_environment(with_secrets=True),
            "SHOPFLOW_LANDING_BATCH_MAX_SECONDS": "1",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        self.logs = settings.home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = 0

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = (self.logs / f"{name}-{self.starts}.log").open("wb")
        child = subprocess.Popen(
            [sys.executable, "-m", "shopflow.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes Spark's JVM with it
        )
        self.children[name] = child
        return child

    def log(self, name: str) -> str:
        return "\n".join(p.read_text() for p in sorted(self.logs.glob(f"{name}-*.log")))

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in self.children.values():
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def batch_files(checkpoint: Path, kind: str) -> set[int]:
    folder = checkpoint / kind
    if not folder.is_dir():
        return set()
    return {int(p.name.split(".")[0]) for p in folder.iterdir() if p.name.split(".")[0].isdigit()}


def log_offset(checkpoint: Path, batch: int) -> int:
    """The file-source log entry a query batch reads up to (the offset file's last line)."""
    lines = (checkpoint / "offsets" / str(batch)).read_text().strip().splitlines()
    return int(json.loads(lines[-1])["logOffset"])


def kill_mid_batch(stream: subprocess.Popen[bytes], checkpoint: Path, after: int) -> int:
    """kill -9 the stream once a batch after `after` that reads new files has started (its offsets
    are written) and is not committed; return that batch id."""
    seen = log_offset(checkpoint, after)
    deadline = time.monotonic() + BURST_BOUND_S
    while time.monotonic() < deadline:
        started = {b for b in batch_files(checkpoint, "offsets") if b > after}
        for batch in sorted(started - batch_files(checkpoint, "commits")):
            try:
                new_files = log_offset(checkpoint, batch) > seen
            except (OSError, ValueError, KeyError):
                continue  # being written
            if new_files:
                os.killpg(stream.pid, signal.SIGKILL)  # the Python driver and its JVM
                stream.wait()
                assert batch not in batch_files(checkpoint, "commits"), "committed before kill"
                return batch
        time.sleep(0.02)
    raise AssertionError("no micro-batch of the third burst started within the bound")


def wait_committed(checkpoint: Path, batch: int, procs: Processes) -> None:
    """Wait (up to `BURST_BOUND_S`) until micro-batch `batch` has committed: a replayed batch's
    rows are visible once foreachBatch wrote them, and Spark writes the commit file just after."""
    deadline = time.monotonic() + BURST_BOUND_S
    while batch not in batch_files(checkpoint, "commits"):
        assert time.monotonic() < deadline, procs.log("stream")
        time.sleep(0.2)


def run_hourly_batch(procs: Processes) -> None:
    """`shopflow etl` then `shopflow load` in the children's environment. No catalogue in these
    tests: events naming unknown products or users must not stop the load."""
    env = {**procs.env, "SHOPFLOW_QUALITY_MAX_UNKNOWN_SHARE": "1"}
    for args in (("etl",), ("load",)):
        done = subprocess.run(
            [sys.executable, "-m", "shopflow.cli", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
