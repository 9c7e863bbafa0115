"""`shopflow airflow down|status` act on the process group `up` recorded, and only on it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from shopflow.orchestration.local_airflow import (
    _group_members,
    _start_time,
    airflow_home,
    airflow_status,
    stop_airflow,
)
from shopflow.settings import Settings


def group_of_sleepers() -> subprocess.Popen[bytes]:
    """A leader with two children in a process group of its own, like `airflow standalone`."""
    leader = subprocess.Popen(
        ["bash", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True
    )
    deadline = time.monotonic() + 10
    while len(_group_members(leader.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_group_members(leader.pid)) == 3
    return leader


def record(settings: Settings, text: str) -> None:
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    (airflow_home(settings) / "standalone.pid").write_text(text)


def test_down_stops_the_children_of_a_leader_killed_with_9(settings: Settings) -> None:
    leader = group_of_sleepers()
    record(settings, f"{leader.pid} {_start_time(leader.pid)}")
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait()
    assert airflow_status(settings).running  # the children still run
    assert stop_airflow(settings, grace_seconds=5) is True
    assert _group_members(leader.pid) == []
    assert not airflow_status(settings).running


@pytest.mark.parametrize("text", ["0 1", "1 1", "-1 5", "garbage", "", "12 34 56"])
def test_a_pid_file_that_names_no_group_of_ours_is_ignored(settings: Settings, text: str) -> None:
    record(settings, text)
    assert not airflow_status(settings).running
    assert stop_airflow(settings) is False  # and signals nobody (the test process survives)


def test_a_reused_pid_is_not_taken_for_airflow(settings: Settings) -> None:
    stranger = group_of_sleepers()
    try:
        record(settings, f"{stranger.pid} 12345")  # recorded start time: not this process's
        assert not airflow_status(settings).running
        assert stop_airflow(settings) is False
        assert len(_group_members(stranger.pid)) == 3
    finally:
        os.killpg(stranger.pid, signal.SIGKILL)
        stranger.wait()
