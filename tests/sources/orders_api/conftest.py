"""A real orders API server (`python -m shopflow.sources.orders_api`) on a free port per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shopflow.settings import Settings, load_settings
from shopflow.sources.orders_api.client import OrdersApiClient

STARTUP_TIMEOUT_SECONDS = 30.0
TEST_TOKEN = "test-token-0123456789"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningOrdersApi:
    """A started orders API process and the settings it runs with."""

    settings: Settings
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return self.settings.orders_api_base_url

    def client(self, timeout_seconds: float = 10.0) -> OrdersApiClient:
        return OrdersApiClient.from_settings(self.settings, timeout_seconds=timeout_seconds)


StartOrdersApi = Callable[..., RunningOrdersApi]


@pytest.fixture
def start_orders_api(settings: Settings, tmp_path: Path) -> Iterator[StartOrdersApi]:
    """Start the API as the service manager does (same command, SHOPFLOW_* environment).

    Keyword arguments are settings overrides, e.g. `orders_api_fault_5xx_rate=0.2`.
    """
    started: list[RunningOrdersApi] = []

    def start(**overrides: object) -> RunningOrdersApi:
        values: dict[str, object] = {
            "orders_api_host": "127.0.0.1",
            "orders_api_port": free_port(),
            "orders_api_token": TEST_TOKEN,
            "orders_api_store": tmp_path / f"orders-{len(started)}.sqlite3",
            **overrides,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
        env["SHOPFLOW_HOME"] = str(settings.home)
        env.update({f"SHOPFLOW_{key.upper()}": str(value) for key, value in values.items()})
        api_settings = load_settings(home=settings.home, **values)
        log_path = tmp_path / f"orders-api-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "shopflow.sources.orders_api"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        running = RunningOrdersApi(api_settings, process, log_path)
        started.append(running)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"orders API exited with {process.returncode}: {log_path.read_text()}")
            try:
                if httpx.get(f"{running.base_url}/healthz", timeout=1.0).status_code == 200:
                    return running
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"orders API did not start in time: {log_path.read_text()}")
            time.sleep(0.1)

    yield start

    for running in started:
        running.process.terminate()
        try:
            running.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


@pytest.fixture
def orders_api(start_orders_api: StartOrdersApi) -> RunningOrdersApi:
    """An orders API without fault injection."""
    return start_orders_api()
