"""`shopflow stream`: one per lake. A second one is refused at once, before Spark starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shopflow.cli.main import main
from shopflow.lake import writer_lock
from shopflow.settings import Settings


def test_a_second_stream_on_the_same_lake_is_refused_before_spark_starts(
    settings: Settings,
    shopflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Two streams would merge the same micro-batches into the same partitions: a stale read
    # written last drops the other's rows (and Spark only notices at its next log write).
    monkeypatch.setenv("SHOPFLOW_HOME", str(shopflow_home))

    def no_spark(*args: object, **kwargs: object) -> None:
        raise AssertionError("Spark started although another stream holds the lake")

    monkeypatch.setattr("shopflow.transform.session.build_spark_session", no_spark)
    monkeypatch.setattr(sys, "argv", ["shopflow", "stream", "--available-now"])
    with (
        # the lock `shopflow.cli.stream.STREAM_LOCK` names
        writer_lock(settings.lake_url, "shopflow stream", name="stream"),
        pytest.raises(SystemExit) as exited,
    ):
        main()
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "busy" in lines[0] and "`shopflow stream`" in lines[0], lines[0]
