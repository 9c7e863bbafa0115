"""Every command with invalid options or state: one line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shopflow.cli.main import main
from shopflow.settings import Settings

BAD_INVOCATIONS = [
    ["nonsense"],
    ["etl", "--hour"],
    ["etl", "--hour", "2026-13-01T10"],
    ["etl", "--hour", ""],
    ["etl", "--since", "yesterday"],
    ["etl", "--since", "2026-11-05T00", "--until", "2026-11-01T00"],
    ["etl", "--until", "2026-11-01T00"],
    ["etl", "--hour", "2026-11-01T10", "--since", "2026-11-01T00"],
    ["etl", "--since", "0001-01-01T00+14:00"],
    ["etl", "--since", "9999-12-31T23"],
    ["etl", "--engine", "flink"],
    ["etl", "--engine", ""],
    ["etl"],  # an empty lake
    ["backfill", "--start", "2026-11-05", "--end", "2026-11-01"],
    ["backfill", "--start", "soon", "--end", "later"],
    ["backfill", "--start", "0001-01-01", "--end", "9999-12-31"],
    ["load"],  # nothing curated
    ["load", "--date", "2030-13-01"],
    ["load", "--table", "nope"],
    ["quality"],  # no date
    ["quality", "--date", "2026-11-31"],
    ["quality", "--start", "2026-11-05", "--end", "2026-11-01"],
    ["quality", "--start", "2026-11-05"],
    ["quality", "--date", "2026-11-05", "--start", "2026-11-05", "--end", "2026-11-06"],
    ["quality", "--start", "2000-01-01", "--end", "2026-11-01"],
    ["metrics"],  # no warehouse
    ["metrics", "--limit", "0"],
    ["simulate", "--events", "-5"],
    ["simulate", "--start", "9999-12-31T12:00Z", "--events", "1"],
    ["simulate", "--start", "0001-01-01T00:00-14:00", "--events", "1"],
    ["simulate", "--start", "next tuesday", "--events", "1"],
    ["services", "up", "bogus"],
    ["demo", "--events", "-1"],
    ["ingest", "events", "--max-seconds", "-1"],
]


@pytest.mark.parametrize("args", BAD_INVOCATIONS, ids=" ".join)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    args: list[str],
    settings: Settings,
    shopflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `settings` cleared the environment of SHOPFLOW_*; the command runs on an empty home.
    monkeypatch.setenv("SHOPFLOW_HOME", str(shopflow_home))
    monkeypatch.setattr(sys, "argv", ["shopflow", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code not in (0, None)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("shopflow: error: ") and "Traceback" not in err
    assert "unexpected" not in lines[0], lines[0]
    # Nothing was landed, computed or loaded by a refused command.
    assert not list(shopflow_home.rglob("*.parquet"))
