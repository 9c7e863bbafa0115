"""Benchmarks: `python -m bench` runs them and writes BENCHMARKS.md.

A benchmark is a module `bench/<name>.py` with one function decorated by `@benchmark(...)`: it takes
a `BenchContext` and returns a `BenchResult` (rows plus the settings it ran with). `python -m bench`
imports every public module of this package, so adding a module is all it takes to register one.
"""

from bench._cli import main
from bench._harness import (
    REGISTRY,
    BenchContext,
    BenchFunction,
    Benchmark,
    BenchResult,
    Isolated,
    IsolatedError,
    Row,
    benchmark,
    current_rss_bytes,
    discover,
    peak_rss_bytes,
    run_isolated,
)
from bench._report import begin_marker, end_marker, replace_section, write_section

__all__ = [
    "REGISTRY",
    "BenchContext",
    "BenchFunction",
    "BenchResult",
    "Benchmark",
    "Isolated",
    "IsolatedError",
    "Row",
    "begin_marker",
    "benchmark",
    "current_rss_bytes",
    "discover",
    "end_marker",
    "main",
    "peak_rss_bytes",
    "replace_section",
    "run_isolated",
    "write_section",
]
