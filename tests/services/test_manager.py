"""The service manager with real processes, on ports of the test's own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from shopflow.errors import ServiceUnavailableError
from shopflow.services import ensure_services, service_statuses, stop_services
from shopflow.services.manager import ServiceStatus
from shopflow.settings import Settings
from tests.service_fixtures import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def private_settings(settings: Settings) -> Settings:
    """Settings whose services all live on free ports, so nothing shared is touched."""
    return settings.model_copy(
        update={
            "pubsub_emulator_host": f"127.0.0.1:{free_port()}",
            "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
            "orders_api_port": free_port(),
        }
    )


def by_name(settings: Settings) -> dict[str, ServiceStatus]:
    return {s.name: s for s in service_statuses(settings)}


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def test_start_twice_status_and_stop(private_settings: Settings) -> None:
    names = ["pubsub", "kafka", "orders-api"]
    try:
        ensure_services(private_settings, names)
        first = by_name(private_settings)
        for name in names:
            assert first[name].state == "running", first[name]
            pid = first[name].pid
            assert pid is not None
            assert first[name].log_file.exists()
            # Own session: the service survives its starter and stop can signal the group.
            assert os.getsid(pid) == pid
        with urllib.request.urlopen(f"{private_settings.orders_api_base_url}/healthz") as r:
            assert r.status == 200

        ensure_services(private_settings, names)  # harmless: nothing new is started
        second = by_name(private_settings)
        assert {n: second[n].pid for n in names} == {n: first[n].pid for n in names}
    finally:
        stop_services(private_settings, names)
    after = by_name(private_settings)
    for name in names:
        assert after[name].state == "stopped"
        pid = first[name].pid
        assert pid is not None and gone(pid)
        assert not (private_settings.run_dir / f"{name}.pid").exists()


def test_service_answering_but_not_ours_is_external_and_left_alone(
    settings: Settings, pubsub_emulator: str, kafka_broker: str
) -> None:
    shared = settings.model_copy(
        update={"pubsub_emulator_host": pubsub_emulator, "kafka_bootstrap_servers": kafka_broker}
    )
    ensure_services(shared, ["pubsub", "kafka"])
    statuses = by_name(shared)
    assert statuses["pubsub"].state == "external"
    assert statuses["kafka"].state == "external"
    assert statuses["pubsub"].pid is None
    assert not list(shared.run_dir.glob("*.pid"))
    stop_services(shared, ["pubsub", "kafka"])  # a no-op for external services
    assert by_name(shared)["kafka"].state == "external"


def test_stale_pid_file_is_cleaned_up(private_settings: Settings) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    private_settings.run_dir.mkdir(parents=True)
    pid_file = private_settings.run_dir / "kafka.pid"
    pid_file.write_text(json.dumps({"pid": dead.pid, "start_time": "1"}))
    assert by_name(private_settings)["kafka"].state == "stopped"
    assert not pid_file.exists()


def test_port_taken_by_something_else_is_a_clear_error(private_settings: Settings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        blocked = private_settings.model_copy(
            update={"kafka_bootstrap_servers": f"127.0.0.1:{port}"}
        )
        assert by_name(blocked)["kafka"].state == "blocked"
        with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port} is taken"):
            ensure_services(blocked, ["kafka"])


def test_service_that_dies_at_start_up_points_to_its_log(private_settings: Settings) -> None:
    # A directory where the SQLite file should be: the orders API exits at once.
    store = private_settings.home / "not-a-file"
    store.mkdir()
    broken = private_settings.model_copy(update={"orders_api_store": store})
    with pytest.raises(ServiceUnavailableError, match="exited during start-up") as info:
        ensure_services(broken, ["orders-api"])
    assert str(broken.run_dir / "orders-api.log") in str(info.value)
    assert by_name(broken)["orders-api"].state == "stopped"


def test_unknown_service_name(private_settings: Settings) -> None:
    with pytest.raises(Exception, match="unknown service nope"):
        ensure_services(private_settings, ["nope"])
