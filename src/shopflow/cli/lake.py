"""`shopflow lake register`: record raw files that arrived without a commit (a restore from a
backup, files copied in by hand), so the next ETL run reads them."""

from __future__ import annotations

import os
from datetime import date
from typing import Annotated

import typer

from shopflow.errors import ShopflowError
from shopflow.lake import LakeLayout, list_data_files, partition_values
from shopflow.lake.commit_log import RAW_SOURCES, register_files
from shopflow.settings import load_settings

app = typer.Typer(help="Lake housekeeping.", no_args_is_help=True)


def _source_of(layout: LakeLayout, url: str) -> str:
    for source in RAW_SOURCES:
        root = layout.events_root() if source == "events" else layout.pull_root(source)
        if url.startswith(root + "/"):
            return source
    raise ShopflowError(f"{url} is not in the raw zone of the lake at {layout.root}")


def _check_event_partition(url: str) -> None:
    values = partition_values(url)
    problem = set(values) != {"date", "hour"}
    if not problem:
        try:
            date.fromisoformat(values["date"])
            problem = not (values["hour"].isdigit() and 0 <= int(values["hour"]) <= 23)
        except ValueError:
            problem = True
    if problem:
        raise ShopflowError(f"{url} is not in a raw/events/date=YYYY-MM-DD/hour=HH/ folder")


@app.command("register")
def register(
    paths: Annotated[
        list[str],
        typer.Argument(help="Raw files or folders inside the lake's raw zone (local path or URL)."),
    ],
) -> None:
    """Record existing raw files (every .parquet file under a folder) as committed; the next
    `shopflow etl` recomputes their dates. Registering a file twice is harmless."""
    layout = LakeLayout.from_settings(load_settings())
    by_source: dict[str, list[str]] = {}
    for path in paths:
        url = path if "://" in path else os.path.abspath(path)
        files = [f.url for f in list_data_files(url)]
        if not files:
            raise ShopflowError(f"no .parquet files at {path}")
        for file_url in files:
            source = _source_of(layout, file_url)
            if source == "events":
                _check_event_partition(file_url)
            if file_url not in by_source.setdefault(source, []):
                by_source[source].append(file_url)
    for source, urls in by_source.items():
        seq = register_files(layout, source, urls)
        print(f"registered {len(urls)} raw {source} files (commit record {seq})")
