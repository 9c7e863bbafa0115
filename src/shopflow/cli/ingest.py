"""`shopflow ingest orders|catalog|events`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Land the sources in the lake's raw zone.", no_args_is_help=True)
