"""The benchmark harness: registration, sections of BENCHMARKS.md, isolated runs; no timing asserted."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench import (
    BenchContext,
    BenchResult,
    IsolatedError,
    Row,
    begin_marker,
    end_marker,
    main,
    replace_section,
    run_isolated,
)

REPO = Path(__file__).resolve().parents[2]


def _fake(context: BenchContext) -> BenchResult:
    size = context.int_param("size", 1000, 10)
    return BenchResult(
        rows=[Row(case="fake", params={"size": size}, wall_seconds=0.5, items=size)],
        settings={"size": size},
        notes=["a fake benchmark"],
    )


@pytest.fixture
def fake_benchmark(monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered benchmark that needs no services (removed again after the test)."""
    monkeypatch.setitem(
        bench.REGISTRY,
        "fake",
        bench.Benchmark("fake", "Fake", "Measures nothing.", _fake),
    )
    return "fake"


def test_quick_run_writes_only_its_own_section(fake_benchmark: str, tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    other = f"{begin_marker('other')}\nsomeone else's figures\n{end_marker('other')}\n"
    output.write_text(f"# Intro kept as is\n\n{other}")

    assert main([fake_benchmark, "--quick", "--output", str(output), "--note", "shared box"]) == 0
    assert main([fake_benchmark, "--quick", "--output", str(output)]) == 0

    text = output.read_text()
    assert text.startswith("# Intro kept as is\n")
    assert other in text
    assert text.count(begin_marker("fake")) == 1 and text.count(end_marker("fake")) == 1
    section = text[text.index(begin_marker("fake")) :]
    assert "| fake | size=10 |" in section
    for fact in ("CPU", "cores", "memory", "OS", "Python", "Java", "git commit"):
        assert f"| {fact} |" in section
    assert "- size: 10" in section
    assert "shared box" not in section  # the second run replaced the first


def test_params_reach_the_benchmark(fake_benchmark: str, tmp_path: Path) -> None:
    output = tmp_path / "B.md"
    assert main([fake_benchmark, "--param", "size=77", "--output", str(output)]) == 0
    assert "| fake | size=77 |" in output.read_text()


def test_unknown_benchmark_is_refused(tmp_path: Path) -> None:
    assert main(["no-such-benchmark", "--output", str(tmp_path / "B.md")]) == 2
    assert not (tmp_path / "B.md").exists()


def test_replace_section_appends_then_replaces() -> None:
    first = f"{begin_marker('x')}\none\n{end_marker('x')}\n"
    second = f"{begin_marker('x')}\ntwo\n{end_marker('x')}\n"
    doc = replace_section("# T\n", "x", first)
    assert doc == f"# T\n\n{first}"
    assert replace_section(doc, "x", second) == f"# T\n\n{second}"


def allocate(mib: int) -> int:
    """Touch `mib` MiB and return its length (run in a child by the tests)."""
    block = bytearray(os.urandom(1024)) * (mib * 1024)
    return len(block)


def fail() -> None:
    """Raise in the child."""
    raise ValueError("broken on purpose")


def test_run_isolated_reports_the_childs_own_peak() -> None:
    result = run_isolated(allocate, 200)
    assert result.value == 200 * 1024 * 1024
    assert result.peak_rss_bytes >= 200 * 1024 * 1024
    small = run_isolated(allocate, 1)
    # Not inherited from an earlier child nor from this process: the 199 MiB the first child
    # allocated more show as the difference. (Not an absolute bound: the interpreter and its
    # imports weigh differently under a plain pytest and a pytest-xdist worker.)
    assert result.peak_rss_bytes - small.peak_rss_bytes >= 190 * 1024 * 1024


def test_run_isolated_raises_the_childs_error() -> None:
    with pytest.raises(IsolatedError, match="broken on purpose"):
        run_isolated(fail)


def _run_quick(name: str, env: dict[str, str], output: Path) -> str:
    """`python -m bench <name> --quick --output <output>` in a process; the file it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, "--quick", "--output", str(output)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return output.read_text()


@pytest.mark.integration
def test_landing_quick_writes_its_section(
    tmp_path: Path, pubsub_emulator: str, kafka_broker: str
) -> None:
    output = tmp_path / "BENCHMARKS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env |= {
        "SHOPFLOW_HOME": str(tmp_path / "home"),
        "SHOPFLOW_PUBSUB_EMULATOR_HOST": pubsub_emulator,
        "SHOPFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
    }
    text = _run_quick("landing", env, output)
    section = text[text.index(begin_marker("landing")) : text.index(end_marker("landing"))]
    for case in ("pubsub-sync", "pubsub-streaming", "kafka"):
        for step in ("publish", "land"):
            assert re.search(rf"^\| {case}: {step} \| messages=\d+", section, re.MULTILINE)
        published = re.search(rf"^\| {case}: publish \| messages=(\d+)", section, re.MULTILINE)
        assert published is not None
        # The ceiling drains a topic of the same payloads: every one of them.
        ceiling = (
            rf"^\| {case}: bus ceiling \(read \+ acknowledge only\) \| messages={published[1]} \|"
        )
        assert re.search(ceiling, section, re.MULTILINE)
    assert "mode: quick" in section


def test_a_broken_module_does_not_stop_the_others(
    fake_benchmark: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = importlib.import_module

    def import_module(name: str) -> object:
        if name == "bench.landing":
            raise ImportError("pretend it is broken")
        return real_import(name)

    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.setattr(bench._harness, "BROKEN", {})
    registry = bench.discover()
    assert fake_benchmark in registry
    assert "pretend it is broken" in bench._harness.BROKEN["landing"]


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, True), ("0", False), ("off", False), ("Yes", True), (" 1 ", True)]
)
def test_a_flag_param_reads_the_usual_spellings(raw: str | None, expected: bool) -> None:
    params = {} if raw is None else {"ceiling": raw}
    context = BenchContext(quick=True, params=params, scratch=Path("."))
    assert context.flag_param("ceiling", default=True) is expected


def test_a_flag_param_refuses_anything_else() -> None:
    context = BenchContext(quick=True, params={"ceiling": "nope"}, scratch=Path("."))
    with pytest.raises(ValueError, match=r"--param ceiling must be one of 1, 0, .*got 'nope'"):
        context.flag_param("ceiling", default=True)


def test_stream_write_quick_writes_both_layouts(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env["SHOPFLOW_HOME"] = str(tmp_path / "home")
    text = _run_quick("stream_write", env, output)
    section = text[
        text.index(begin_marker("stream_write")) : text.index(end_marker("stream_write"))
    ]
    for minute, stored in ((4, 48_000), (34, 408_000)):
        for layout in ("one file per hour", "5-minute slices"):
            row = rf"^\| {layout}, minute {minute} of the hour \| rate=200, minute={minute}, stored_rows={stored} \|"
            assert re.search(row, section, re.MULTILINE), section
