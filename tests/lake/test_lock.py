"""The lake's writer lock: a second holder is refused with the first named; a dead one frees it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from shopflow.lake import LakeBusyError, LakeError, writer_lock
from tests.lake.conftest import Lake

#: Takes the lock in its own process, says so, then holds it until killed.
HOLDER = """
import json, sys, time
from shopflow.lake import writer_lock
root, options, lease = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
from datetime import timedelta
from pathlib import Path
with writer_lock(root, "test holder", storage_options=options, lease=timedelta(seconds=lease)):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_in_process(lake: Lake, lease_seconds: float = 600) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            lake.root,
            json.dumps(lake.storage_options),
            str(lease_seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_is_refused_with_the_holder_named(lake: Lake) -> None:
    holder = hold_in_process(lake)
    try:
        with (
            pytest.raises(LakeBusyError) as refused,
            writer_lock(lake.root, "second", storage_options=lake.storage_options),
        ):
            pytest.fail("took a lock another process holds")
        message = str(refused.value)
        assert "test holder" in message and f"pid {holder.pid}" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_free_again_after_release(lake: Lake) -> None:
    with writer_lock(lake.root, "first", storage_options=lake.storage_options):
        pass
    with writer_lock(lake.root, "second", storage_options=lake.storage_options) as held:
        assert held["command"] == "second"


def test_a_holder_killed_with_sigkill_does_not_block_the_next_run(local_lake: Lake) -> None:
    holder = hold_in_process(local_lake)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # Locally the kernel drops the flock with the process: free at once.
    with writer_lock(local_lake.root, "after the kill") as held:
        assert held["command"] == "after the kill"


@pytest.mark.integration
def test_on_gcs_a_live_holder_keeps_its_lease_and_a_dead_ones_expires(
    request: pytest.FixtureRequest,
) -> None:
    lake = _gcs_lake(request)
    holder = hold_in_process(lake, lease_seconds=1.5)
    try:
        time.sleep(3.0)  # two lease lengths: only the renewals keep it held
        with (
            pytest.raises(LakeBusyError),
            writer_lock(lake.root, "too early", storage_options=lake.storage_options),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with (
        pytest.raises(LakeBusyError),
        writer_lock(lake.root, "before expiry", storage_options=lake.storage_options),
    ):
        pass  # the dead holder's lease has not run out yet
    time.sleep(2.0)
    with writer_lock(
        lake.root, "after expiry", storage_options=lake.storage_options, lease=timedelta(seconds=5)
    ) as held:
        assert held["command"] == "after expiry"


def _gcs_lake(request: pytest.FixtureRequest) -> Lake:
    endpoint: str = request.getfixturevalue("fake_gcs_endpoint")
    options = {"endpoint_url": endpoint, "token": "anon", "project": "shopflow-test"}
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    lake = Lake(f"gs://{bucket}/lake", options)
    lake.fs().mkdir(bucket)
    return lake


def test_a_lock_path_that_is_not_a_file_is_one_clear_error(local_lake: Lake) -> None:
    (Path(local_lake.root) / "_state" / "locks" / "writer.lock").mkdir(parents=True)
    with (
        pytest.raises(LakeError, match="cannot open the lake's writer lock") as caught,
        writer_lock(local_lake.root, "blocked"),
    ):
        pass
    assert "\n" not in str(caught.value)
