"""The landing of an earlier commit, measured next to the current code (`--param baseline=REV`).

The commit's tree is extracted with `git archive` into the run's scratch directory, and its own
`bench.landing.land_all` lands the messages in a fresh interpreter whose import path is that tree:
the old consumer, validation and writes with the old defaults (only the bus, topic and lake of
the case are set). Publishing is the current code's: it is not what is compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from shopflow.settings import Settings

#: Run in the baseline's interpreter: its own land_all, and its peak RSS (VmHWM).
_CHILD = """
import dataclasses, json, sys
from bench._harness import peak_rss_bytes
from bench.landing import land_all
from shopflow.settings import load_settings
outcome = land_all(load_settings(), int(sys.argv[1]))
print(json.dumps({**dataclasses.asdict(outcome), "peak_rss_bytes": peak_rss_bytes()}))
"""


@dataclass(frozen=True, slots=True)
class Baseline:
    """An extracted commit: its short hash and the folder holding its tree."""

    commit: str
    root: Path


def extract_baseline(rev: str, scratch: Path) -> Baseline:
    """Extract commit `rev` of the repository this bench runs from into `scratch`."""
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short=12", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = scratch / f"baseline-{commit}"
    archive = scratch / f"baseline-{commit}.tar"
    subprocess.run(
        ["git", "-C", str(repo), "archive", "--output", str(archive), commit], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    archive.unlink()
    return Baseline(commit, root)


def land_with_baseline(
    baseline: Baseline, settings: Settings, expected: int
) -> tuple[dict[str, float | int | None], int]:
    """Land `expected` messages of the case's topic with the baseline's code; (outcome, peak RSS)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SHOPFLOW_") and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        {
            "PYTHONPATH": f"{baseline.root / 'src'}{os.pathsep}{baseline.root}",
            "SHOPFLOW_HOME": str(settings.home),
            "SHOPFLOW_LAKE_ROOT": settings.lake_url,
            "SHOPFLOW_BUS": settings.bus.value,
            "SHOPFLOW_PUBSUB_PULL_MODE": settings.pubsub_pull_mode,
            "SHOPFLOW_PUBSUB_EMULATOR_HOST": settings.pubsub_emulator_host or "",
            "SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "SHOPFLOW_EVENTS_TOPIC": settings.events_topic,
            "SHOPFLOW_EVENTS_SUBSCRIPTION": settings.events_subscription,
            "SHOPFLOW_KAFKA_CONSUMER_GROUP": settings.kafka_consumer_group,
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(expected)],
        env=env,
        cwd=baseline.root,  # its own .env, if any, is not read: `git archive` has none
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"baseline {baseline.commit} landing failed: {tail[0]}")
    values: dict[str, float | int | None] = json.loads(result.stdout.strip().splitlines()[-1])
    peak = int(values.pop("peak_rss_bytes") or 0)
    return values, peak
