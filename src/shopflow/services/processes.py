"""Process-group plumbing for detached services: liveness (pid-reuse safe) and termination."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

STOP_GRACE_SECONDS = 10.0


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (guards against pid reuse), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def reap(pid: int) -> None:
    """Collect a child's exit status if this process happens to be its parent."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, start_time: str | None) -> bool:
    """Whether `pid` is alive and is still the process that started at `start_time`."""
    reap(pid)
    current = proc_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group `pgid`."""
    reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds while only a zombie leader is left; treat that as gone.
    return proc_start_time(pgid) is not None or _group_has_live_member(pgid)


def _group_has_live_member(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def terminate_group(pgid: int, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        if not group_alive(pgid):
            return
        time.sleep(0.1)


def write_pid_file(path: Path, pid: int, command: list[str]) -> None:
    """Record `pid` (with its start time, against pid reuse) atomically at `path`."""
    record = {"pid": pid, "start_time": proc_start_time(pid), "command": command}
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def live_pid_from_file(path: Path) -> int | None:
    """The pid recorded at `path` if that process still lives; a stale or unreadable file is
    removed."""
    try:
        record = json.loads(path.read_text())
        pid, start_time = int(record["pid"]), record.get("start_time")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if alive(pid, start_time):
        return pid
    path.unlink(missing_ok=True)
    return None
