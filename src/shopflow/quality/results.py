"""What a check finds: one result per check, table and date, and the report of a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

import pyarrow as pa

from shopflow.errors import ShopflowError
from shopflow.warehouse.schema import QUALITY_RESULTS


class Severity(StrEnum):
    """What a failed check does: `error` stops the load, `warn` is only recorded."""

    ERROR = "error"
    WARN = "warn"
    #: An error check the operator accepted for this run (`shopflow load --accept-volume-drop`):
    #: recorded as failed, but it does not stop the load.
    OVERRIDDEN = "overridden"


class QualityGateError(ShopflowError):
    """An error-severity check failed: the curated partitions must not be loaded."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check over one table and one date (`partition` None: a snapshot table or the lake).

    `observed` and `threshold` are in the same unit (rows, a share, seconds): the check passes when
    `observed` is within `threshold` (at most it; for `volume`, at least it). `observed` is None
    when there was nothing to judge (no history to compare with).
    """

    check_name: str
    table_name: str
    partition: date | None
    severity: Severity
    observed: float | None
    threshold: float | None
    passed: bool
    detail: str

    def line(self) -> str:
        """One line naming the check, the table, the date and what was found."""
        where = self.table_name + (f" {self.partition}" if self.partition else "")
        return f"{self.check_name} ({where}): {self.detail}"


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Every result of one run of the checks, taken at `run_ts`."""

    run_ts: datetime
    dates: tuple[date, ...]
    results: tuple[CheckResult, ...]

    @property
    def errors(self) -> list[CheckResult]:
        """Failed checks of severity error: each one stops the load."""
        return [r for r in self.results if not r.passed and r.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[CheckResult]:
        """Failed checks of severity warn: recorded, the load goes on."""
        return [r for r in self.results if not r.passed and r.severity is Severity.WARN]

    @property
    def overridden(self) -> list[CheckResult]:
        """Failed error checks accepted for this run: recorded, the load goes on."""
        return [r for r in self.results if not r.passed and r.severity is Severity.OVERRIDDEN]

    @property
    def span(self) -> str:
        """The checked dates as text: `D` or `D1..D2`."""
        if not self.dates:
            return "no date"
        first, last = min(self.dates), max(self.dates)
        return str(first) if first == last else f"{first}..{last}"

    def failure_message(self) -> str:
        """One line: the first failed error check and its offending count, and how many more."""
        errors = self.errors
        if not errors:
            return f"quality checks passed for {self.span}"
        more = f" (and {len(errors) - 1} more failed checks)" if len(errors) > 1 else ""
        return f"quality gate failed for {self.span}: {errors[0].line()}{more}; nothing loaded"

    def to_arrow(self) -> pa.Table:
        """The results as rows of `quality_results`."""
        return results_table(self.results, self.run_ts)


def results_table(results: Sequence[CheckResult], run_ts: datetime) -> pa.Table:
    """`results` as a table in the schema of `quality_results`."""
    rows = [
        {
            "check_name": r.check_name,
            "table_name": r.table_name,
            "partition": r.partition,
            "severity": r.severity.value,
            "observed": r.observed,
            "threshold": r.threshold,
            "passed": r.passed,
            "run_ts": run_ts,
            "detail": r.detail,
        }
        for r in results
    ]
    return pa.Table.from_pylist(rows, schema=QUALITY_RESULTS.arrow_schema())
