"""The ETL's spark-submit main file (local spark-submit and Dataproc), and `python -m` entry.

    spark-submit src/shopflow/transform/entrypoint.py --hour 2026-11-25T10
    python -m shopflow.transform.entrypoint --since 2026-11-25T00 --until 2026-11-26T00
    python -m shopflow.transform.entrypoint --start 2026-11-25 --end 2026-11-25   (backfill)

Same code path as `shopflow etl|backfill`: the arguments become an `EtlRequest` and `run_etl` runs
it. Configuration comes from `SHOPFLOW_*` variables (on Dataproc, e.g. `SHOPFLOW_PROFILE=gcp` and
`SHOPFLOW_LAKE_ROOT=gs://...` through `spark.yarn.appMasterEnv.*` / `spark.executorEnv.*`).
Exit code 2 with one line on stderr for bad arguments, settings or an empty lake.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from shopflow.errors import ShopflowError
from shopflow.settings import Settings, load_settings
from shopflow.transform.jobs import EtlRequest, backfill_request, etl_request, run_etl


def open_session(settings: Settings) -> Any:
    """The ETL session: Spark, local by default (spark-submit's own when launched by it)."""
    from shopflow.transform.session import build_spark_session

    return build_spark_session(settings, app_name="shopflow-etl")


def parse_request(argv: Sequence[str]) -> EtlRequest:
    """Command-line arguments as a request (backfill when --start/--end are given)."""
    parser = argparse.ArgumentParser(
        prog="shopflow.transform.entrypoint", description="Run the shopflow ETL once."
    )
    parser.add_argument("--hour", help="event hour YYYY-MM-DDTHH (UTC) whose date to recompute")
    parser.add_argument("--since", help="recompute event dates from this ISO-8601 time")
    parser.add_argument("--until", help="end (exclusive) of the --since range")
    parser.add_argument("--start", help="backfill: first event date YYYY-MM-DD")
    parser.add_argument("--end", help="backfill: last event date YYYY-MM-DD (included)")
    args = parser.parse_args(list(argv))
    if args.start is not None or args.end is not None:
        if args.hour or args.since or args.until:
            raise ShopflowError("a backfill (--start/--end) takes no --hour, --since or --until")
        if args.start is None or args.end is None:
            raise ShopflowError("a backfill needs both --start and --end")
        return backfill_request(args.start, args.end)
    return etl_request(hour=args.hour, since=args.since, until=args.until)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ETL request; print its summary."""
    try:
        request = parse_request(sys.argv[1:] if argv is None else argv)
        settings = load_settings()
        run = run_etl(open_session(settings), settings, request)
    except ShopflowError as exc:
        print(f"shopflow: error: {exc}", file=sys.stderr)
        return 2
    print(run.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
