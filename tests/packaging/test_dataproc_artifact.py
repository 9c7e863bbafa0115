"""`make dataproc-artifact`: the ETL's main file and its --py-files zip, and a batch run with them.

The zip must hold shopflow and its pure-Python dependencies and never pyspark (the cluster's) or
compiled code (Python cannot import it from a zip). The batch run stands in for Dataproc: this
tree's spark-submit drives a Python that has only the compiled distributions the runtime image
provides, and the entry point finds everything else in the zip.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.packaging.conftest import (
    ETL_COMPILED,
    ROOT,
    SPARK_HOME,
    SPARK_SUBMIT,
    clean_env,
    cluster_python,
    offline_pip,
    run,
)

pytestmark = pytest.mark.integration


def test_artefact_holds_shopflow_and_its_pure_dependencies_only(artefact: Path) -> None:
    assert len(list(artefact.glob("shopflow-*-py3-none-any.whl"))) == 1
    out = artefact / "dataproc"
    assert sorted(p.name for p in out.iterdir()) == [
        "entrypoint.py",
        "runtime-provided.txt",
        "shopflow.zip",
    ]
    entry = (ROOT / "src/shopflow/transform/entrypoint.py").read_bytes()
    assert (out / "entrypoint.py").read_bytes() == entry
    names = zipfile.ZipFile(out / "shopflow.zip").namelist()
    tops = {n.split("/")[0] for n in names}
    for package in ("shopflow", "pydantic_settings", "dotenv", "fsspec", "gcsfs", "tenacity"):
        assert package in tops, package
    assert "google/cloud/storage/__init__.py" in names
    assert "shopflow/transform/entrypoint.py" in names
    assert not {"pyspark", "py4j"} & tops
    assert [n for n in names if n.endswith((".so", ".pyd", ".pyc"))] == []
    provided = (out / "runtime-provided.txt").read_text().splitlines()
    pinned = {line.split("==")[0] for line in provided if not line.startswith("#")}
    assert set(ETL_COMPILED) <= pinned
    assert "pyspark" not in pinned


def test_batch_runs_the_entry_point_from_the_zip(
    artefact: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    out = artefact / "dataproc"
    provided = (out / "runtime-provided.txt").read_text().splitlines()
    # The cluster's Python: the compiled distributions only, no shopflow, no pyspark.
    python = cluster_python(artefact, wheelhouse, tmp_path / "runtime")
    home = tmp_path / "home"
    env = clean_env(
        SPARK_HOME=str(SPARK_HOME),
        PYSPARK_PYTHON=str(python),
        PYSPARK_DRIVER_PYTHON=str(python),
        SHOPFLOW_HOME=str(home),
        SPARK_LOCAL_IP="127.0.0.1",  # the driver's ports on loopback only
    )
    command = [
        str(SPARK_SUBMIT),
        "--master", "local[1]",
        "--conf", "spark.ui.enabled=false",
        "--py-files", str(out / "shopflow.zip"),
        str(out / "entrypoint.py"),
        "--hour", "2026-11-25T10",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    # The entry point imported shopflow from the zip, opened spark-submit's session and read the
    # (empty) lake: exit code 2 and the one-line error, not an ImportError. (spark-submit passes
    # the Python driver's stderr on to its own stdout.)
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("shopflow: error:")]
    assert done.returncode == 2, output[-3000:]
    assert errors == [
        f"shopflow: error: the lake at {home / 'lake'} has no raw events yet: land some with "
        "`shopflow ingest events` (or run `shopflow demo`)"
    ]
    assert "Traceback" not in output

    # With every distribution of runtime-provided.txt in the cluster's Python, the zip completes
    # the gcp modules too: gcsfs (the gs:// lake), the Google clients, whose `google` namespace
    # package spans the zip and the runtime's site-packages (protobuf).
    rest = [line for line in provided if line and not line.startswith("#")]
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-compile", "--no-deps", *rest]
    run(pip, env=clean_env(**offline_pip(wheelhouse)))
    modules = (
        "gcsfs, google.cloud.storage, shopflow.lake.gcs, shopflow.warehouse.bigquery_warehouse, "
        "shopflow.sources.bus.pubsub"
    )
    code = f"import {modules}, shopflow; print(shopflow.__file__)"
    env = clean_env(PYTHONPATH=str(out / "shopflow.zip"))
    imported = run([str(python), "-c", code], env=env, cwd=tmp_path).stdout.strip()
    assert imported == str(out / "shopflow.zip" / "shopflow" / "__init__.py")
