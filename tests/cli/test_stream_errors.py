"""`shopflow stream` as a process: a micro-batch that fails stops it with one line naming the
cause (not the Python traceback Spark wraps it in)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from shopflow.contracts import RAW_EVENT_SCHEMA
from shopflow.lake import LakeLayout, replace_partition, write_parquet_atomic
from shopflow.settings import Settings


def test_a_failed_micro_batch_stops_the_stream_with_one_line_naming_its_cause(
    settings: Settings,
) -> None:
    layout = LakeLayout.from_settings(settings)
    event_ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    event = {
        "event_id": "e1", "event_name": "view", "product_id": "p1", "user_id": "u-a",
        "order_id": None, "price": 100.0, "event_ts": event_ts, "session_id": None,
        "message_id": "m1", "publish_ts": event_ts, "ingest_ts": event_ts,
    }  # fmt: skip
    url = layout.event_batch_file_in(event_ts.date(), event_ts.hour, event_ts, ["m1"])
    write_parquet_atomic(pa.Table.from_pylist([event], RAW_EVENT_SCHEMA), url)
    # A users history whose user_name is a number: the merge refuses it (`check_file_types`).
    wrong = pa.table(
        {
            "user_id": ["u-a"],
            "user_name": [32],
            "valid_from": ["2026-01-01"],
            "valid_to": [None],
            "is_first_version": [True],
        }
    )
    replace_partition(wrong, layout.curated_root("users_history"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")},
        **settings.child_environment(with_secrets=True),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "shopflow.cli", "stream", "--available-now"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("shopflow: error: stream failed in micro-batch 0: "), done.stderr
    assert "column user_name is int64, expected string" in last, last
    assert "Traceback" not in last
