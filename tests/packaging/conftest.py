"""Fixtures of the packaging tests: one wheel, one wheelhouse and one Dataproc artefact per
session, fresh virtualenvs.

Every install resolves from a wheelhouse downloaded once per session (`pip download` under
constraints.txt), so the virtualenvs and the artefact build do not ask PyPI again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Mapping
from pathlib import Path

import pyspark
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
#: The Spark installation standing in for the cluster's (this venv's pyspark; spark-submit here).
SPARK_HOME = Path(str(pyspark.__file__)).parent
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
#: The compiled distributions the Spark ETL's driver imports (runtime-provided.txt pins them).
ETL_COMPILED = ("numpy", "pyarrow", "pydantic", "pydantic-core")
#: The wheel platforms scripts/dataproc_artifact.py resolves for (manylinux, x86_64).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def run(
    command: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 900,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output when it fails."""
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd
    )
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        pytest.fail(f"{command[:4]} exited {done.returncode}:\n{output}")
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH (it points at the source tree), SHOPFLOW_* and pip's
    own settings, plus `extra`."""
    dropped = {"PYTHONPATH", "VIRTUAL_ENV", "SPARK_HOME"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not k.startswith(("SHOPFLOW_", "PIP_"))
    }
    return {**env, **extra}


def offline_pip(wheelhouse: Path) -> dict[str, str]:
    """pip settings that resolve from `wheelhouse` only."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}


def fresh_venv(path: Path, wheelhouse: Path, *requirements: str) -> Path:
    """A new virtualenv at `path` with `requirements` installed from the wheelhouse; its python."""
    venv.EnvBuilder(with_pip=True).create(path)
    python = path / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-compile"]
    command = [*pip, "--disable-pip-version-check", "--constraint", str(CONSTRAINTS)]
    run([*command, *requirements], env=clean_env(**offline_pip(wheelhouse)))
    return python


def installed_distributions(python: Path) -> set[str]:
    """Canonical names of the distributions installed in `python`'s environment."""
    code = (
        "import importlib.metadata as m, re\n"
        "print('\\n'.join(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()"
        " for d in m.distributions()})))"
    )
    return set(run([str(python), "-c", code], env=clean_env()).stdout.split())


@pytest.fixture(scope="session")
def shopflow_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shopflow wheel built once from this tree."""
    dist = tmp_path_factory.mktemp("wheel")
    script = [sys.executable, str(ROOT / "scripts/dataproc_artifact.py"), "--wheel-only"]
    run([*script, "--dist", str(dist)], env=clean_env())
    (wheel,) = dist.glob("shopflow-*.whl")
    return wheel


@pytest.fixture(scope="session")
def wheelhouse(shopflow_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of `shopflow[gcp]` under constraints.txt for this Python, and the build backend."""
    house = tmp_path_factory.mktemp("wheelhouse")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "-d", str(house)]
    command += ["--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION]
    command += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command += [
        "--constraint",
        str(CONSTRAINTS),
        f"{shopflow_wheel}[gcp]",
        "setuptools>=77",
        "wheel",
    ]
    run(command, env=clean_env())
    return house


@pytest.fixture(scope="session")
def artefact(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dataproc-artifact` into a temporary dist/, for this interpreter's Python version, run
    by a fresh virtualenv's Python (the target needs only pip; pip resolves from the wheelhouse)."""
    builder = tmp_path_factory.mktemp("builder")
    venv.EnvBuilder(with_pip=True).create(builder)
    dist = tmp_path_factory.mktemp("dist")
    make = ["make", "-C", str(ROOT), "dataproc-artifact", f"DIST={dist}"]
    make += [f"DATAPROC_PYTHON={PYTHON_VERSION}", f"BUILD_PYTHON={builder / 'bin' / 'python'}"]
    run(make, env=clean_env(**offline_pip(wheelhouse)))
    return dist


def cluster_python(artefact: Path, wheelhouse: Path, path: Path) -> Path:
    """The cluster's Python, as a new virtualenv at `path`: only the compiled distributions the
    ETL imports, at runtime-provided.txt's versions; no shopflow, no pyspark."""
    provided = (artefact / "dataproc" / "runtime-provided.txt").read_text().splitlines()
    pins = [line for line in provided if line.split("==")[0] in ETL_COMPILED]
    assert len(pins) == len(ETL_COMPILED)
    python = fresh_venv(path, wheelhouse, *pins)
    absent = "import importlib.util as u, sys; sys.exit(u.find_spec('shopflow') is not None)"
    run([str(python), "-c", absent], env=clean_env())
    return python
