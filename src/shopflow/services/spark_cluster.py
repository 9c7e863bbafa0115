"""A Spark standalone cluster on this machine (a master and its workers, each its own JVM),
standing in for Dataproc: `make spark-cluster-up` / `make spark-cluster-down`.

    python -m shopflow.services.spark_cluster up|down|status [--dir DIR] [--master-port 7077] ...

Each process is started from pyspark's own `bin/spark-class` (the Spark that `spark-submit` in
this virtualenv runs), bound to 127.0.0.1 only: `--host 127.0.0.1` for the RPC endpoints and
`SPARK_LOCAL_IP=127.0.0.1` for the web UIs and the executors a worker launches (without it they
bind to every interface and register under the machine's external address). Pid files, logs and
the workers' work folders (executor logs, an application's files) are under `DIR` (default
`$SHOPFLOW_HOME/run/spark-cluster`). Each process has a session of its own, so `down` stops a
worker together with the executors it launched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from shopflow.errors import ShopflowError
from shopflow.services.probes import port_open
from shopflow.services.processes import live_pid_from_file, terminate_group, write_pid_file

HOST: Final = "127.0.0.1"
MASTER_CLASS: Final = "org.apache.spark.deploy.master.Master"
WORKER_CLASS: Final = "org.apache.spark.deploy.worker.Worker"
#: Heap of the master and worker daemons themselves (they only schedule; executors have their own).
DAEMON_MEMORY: Final = "512m"
STARTUP_TIMEOUT_SECONDS: Final = 120.0


def pyspark_home() -> Path:
    """The Spark installation inside the pyspark package (its bin/spark-class, jars/)."""
    import pyspark

    return Path(str(pyspark.__file__)).parent


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where a local standalone cluster lives and how big it is."""

    run_dir: Path
    spark_home: Path = field(default_factory=pyspark_home)
    master_port: int = 7077
    master_ui_port: int = 8080
    worker_ui_ports: tuple[int, ...] = (8081, 8082)
    worker_cores: int = 1
    worker_memory: str = "2g"

    @property
    def master_url(self) -> str:
        """What `spark-submit --master` takes."""
        return f"spark://{HOST}:{self.master_port}"

    @property
    def master_json_url(self) -> str:
        """The master's state as JSON (workers, running and completed applications)."""
        return f"http://{HOST}:{self.master_ui_port}/json/"

    def worker_json_url(self, index: int) -> str:
        """Worker `index`'s state as JSON (its running and finished executors)."""
        return f"http://{HOST}:{self.worker_ui_ports[index]}/json/"

    @property
    def names(self) -> tuple[str, ...]:
        """The processes, in start order."""
        return ("master", *(f"worker-{i + 1}" for i in range(len(self.worker_ui_ports))))


def _env(config: ClusterConfig) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(config.spark_home),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_LOCAL_HOSTNAME": HOST,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_LOG_DIR": str(config.run_dir),
        # No REST submission server (port 6066): spark-submit talks to the master's RPC port.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }


def _command(config: ClusterConfig, name: str) -> list[str]:
    spark_class = str(config.spark_home / "bin" / "spark-class")
    if name == "master":
        return [
            spark_class, MASTER_CLASS, "--host", HOST,
            "--port", str(config.master_port), "--webui-port", str(config.master_ui_port),
        ]  # fmt: skip
    index = int(name.rpartition("-")[2]) - 1
    return [
        spark_class, WORKER_CLASS, "--host", HOST,
        "--webui-port", str(config.worker_ui_ports[index]),
        "--cores", str(config.worker_cores), "--memory", config.worker_memory,
        "--work-dir", str(config.run_dir / name),
        config.master_url,
    ]  # fmt: skip


def _pid_file(config: ClusterConfig, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def log_file(config: ClusterConfig, name: str) -> Path:
    """The stdout and stderr of process `name`."""
    return config.run_dir / f"{name}.log"


def running_pid(config: ClusterConfig, name: str) -> int | None:
    """The pid of our live process `name`; a stale pid file is removed."""
    return live_pid_from_file(_pid_file(config, name))


def _spawn(config: ClusterConfig, name: str) -> int:
    command = _command(config, name)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    with log_file(config, name).open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        # Own session: it outlives this command, and stopping signals the whole group (a worker
        # and the executor JVMs it launched).
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=config.run_dir,
            env=_env(config),
            start_new_session=True,
        )
    write_pid_file(_pid_file(config, name), process.pid, command)
    return process.pid


def get_json(url: str, timeout: float = 2.0) -> Any:
    """A JSON document over HTTP, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def master_state(config: ClusterConfig) -> dict[str, Any] | None:
    """The master's JSON (`workers`, `activeapps`, `completedapps`, ...), or None if down."""
    state = get_json(config.master_json_url)
    return state if isinstance(state, dict) else None


def alive_workers(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The workers the master has registered and considers alive."""
    return [w for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE"]


def _wait(
    config: ClusterConfig,
    names: Sequence[str],
    ready: Callable[[], bool],
    what: str,
    timeout: float,
) -> None:
    """Wait until `ready()`; fail when one of the processes `names` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        dead = [n for n in names if running_pid(config, n) is None]
        if dead:
            raise ShopflowError(
                f"{dead[0]} exited while waiting for {what}; see {log_file(config, dead[0])}"
            )
        time.sleep(0.5)
    raise ShopflowError(f"no {what} after {timeout:.0f} s; see the logs in {config.run_dir}")


def start_cluster(
    config: ClusterConfig,
    timeout: float = STARTUP_TIMEOUT_SECONDS,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Start the master and the workers (what of them is not running yet) and wait until every
    worker has registered with the master; the master's JSON then. Starting twice is harmless."""
    say = report or (lambda line: None)
    if not (config.spark_home / "bin" / "spark-class").is_file():
        raise ShopflowError(f"no bin/spark-class under {config.spark_home}")
    missing = [name for name in config.names if running_pid(config, name) is None]
    for name in missing:
        for port in _ports(config, name):
            if port_open(HOST, port):
                raise ShopflowError(
                    f"port {port} on {HOST} ({name}) is taken by another process; stop it or "
                    "choose other ports (--master-port, --master-ui-port, --worker-ui-ports)"
                )
    try:
        if "master" in missing:
            say(f"master: starting on {config.master_url} (pid {_spawn(config, 'master')})")
        master = ("master",)
        _wait(config, master, lambda: master_state(config) is not None, "master web UI", timeout)
        for name in config.names[1:]:
            if name in missing:
                say(f"{name}: starting (pid {_spawn(config, name)})")
        wanted = len(config.worker_ui_ports)
        _wait(
            config,
            config.names,
            lambda: len(alive_workers(master_state(config))) >= wanted,
            f"{wanted} registered workers",
            timeout,
        )
    except BaseException:
        stop_cluster(config)  # a cluster short of a process is no use; leave nothing behind
        raise
    state = master_state(config)
    assert state is not None
    say(f"spark cluster: {config.master_url}, {wanted} workers alive, UI {config.master_json_url}")
    return state


def _ports(config: ClusterConfig, name: str) -> tuple[int, ...]:
    """The fixed ports process `name` listens on."""
    if name == "master":
        return (config.master_port, config.master_ui_port)
    return (config.worker_ui_ports[int(name.rpartition("-")[2]) - 1],)


def stop_cluster(config: ClusterConfig, report: Callable[[str], None] | None = None) -> None:
    """Stop the workers (with their executors), then the master: SIGTERM, then SIGKILL."""
    say = report or (lambda line: None)
    for name in reversed(config.names):
        pid = running_pid(config, name)
        if pid is None:
            say(f"{name}: not running (from {config.run_dir})")
            continue
        terminate_group(pid)
        _pid_file(config, name).unlink(missing_ok=True)
        say(f"{name}: stopped (pid {pid})")


def _parse(argv: Sequence[str]) -> tuple[str, ClusterConfig]:
    parser = argparse.ArgumentParser(
        prog="python -m shopflow.services.spark_cluster",
        description="A local Spark standalone cluster (a master, two workers) on 127.0.0.1.",
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--dir", type=Path, help="pid files, logs, work folders ($SHOPFLOW_HOME/run/spark-cluster)"
    )
    parser.add_argument("--master-port", type=int, default=7077)
    parser.add_argument("--master-ui-port", type=int, default=8080)
    parser.add_argument("--worker-ui-ports", default="8081,8082", help="one port per worker")
    parser.add_argument("--worker-cores", type=int, default=1)
    parser.add_argument("--worker-memory", default="2g")
    args = parser.parse_args(list(argv))
    run_dir = args.dir
    if run_dir is None:
        from shopflow.settings import load_settings

        run_dir = load_settings().run_dir / "spark-cluster"
    ports = tuple(int(p) for p in args.worker_ui_ports.split(",") if p.strip())
    config = ClusterConfig(
        run_dir=run_dir.absolute(),
        master_port=args.master_port,
        master_ui_port=args.master_ui_port,
        worker_ui_ports=ports,
        worker_cores=args.worker_cores,
        worker_memory=args.worker_memory,
    )
    return args.action, config


def main(argv: Sequence[str] | None = None) -> int:
    """`up`, `down` or `status`; exit 1 with one line on failure."""
    try:
        action, config = _parse(sys.argv[1:] if argv is None else argv)
        if action == "up":
            start_cluster(config, report=print)
        elif action == "down":
            stop_cluster(config, report=print)
        else:
            state = master_state(config)
            pids = {name: running_pid(config, name) for name in config.names}
            print(json.dumps({"pids": pids, "master": state}, indent=2))
            return 0 if state is not None else 3
    except ShopflowError as exc:
        print(f"spark cluster: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
