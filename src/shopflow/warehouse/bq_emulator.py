"""Launcher for the BigQuery emulator (PyPI `bqemulator` 1.4.0) as a subprocess on a free port.

The emulator runs in its own interpreter: `bqemulator` pins `grpcio-tools<1.81`, which needs
`protobuf<7`, while shopflow pins `protobuf==7.x` for its Pub/Sub client. So it lives in a separate
virtualenv (default `<sys.prefix>/bqemulator`, i.e. `.venv/bqemulator`; override with
`SHOPFLOW_TEST_BQEMULATOR_PYTHON`) and this module talks to it only over HTTP.

Two fixes are applied at launch, in the child, without touching site-packages:

* The engine's start-up `INSTALL spatial` downloads DuckDB's spatial extension and the emulator
  exits when that fails (no network here). Shopflow uses no GEOGRAPHY, so the step is skipped.
* The `google-cloud-bigquery` client sends `*/*` as the media part's Content-Type of a multipart
  load; the emulator's whitelist rejects it, so `*/*` is added to the whitelist.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Final

import httpx

from shopflow.errors import ShopflowError

#: Environment variable naming the Python interpreter that has `bqemulator` installed.
PYTHON_ENV: Final = "SHOPFLOW_TEST_BQEMULATOR_PYTHON"

# Runs inside the emulator's interpreter: patch, then hand over to bqemulator's own CLI.
_BOOTSTRAP: Final = """
import sys
import bqemulator.storage.engine as engine
import bqemulator.api.routes.upload as upload

engine.DuckDBEngine._load_spatial = lambda self: None
upload._PERMITTED_MEDIA_CONTENT_TYPES = (*upload._PERMITTED_MEDIA_CONTENT_TYPES, "*/*")

from bqemulator.cli import main

main(sys.argv[1:], prog_name="bqemulator")
"""


class EmulatorError(ShopflowError):
    """The BigQuery emulator could not be found, started or reached."""


def default_python() -> Path:
    """The interpreter that runs the emulator: `$SHOPFLOW_TEST_BQEMULATOR_PYTHON` or `.venv/bqemulator`."""
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        return Path(configured)
    return Path(sys.prefix) / "bqemulator" / "bin" / "python"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class BigQueryEmulator:
    """One running emulator process; use as a context manager or call `start`/`stop`."""

    project: str = "shopflow-test"
    python: Path = field(default_factory=default_python)
    log_path: Path | None = None
    startup_timeout: float = 60.0
    rest_port: int = 0
    grpc_port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        """Base URL to give the client as `client_options={"api_endpoint": ...}`."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> BigQueryEmulator:
        """Start the emulator on free ports and wait until its readiness probe answers."""
        if self.running:
            return self
        if not self.python.is_file():
            raise EmulatorError(
                f"no bqemulator interpreter at {self.python}: create it with "
                f"`python -m venv {self.python.parent.parent} && "
                f"{self.python.parent}/pip install bqemulator==1.4.0 duckdb==2.0.1`, "
                f"or set {PYTHON_ENV}"
            )
        self.rest_port = self.rest_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        env = {
            **os.environ,
            "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",  # avro: another download, not needed
            "BQEMU_LOG_LEVEL": "warning",
        }
        args = [
            str(self.python),
            "-c",
            _BOOTSTRAP,
            "start",
            "--rest-host=127.0.0.1",
            f"--rest-port={self.rest_port}",
            "--grpc-host=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--ephemeral",
            f"--project={self.project}",
        ]
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal is handled by stop(), not twice
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.endpoint}/readyz"
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise EmulatorError(f"bqemulator exited with code {code} during start-up{where}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise EmulatorError(f"bqemulator did not become ready on {url} in {self.startup_timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after `timeout`); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> BigQueryEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
