"""Machine facts and BENCHMARKS.md sections: each benchmark owns the text between its two markers."""

from __future__ import annotations

import fcntl
import os
import platform
import re
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench._harness import Benchmark, BenchResult, Row

#: Written when BENCHMARKS.md does not exist yet; the real file carries a hand-written intro.
DEFAULT_HEADER = "# Benchmarks\n\nWritten by `python -m bench`; see `bench/__init__.py`.\n"


def begin_marker(name: str) -> str:
    """The line that opens benchmark `name`'s section."""
    return f"<!-- bench:{name}:begin -->"


def end_marker(name: str) -> str:
    """The line that closes benchmark `name`'s section."""
    return f"<!-- bench:{name}:end -->"


def _run(command: Sequence[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            list(command), cwd=cwd, capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return (done.stdout or done.stderr).strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os() -> str:
    pretty = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{pretty}, kernel {platform.release()}"


def _java() -> str:
    try:
        done = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages, formatted."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


class LoadSampler:
    """Samples the 1-minute load average in the background; `peak` is the highest seen."""

    def __init__(self, every_seconds: float = 2.0) -> None:
        self.peak = os.getloadavg()[0]
        self._every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, os.getloadavg()[0])


@dataclass(frozen=True, slots=True)
class Machine:
    """Where and on what code a benchmark ran."""

    cpu: str
    cores: str
    memory: str
    os: str
    python: str
    java: str
    commit: str

    @classmethod
    def probe(cls, repo: Path) -> Machine:
        """Facts about this machine and the checkout at `repo`."""
        usable = len(os.sched_getaffinity(0))
        commit = _run(["git", "rev-parse", "--short=12", "HEAD"], repo) or "unknown"
        dirty = _run(["git", "diff", "--name-only", "HEAD"], repo)
        if dirty:
            changed = dirty.splitlines()
            shown = ", ".join(changed[:6]) + (", ..." if len(changed) > 6 else "")
            commit += f" (working tree differs in {len(changed)} tracked file(s): {shown})"
        return cls(
            cpu=_cpu_model(),
            cores=f"{os.cpu_count()} logical, {usable} usable by this process",
            memory=_memory(),
            os=_os(),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            java=_java(),
            commit=commit,
        )


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 1024**2:,.0f}"


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.3g}"


def _params(params: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows_table(rows: Sequence[Row]) -> str:
    """The result rows as a Markdown table."""
    lines = [
        "| case | parameters | wall s | throughput | peak RSS MiB | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        rate = row.throughput
        throughput = f"{_number(rate)} {row.unit}/s" if rate is not None else ""
        lines.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (
                    row.case,
                    _params(row.params),
                    f"{row.wall_seconds:,.2f}",
                    throughput,
                    _mib(row.peak_rss_bytes),
                    row.notes,
                )
            )
            + " |"
        )
    return "\n".join(lines)


def render_section(
    bench: Benchmark,
    result: BenchResult,
    machine: Machine,
    *,
    started: datetime,
    command: str,
    quick: bool,
    load_before: str,
    load_after: str,
    load_peak: float | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The whole section of one benchmark, markers included."""
    settings = "\n".join(f"- {key}: {value}" for key, value in result.settings.items())
    all_notes = [*result.notes, *notes]
    note_lines = "\n".join(f"- {note}" for note in all_notes)
    mode = "quick (tiny sizes: a smoke test, not a measurement)" if quick else "full"
    parts = [
        begin_marker(bench.name),
        f"## {bench.title} (`{bench.name}`)",
        "",
        bench.description,
        "",
        f"Last run: {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC, `{command}`, mode: {mode}.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {_cell(machine.cpu)} |",
        f"| cores | {machine.cores} |",
        f"| memory | {machine.memory} |",
        f"| OS | {_cell(machine.os)} |",
        f"| Python | {machine.python} ({sys.executable}) |",
        f"| Java | {_cell(machine.java)} |",
        f"| git commit | {_cell(machine.commit)} |",
        f"| load average (1/5/15 min) | before {load_before}; after {load_after}"
        + (f"; highest 1-min during the run {load_peak:.2f}" if load_peak is not None else "")
        + " |",
        "",
        "Settings:",
        "",
        settings or "- (none)",
        "",
        rows_table(result.rows),
    ]
    if all_notes:
        parts += ["", "Notes:", "", note_lines]
    parts.append(end_marker(bench.name))
    return "\n".join(parts) + "\n"


def replace_section(document: str, name: str, section: str) -> str:
    """`document` with benchmark `name`'s section replaced by `section` (appended if absent)."""
    pattern = re.compile(
        re.escape(begin_marker(name)) + r".*?" + re.escape(end_marker(name)) + r"\n?", re.DOTALL
    )
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    if document and not document.endswith("\n"):
        document += "\n"
    return document + ("\n" if document else "") + section


def write_section(path: Path, name: str, section: str) -> None:
    """Rewrite only `name`'s section of `path`, under an exclusive lock on the file.

    The lock serialises concurrent `python -m bench` runs; the file is rewritten in place (not
    replaced) so that every writer locks the same inode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    with open(path, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            document = handle.read() or DEFAULT_HEADER
            updated = replace_section(document, name, section)
            handle.seek(0)
            handle.truncate()
            handle.write(updated)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
