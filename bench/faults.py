"""The fault suite: the real pipeline under injected faults, checked against a recount of the lake.

Each scenario runs the `shopflow` command line in child processes against a fresh
`SHOPFLOW_HOME` (local profile, DuckDB engine, real Kafka broker where a bus is needed), injects
its fault many times over, lets the pipeline finish normally, and then compares the warehouse's
`user_behavior` with the events that should be there: a recount of the raw lake (or, for the
streaming scenario, the valid events published). `lost` = expected events missing from the
warehouse, `doubled` = events present more than once; `errors seen` = the distinct lines users
saw on stderr. `python -m bench faults` runs the full sizes and rewrites `RELIABILITY.md`; the
small sizes run in `make test` (tests/faults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._faults.bus import (
    scenario_kill_landing,
    scenario_malformed_stream,
)
from bench._faults.common import (
    REPO,
    SIZES,
    Outcome,
)
from bench._faults.lake import (
    scenario_concurrent_runs,
    scenario_corrupt_raw_files,
    scenario_disk_full,
    scenario_kill_etl_and_load,
)
from bench._faults.report import previous_rows, reliability_markdown
from bench._faults.sources import (
    scenario_orders_api_faults,
    scenario_services_go_away,
    scenario_unreachable_services,
)
from bench._harness import BenchContext, BenchResult, Row, benchmark
from bench.etl_engines import write_raw_zone


def run_suite(
    scratch: Path, size: str, seed: int = 7, only: Sequence[str] | None = None
) -> list[Outcome]:
    """Every scenario (or those named in `only`) at one size, in order."""
    sizes = SIZES[size]
    zone = write_raw_zone(scratch / "raw-zone" / "lake", sizes["events"], seed=seed, days=2)
    scenarios: dict[str, Callable[[], Outcome]] = {
        "kill-etl-load": lambda: scenario_kill_etl_and_load(zone, scratch, sizes["kills"], seed),
        "corrupt-files": lambda: scenario_corrupt_raw_files(zone, scratch, sizes["rounds"], seed),
        "concurrent": lambda: scenario_concurrent_runs(zone, scratch, sizes["attempts"]),
        "unreachable": lambda: scenario_unreachable_services(scratch),
        "malformed": lambda: scenario_malformed_stream(
            scratch, sizes["stream_events"] // 10, sizes["malformed"], seed
        ),
        "kill-landing-kafka": lambda: scenario_kill_landing(
            scratch, sizes["stream_events"], sizes["landing_kills"], seed
        ),
        "kill-landing-pubsub": lambda: scenario_kill_landing(
            scratch, sizes["stream_events"] * 2 // 3, sizes["landing_kills"], seed, "pubsub"
        ),
        "go-away": lambda: scenario_services_go_away(scratch, sizes["cuts"], seed),
        "orders-api": lambda: scenario_orders_api_faults(zone, scratch, sizes["pulls"], seed),
        "disk-full": lambda: scenario_disk_full(zone, scratch, sizes["attempts"]),
    }
    unknown = sorted(set(only or ()) - set(scenarios))
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {', '.join(scenarios)}")
    return [run() for name, run in scenarios.items() if only is None or name in only]


@benchmark(
    "faults",
    title="Fault suite",
    description=(
        "Each scenario of `bench/faults.py` at the full size (`--quick`: the small size of "
        "`make test`); rewrites RELIABILITY.md (`--param report=PATH` elsewhere; `--param "
        "only=NAME,...` runs those scenarios and keeps the other rows). One row per scenario: "
        "its injections and wall time; the notes say lost/doubled and the verdict."
    ),
)
def faults(context: BenchContext) -> BenchResult:
    """Run the fault suite and write RELIABILITY.md."""
    size = "small" if context.quick else context.params.get("size", "full")
    only = context.list_param("only", []) or None
    outcomes = run_suite(context.scratch, size, only=only)
    report = Path(context.params.get("report", REPO / "RELIABILITY.md"))
    fresh = [o.row() for o in outcomes]
    notes = [f"{o.scenario}: {note}" for o in outcomes for note in o.notes]
    kept: list[dict[str, object]] = []
    if only and report.exists():
        # Keep the rows (and notes) of the scenarios not run this time.
        rerun = {str(row["scenario"]) for row in fresh}
        kept = [r for r in previous_rows(report, list(fresh[0])) if r["scenario"] not in rerun]
        names = tuple(f"- {row['scenario']}: " for row in kept)
        notes = [
            line[2:] for line in report.read_text().splitlines() if line.startswith(names)
        ] + notes
    report.write_text(reliability_markdown([*kept, *fresh], size, notes))
    rows = [
        Row(
            case=o.scenario,
            params={"size": size},
            wall_seconds=o.seconds,
            items=o.injections,
            unit="injections",
            notes=f"lost {o.lost}, doubled {o.doubled}: {o.row()['verdict']}",
        )
        for o in outcomes
    ]
    settings: dict[str, Any] = {"size": size, **SIZES[size], "report": str(report)}
    return BenchResult(rows=rows, settings=settings)


__all__ = [
    "SIZES",
    "Outcome",
    "run_suite",
    "scenario_concurrent_runs",
    "scenario_corrupt_raw_files",
    "scenario_disk_full",
    "scenario_kill_etl_and_load",
    "scenario_kill_landing",
    "scenario_malformed_stream",
    "scenario_orders_api_faults",
    "scenario_services_go_away",
    "scenario_unreachable_services",
]
