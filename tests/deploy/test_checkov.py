"""checkov over deploy/terraform/: no failed check, and every skipped one carries its reason.

checkov runs from its own tool virtualenv (`make tools`: .venv-tools/, pinned in
scripts/tools-constraints.txt), never the project's: its pinned dependencies clash with ours.
Without a Prisma Cloud key checkov reports no severities, so every failed check counts.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest

from tests.deploy.terraform_config import TERRAFORM_DIR

REPO: Final = Path(__file__).resolve().parents[2]
#: The checkov binary: $SHOPFLOW_TEST_CHECKOV, else the tool venv's.
CHECKOV: Final = Path(
    os.environ.get("SHOPFLOW_TEST_CHECKOV", REPO / ".venv-tools" / "bin" / "checkov")
)
#: A skip's reason says why the check does not apply here, not just that it is skipped.
MIN_REASON_CHARS: Final = 60
#: Checks that must have run and passed on the lake bucket (what the bucket is for).
LAKE_BUCKET_CHECKS: Final = {
    "CKV_GCP_29",  # uniform bucket-level access
    "CKV_GCP_78",  # versioning
    "CKV_GCP_114",  # public access prevention
}


def _tool_environment() -> dict[str, str]:
    """This environment without the project's Python path: checkov must import only its own venv."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return environment


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report on `directory` (offline: nothing is fetched from Prisma Cloud)."""
    if not CHECKOV.is_file():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make tools`")
    completed = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=_tool_environment(),
    )
    # checkov exits 1 when a check failed; anything else but 0 is a crash.
    assert completed.returncode in (0, 1), f"checkov crashed: {completed.stderr[-2000:]}"
    report = json.loads(completed.stdout)
    assert isinstance(report, dict), "expected one report (one framework)"
    return report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_checkov(TERRAFORM_DIR)


def test_checkov_finds_no_failed_check(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 30, summary
    failed = [
        f"{c['check_id']} {c['check_name']} on {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed:\n" + "\n".join(failed)
    assert summary["failed"] == 0


def test_every_skipped_check_says_why(report: dict[str, Any]) -> None:
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        where = f"{check['check_id']} on {check['resource']}"
        assert len(reason.strip()) >= MIN_REASON_CHARS, (
            f"{where} is skipped without a reason: {reason!r}"
        )


def test_docs_deploy_explains_every_skipped_check(report: dict[str, Any]) -> None:
    guide = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    skipped = {check["check_id"] for check in report["results"]["skipped_checks"]}
    assert skipped, "expected the skips docs/deploy.md describes"
    missing = sorted(check_id for check_id in skipped if f"`{check_id}`" not in guide)
    assert not missing, f"docs/deploy.md's Hardening section does not explain {missing}"


def test_the_lake_bucket_passes_the_access_and_versioning_checks(report: dict[str, Any]) -> None:
    passed = {
        c["check_id"]
        for c in report["results"]["passed_checks"]
        if c["resource"] == "google_storage_bucket.lake"
    }
    assert passed >= LAKE_BUCKET_CHECKS, f"missing: {sorted(LAKE_BUCKET_CHECKS - passed)}"


def test_checkov_fails_a_public_bucket_and_an_unexplained_skip(tmp_path: Path) -> None:
    """The gate can fail: a bucket with public access allowed and no versioning, and a skip
    without a reason, are reported."""
    (tmp_path / "bad.tf").write_text(
        """
resource "google_storage_bucket" "open" {
  #checkov:skip=CKV_GCP_62
  name                        = "open-bucket"
  location                    = "asia-south1"
  uniform_bucket_level_access = false
  public_access_prevention    = "inherited"
}

resource "google_storage_bucket_iam_member" "everyone" {
  bucket = google_storage_bucket.open.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}
""",
        encoding="utf-8",
    )
    bad = run_checkov(tmp_path)
    failed = {c["check_id"] for c in bad["results"]["failed_checks"]}
    assert {"CKV_GCP_28", "CKV_GCP_29", "CKV_GCP_78", "CKV_GCP_114"} <= failed, failed
    reasons = [
        c["check_result"].get("suppress_comment", "") for c in bad["results"]["skipped_checks"]
    ]
    assert reasons and all(len(r.strip()) < MIN_REASON_CHARS for r in reasons)
