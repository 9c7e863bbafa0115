"""The local Spark standalone cluster's command line, without starting a JVM (the cluster itself
runs in tests/packaging/test_spark_cluster.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from shopflow.errors import ShopflowError
from shopflow.services.spark_cluster import ClusterConfig, main, start_cluster


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ClusterConfig(run_dir=tmp_path, master_ui_port=port)
        with pytest.raises(ShopflowError, match=f"port {port} on 127.0.0.1 \\(master\\) is taken"):
            start_cluster(config)
    assert list(tmp_path.iterdir()) == []  # no pid file, no log: nothing was started


def test_down_and_status_of_a_cluster_that_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ports nobody listens on: status finds no master.
    ports = []
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    options = ["--dir", str(tmp_path), "--master-ui-port", str(ports[0])]
    options += ["--worker-ui-ports", f"{ports[1]},{ports[2]}"]
    assert main(["down", *options]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{name}: not running (from {tmp_path})" for name in ("worker-2", "worker-1", "master")
    ]
    assert main(["status", *options]) == 3
    assert '"master": null' in capsys.readouterr().out
