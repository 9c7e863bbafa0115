"""The `shopflow` command line: one Typer app composed from one module per concern."""

from __future__ import annotations

import os
import sys

import typer

from shopflow.cli import (
    airflow,
    dashboard,
    demo,
    etl,
    ingest,
    lake,
    quality,
    services,
    simulate,
    stream,
    warehouse,
)
from shopflow.errors import ShopflowError
from shopflow.extras import missing_extra_message

app = typer.Typer(
    name="shopflow",
    help="An e-commerce data pipeline: sources -> lake -> ETL -> warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(services.app, name="services")
app.add_typer(ingest.app, name="ingest")
app.add_typer(airflow.app, name="airflow")
app.add_typer(lake.app, name="lake")
simulate.register(app)
etl.register(app)
stream.register(app)
warehouse.register(app)
quality.register(app)
demo.register(app)
dashboard.register(app)


def main() -> None:
    """Console-script entry point: a ShopflowError becomes one line on stderr and exit code 2.

    Usage errors (bad options, unknown commands) are one line too, with exit code 2. Any other
    exception is a bug or an environment failure: one line and exit code 1.
    """
    try:
        # Not standalone: usage errors come back here and are printed as one line too.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.TyperException as exc:  # usage errors: bad or missing options, unknown commands
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "shopflow"
        message = " ".join(exc.format_message().split())
        if message:  # empty when the help was shown for a bare group (`shopflow ingest`)
            print(f"shopflow: error: {message} (see `{where} --help`)", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("shopflow: aborted", file=sys.stderr)
        sys.exit(130)
    except ShopflowError as exc:
        print(f"shopflow: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        # Anything unforeseen still ends as one line; SHOPFLOW_DEBUG=1 shows where.
        if os.environ.get("SHOPFLOW_DEBUG"):
            raise
        # A command whose optional extra is not installed (e.g. `etl` without pyspark).
        extra = missing_extra_message(exc) if isinstance(exc, ModuleNotFoundError) else None
        if extra is not None:
            print(f"shopflow: error: {extra}", file=sys.stderr)
            sys.exit(2)
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"shopflow: error: unexpected {type(exc).__name__}: {detail} "
            "(SHOPFLOW_DEBUG=1 prints the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
