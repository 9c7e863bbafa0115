"""Lake fixtures: one lake root per test, on the local file system or on a real fake-gcs-server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shopflow.lake.io import resolve
from tests.gcs_fixtures import fake_gcs_endpoint

__all__ = ["Lake", "fake_gcs_endpoint", "gcs_lake", "lake", "local_lake"]


@dataclass(frozen=True)
class Lake:
    """A lake root for one test and the storage options that reach it."""

    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_gcs(self) -> bool:
        """Whether this lake lives on the fake GCS server."""
        return self.root.startswith("gs://")

    def url(self, *parts: str) -> str:
        """A URL under the root."""
        return "/".join((self.root, *parts))

    def fs(self) -> Any:
        """The fsspec file system of the lake."""
        return resolve(self.root, self.storage_options)[0]


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.integration)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """An empty lake: a temp folder, or a fresh bucket on the fake GCS server."""
    if request.param == "local":
        return Lake(str(tmp_path / "lake"))
    return _gcs_lake(request.getfixturevalue("fake_gcs_endpoint"))


@pytest.fixture
def gcs_lake(fake_gcs_endpoint: str) -> Lake:
    """An empty lake in a fresh bucket on the fake GCS server, for what only GCS has."""
    return _gcs_lake(fake_gcs_endpoint)


def _gcs_lake(endpoint: str) -> Lake:
    options = {"endpoint_url": endpoint, "token": "anon", "project": "shopflow-test"}
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    lake = Lake(f"gs://{bucket}/lake", options)
    lake.fs().mkdir(bucket)
    return lake


@pytest.fixture
def local_lake(tmp_path: Path) -> Lake:
    """A lake in a temp folder, for tests of what only a local file system has."""
    return Lake(str(tmp_path / "lake"))
