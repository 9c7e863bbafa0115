"""The ETL's spark-submit main file (local spark-submit and Dataproc), and `python -m` entry.

    spark-submit src/shopflow/transform/entrypoint.py --hour 2026-11-25T10
    python -m shopflow.transform.entrypoint --since 2026-11-25T00 --until 2026-11-26T00
    python -m shopflow.transform.entrypoint --start 2026-11-25 --end 2026-11-25   (backfill)

Same code path as `shopflow etl|backfill`: the arguments become an `EtlRequest` and `run_etl` runs
it on the engine of `SHOPFLOW_ETL_ENGINE` (or `--engine`). Under spark-submit (Dataproc included)
the engine is always Spark, whatever the default: the session is spark-submit's own, and an
explicit `--engine duckdb` or `SHOPFLOW_ETL_ENGINE=duckdb` is an error. Configuration comes from `SHOPFLOW_*` variables (on Dataproc, e.g. `SHOPFLOW_PROFILE=gcp` and
`SHOPFLOW_LAKE_ROOT=gs://...` through `spark.yarn.appMasterEnv.*` / `spark.executorEnv.*`).
Exit code 2 with one line on stderr for bad arguments, settings or an empty lake.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from shopflow.errors import ShopflowError
from shopflow.settings import Settings, load_settings
from shopflow.transform.engine import open_etl_session, stopping
from shopflow.transform.jobs import EtlRequest, backfill_request, etl_request, run_etl


def under_spark_submit() -> bool:
    """Whether this process was launched by spark-submit (its Py4J gateway is waiting for us)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def open_session(settings: Settings) -> Any:
    """The ETL session: spark-submit's own Spark under spark-submit, else the settings' engine."""
    if under_spark_submit():
        if settings.etl_engine != "spark" and "etl_engine" in settings.model_fields_set:
            raise ShopflowError(
                "under spark-submit the ETL runs on Spark: unset SHOPFLOW_ETL_ENGINE=duckdb "
                "(or run `shopflow etl` / `python -m shopflow.transform.entrypoint` instead)"
            )
        from shopflow.transform.session import build_spark_session

        return build_spark_session(settings, app_name="shopflow-etl")
    return open_etl_session(settings, app_name="shopflow-etl")


def etl_session(settings: Settings) -> contextlib.AbstractContextManager[Any]:
    """`open_session`, stopped at the end of the block (`shopflow.transform.engine.stopping`)."""
    return stopping(open_session(settings))


def parse_args(argv: Sequence[str]) -> tuple[EtlRequest, str | None]:
    """Command-line arguments as a request (backfill when --start/--end are given) and the
    `--engine` asked for (None: the setting)."""
    parser = argparse.ArgumentParser(
        prog="shopflow.transform.entrypoint", description="Run the shopflow ETL once."
    )
    parser.add_argument("--hour", help="event hour YYYY-MM-DDTHH (UTC) whose date to recompute")
    parser.add_argument("--since", help="recompute event dates from this ISO-8601 time")
    parser.add_argument("--until", help="end (exclusive) of the --since range")
    parser.add_argument("--start", help="backfill: first event date YYYY-MM-DD")
    parser.add_argument("--end", help="backfill: last event date YYYY-MM-DD (included)")
    parser.add_argument(
        "--engine", choices=("spark", "duckdb"), help="ETL engine (default: SHOPFLOW_ETL_ENGINE)"
    )
    args = parser.parse_args(list(argv))
    engine: str | None = args.engine
    if args.start is not None or args.end is not None:
        if args.hour or args.since or args.until:
            raise ShopflowError("a backfill (--start/--end) takes no --hour, --since or --until")
        if args.start is None or args.end is None:
            raise ShopflowError("a backfill needs both --start and --end")
        return backfill_request(args.start, args.end), engine
    return etl_request(hour=args.hour, since=args.since, until=args.until), engine


def parse_request(argv: Sequence[str]) -> EtlRequest:
    """Command-line arguments as a request (backfill when --start/--end are given)."""
    return parse_args(argv)[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ETL request; print its summary."""
    try:
        request, engine = parse_args(sys.argv[1:] if argv is None else argv)
        settings = load_settings(**({"etl_engine": engine} if engine else {}))
        with etl_session(settings) as session:
            run = run_etl(session, settings, request)
    except ShopflowError as exc:
        print(f"shopflow: error: {exc}", file=sys.stderr)
        return 2
    print(run.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
