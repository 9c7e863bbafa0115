"""Airflow on this machine: `airflow standalone` (scheduler, API server and UI, DAG processor,
triggerer) with the project's DAGs, its metadata DB under `$SHOPFLOW_HOME/airflow`, no example
DAGs, the UI and API on 127.0.0.1, started in a process group of its own so `down` stops all of
it. (Airflow's log servers bind every interface, a host Airflow hard-codes; they get free ports.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from shopflow.errors import ShopflowError
from shopflow.services.probes import port_open
from shopflow.settings import Settings

#: The one pool the DAGs use: the lake/warehouse writers (ETL, load), one at a time.
POOLS: Final = {"shopflow_lake_writer": (1, "ETL and load: one writer of the lake at a time")}
USER: Final = "admin"
HEALTHY_WITHIN_SECONDS: Final = 180.0


class AirflowError(ShopflowError):
    """The local Airflow could not be started, reached or stopped."""


@dataclass(frozen=True, slots=True)
class AirflowStatus:
    """Whether the local Airflow runs, where, and how its parts report."""

    running: bool
    url: str
    pid: int | None = None
    health: dict[str, str] | None = None
    password: str | None = None


def airflow_home(settings: Settings) -> Path:
    """`$SHOPFLOW_HOME/airflow`: Airflow's config, SQLite metadata DB and logs."""
    return (settings.home / "airflow").resolve()


def dags_folder() -> Path:
    """The project's `dags/` (beside `src/` in a checkout)."""
    folder = Path(__file__).resolve().parents[3] / "dags"
    if not folder.is_dir():
        raise AirflowError(f"no dags/ folder at {folder}: run from a checkout of shopflow")
    return folder


def _bin(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise AirflowError(
            f"{path} is missing: install the airflow extra (`make setup` does: pip install "
            "-c constraints.txt -e '.[local,dashboard,airflow,dev]')"
        )
    return str(path)


def airflow_environment(settings: Settings) -> dict[str, str]:
    """The environment Airflow and its tasks run with (the tasks read SHOPFLOW_* from it)."""
    home = airflow_home(settings)
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **settings.child_environment(with_secrets=True),
        # Airflow starts its parts as `airflow ...` subprocesses: the venv's bin must come first.
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{settings.airflow_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": (
            f"http://127.0.0.1:{settings.airflow_port}/execution/"
        ),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": "0",
        # The pipeline runs as soon as Airflow is up, unless the caller says otherwise.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": os.environ.get(
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False"
        ),
        "no_proxy": "*",
    }


def _pid_file(settings: Settings) -> Path:
    return airflow_home(settings) / "standalone.pid"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (zombies excluded)."""
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(proc.name))
    return members


def _recorded_group(settings: Settings) -> int | None:
    """The process group `up` recorded, if it still has members and is the one recorded.

    The record is "<pid> <start time>": a pid reused by another program, or a leader that died
    (kill -9) leaving its children, is told apart by the leader's start time and by the group's
    members, so `down` never signals a stranger's processes and never forgets Airflow's.
    """
    path = _pid_file(settings)
    try:
        pid_text, started = path.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if pid <= 1:
        return None
    leader_start = _start_time(pid)
    if leader_start is not None and leader_start != started:
        return None  # the pid now belongs to another program
    return pid if _group_members(pid) else None


def _password(settings: Settings) -> str | None:
    generated = airflow_home(settings) / "simple_auth_manager_passwords.json.generated"
    try:
        return str(json.loads(generated.read_text())[USER])
    except (FileNotFoundError, KeyError, ValueError):
        return None


def ui_url(settings: Settings) -> str:
    """Where the local Airflow's UI and REST API answer."""
    return f"http://127.0.0.1:{settings.airflow_port}"


def _health(settings: Settings) -> dict[str, str] | None:
    try:
        answer = httpx.get(f"{ui_url(settings)}/api/v2/monitor/health", timeout=3)
        data = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {
        part: str(value.get("status")) for part, value in data.items() if isinstance(value, dict)
    }


def airflow_status(settings: Settings) -> AirflowStatus:
    """Is the local Airflow running, and how healthy are its parts?"""
    pid = _recorded_group(settings)
    return AirflowStatus(
        running=pid is not None,
        url=ui_url(settings),
        pid=pid,
        health=_health(settings) if pid else None,
        password=_password(settings),
    )


def _run_cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [_bin("airflow"), *args], env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        lines = [
            line.strip()
            for line in (done.stderr + done.stdout).splitlines()
            if line.strip() and "Background on this error" not in line
        ]
        errors = [line for line in lines if "Error" in line or "error" in line]
        last = (errors or lines or ["no output"])[-1][:300]
        raise AirflowError(f"`airflow {' '.join(args)}` failed: {last}")


@contextlib.contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    """One `up` or `down` of a home at a time."""
    lock = airflow_home(settings) / "control.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_airflow(settings: Settings) -> AirflowStatus:
    """Start `airflow standalone` in the background and wait until every part is healthy."""
    home = airflow_home(settings)
    try:
        home.mkdir(parents=True, exist_ok=True)
        with _exclusive(settings):
            return _start(settings, home)
    except OSError as exc:
        raise AirflowError(f"cannot use {home}: {exc.strerror or exc}") from None


def _start(settings: Settings, home: Path) -> AirflowStatus:
    if _recorded_group(settings) is not None:
        return airflow_status(settings)
    if port_open("127.0.0.1", settings.airflow_port):
        raise AirflowError(
            f"something else listens on 127.0.0.1:{settings.airflow_port}: stop it or set "
            "SHOPFLOW_AIRFLOW_PORT"
        )
    env = airflow_environment(settings)
    # Airflow's log servers listen on every interface on fixed ports (8793, 8794) that another
    # Airflow on this machine would also take: free ports of their own for this one.
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(_free_port())
    env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(_free_port())
    _run_cli(env, "db", "migrate")
    for name, (slots, description) in POOLS.items():
        _run_cli(env, "pools", "set", name, str(slots), description)
    with (home / "standalone.log").open("ab") as log:
        process = subprocess.Popen(
            [_bin("airflow"), "standalone"],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `down` signals every part at once
        )
    try:
        _pid_file(settings).write_text(f"{process.pid} {_start_time(process.pid)}")
        return _wait_healthy(settings, process, home)
    except BaseException:
        _stop_group(process.pid)
        process.wait()
        _pid_file(settings).unlink(missing_ok=True)
        raise


def _wait_healthy(
    settings: Settings, process: subprocess.Popen[bytes], home: Path
) -> AirflowStatus:
    deadline = time.monotonic() + HEALTHY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AirflowError(
                f"airflow standalone exited with {process.returncode}; see {home / 'standalone.log'}"
            )
        health = _health(settings)
        healthy = bool(health) and all(v == "healthy" for v in (health or {}).values())
        if healthy and _password(settings) is not None:
            return airflow_status(settings)
        time.sleep(1.0)
    raise AirflowError(
        f"Airflow was not healthy within {HEALTHY_WITHIN_SECONDS:.0f} s; "
        f"see {home / 'standalone.log'}"
    )


def stop_airflow(settings: Settings, grace_seconds: float = 30.0) -> bool:
    """Stop every process `start_airflow` started (its process group); False if none ran."""
    home = airflow_home(settings)
    if not home.is_dir():
        return False
    try:
        with _exclusive(settings):
            pgid = _recorded_group(settings)
            if pgid is not None:
                _stop_group(pgid, grace_seconds)
            _pid_file(settings).unlink(missing_ok=True)
    except OSError as exc:
        raise AirflowError(f"cannot use {home}: {exc.strerror or exc}") from None
    return pgid is not None


def _stop_group(pgid: int, grace_seconds: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and _group_members(pgid):
        time.sleep(0.3)
    if _group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
