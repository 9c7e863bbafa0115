"""`shopflow services` as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopflow.settings import Settings
from tests.service_fixtures import free_port

pytestmark = pytest.mark.integration

SHOPFLOW = str(Path(sys.executable).parent / "shopflow")


def run(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SHOPFLOW_HOME": str(settings.home), **env}
    return subprocess.run(
        [SHOPFLOW, "services", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_up_status_down(settings: Settings) -> None:
    kafka = f"127.0.0.1:{free_port()}"
    up = run(settings, "up", "kafka", SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS=kafka)
    try:
        assert up.returncode == 0, up.stderr
        assert f"kafka: started on {kafka}" in up.stdout
        status = run(settings, "status", SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS=kafka)
        assert status.returncode == 0, status.stderr
        kafka_row = next(line for line in status.stdout.splitlines() if "kafka" in line)
        assert "running" in kafka_row and kafka in kafka_row
        assert str(settings.run_dir / "kafka.log") in status.stdout
        for column in ("name", "state", "pid", "address", "log file"):
            assert column in status.stdout
    finally:
        down = run(settings, "down", "kafka", SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS=kafka)
    assert down.returncode == 0, down.stderr
    assert "kafka: stopped" in down.stdout
    status = run(settings, "status", SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS=kafka)
    assert any("kafka" in line and "stopped" in line for line in status.stdout.splitlines())


def test_unknown_service_is_one_line_and_exit_2(settings: Settings) -> None:
    result = run(settings, "up", "bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "shopflow: error: unknown service bogus: choose from pubsub, kafka, orders-api"
    ]
