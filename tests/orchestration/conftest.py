"""Airflow for the orchestration tests: a metadata DB of this test process's own.

Airflow reads its configuration when first imported, so the environment is set here, before any
test module of this folder imports it; every pytest-xdist worker gets its own AIRFLOW_HOME.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="shopflow-airflow-test-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB under this process's AIRFLOW_HOME (for `dag.test()`)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    done = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return home
