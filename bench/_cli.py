"""The command line of `python -m bench`: run benchmarks and rewrite their BENCHMARKS.md sections."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench._harness import BROKEN, BenchContext, discover
from bench._report import (
    LoadSampler,
    Machine,
    load_average,
    render_section,
    rows_table,
    write_section,
)

REPO = Path(__file__).resolve().parent.parent


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"bench: --param wants key=value, got {pair!r}")
        params[key.strip()] = value.strip()
    return params


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named (default: all) benchmarks; return the exit code."""
    registry = discover()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmarks and rewrite each one's own section of BENCHMARKS.md.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a benchmark-specific setting, e.g. --param events=500000 (repeatable)",
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="TEXT",
        help="a note to print in each section written by this run (repeatable)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "BENCHMARKS.md",
        help="the Markdown file to update (default: BENCHMARKS.md at the repo root)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    for module, error in BROKEN.items():
        print(f"bench: module bench/{module}.py could not be imported: {error}", file=sys.stderr)

    if args.list:
        for bench in registry.values():
            print(f"{bench.name}: {bench.title}")
        return 0
    unknown = [name for name in args.names if name not in registry]
    if unknown:
        known = ", ".join(registry) or "none"
        print(f"bench: unknown benchmark(s) {', '.join(unknown)}; known: {known}", file=sys.stderr)
        return 2
    params = _parse_params(args.param)
    selected = [registry[name] for name in args.names] if args.names else list(registry.values())
    machine = Machine.probe(REPO)
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    failed = 0
    for bench in selected:
        print(f"bench: running {bench.name}{' (quick)' if args.quick else ''}", flush=True)
        started = datetime.now(UTC)
        load_before = load_average()
        t0 = time.monotonic()
        with (
            tempfile.TemporaryDirectory(prefix=f"bench-{bench.name}-") as scratch,
            LoadSampler() as load,
        ):
            context = BenchContext(quick=args.quick, params=params, scratch=Path(scratch))
            try:
                result = bench.function(context)
            except Exception as exc:  # one broken benchmark must not stop the others
                print(f"bench: {bench.name} failed: {exc}", file=sys.stderr)
                failed += 1
                continue
        section = render_section(
            bench,
            result,
            machine,
            started=started,
            command=command,
            quick=args.quick,
            load_before=load_before,
            load_after=load_average(),
            load_peak=load.peak,
            notes=args.note,
        )
        write_section(args.output, bench.name, section)
        print(rows_table(result.rows))
        print(
            f"bench: {bench.name} done in {time.monotonic() - t0:.0f} s; wrote its section of "
            f"{args.output}",
            flush=True,
        )
    return 1 if failed else 0
