"""RELIABILITY.md: the fault suite's table, its notes, and how each scenario works."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bench._faults.common import (
    SIZES,
)


def _table_cells(line: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in line.strip().strip("|").split(" | ")]


def previous_rows(report: Path, header: list[str]) -> list[dict[str, object]]:
    """The table rows of an earlier RELIABILITY.md (to keep the scenarios not run again)."""
    if not report.exists():
        return []
    rows: list[dict[str, object]] = []
    for line in report.read_text().splitlines():
        cells = _table_cells(line)
        if line.startswith("| ") and len(cells) == len(header) and cells != header:
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


#: What each scenario does and checks, for the reader of RELIABILITY.md.
HOW_IT_WORKS: Final = """\
How each scenario works (all against the real services: Kafka-protocol broker, Pub/Sub emulator,
PostgreSQL, the orders API; every step as the `shopflow` command in its own process):

- **kill -9 of etl and of load**: a raw zone from the simulator; `shopflow etl`, then `shopflow
  load`, SIGKILLed again and again, alternately at a random moment of a normal run's length and
  just after the run first wrote (curated files, or the load's private copy of the warehouse file,
  modified after it started: the kill hit it mid-write); the warehouse file must read in full
  after every kill of the load; then one normal `etl` and `load`. Every warehouse table must equal
  an uninterrupted run's, row for row; no temp file may stay in `curated/` or beside the
  warehouse.
- **corrupt or misplaced files**: truncated, garbage, price stored as text, data pages damaged
  under an intact footer, nanosecond timestamps, a file outside any `hour=` folder; plus a
  readable file in unusual encodings (large strings, a dictionary column) that must load, and a
  partition dated 9999-12-31 that must be skipped and reported, never moved. Each bad file must be
  in `quarantine/` with a reason and counted in the run's summary; the warehouse must equal a
  recount of what stays in the raw zone.
- **a second etl and a load during an etl**: both refused with the holder named; then the
  warehouse equals an uninterrupted run's.
- **services unreachable at start**: the bus (Kafka, Pub/Sub), the orders API, the shop DB, the
  warehouse and the lake absent: one line each, a non-zero exit, no lake file written; the orders
  API token (set to a marker) never printed, neither there nor by `--help` or `services status`.
- **malformed messages**: non-JSON, JSON arrays, missing and null keys, wrong types, unknown
  event names, negative and NaN prices, times without a zone or far in the future or past,
  invalid UTF-8, 900 kB payloads, deep nesting, shuffled into valid events; every malformed
  payload must be in `deadletter/events/` with a reason, every valid event in the warehouse once,
  and the consumer must exit 0.
- **kill -9 of the landing consumer**: each run is killed once it has landed a file of its own,
  before the whole stream has landed; a final run drains the rest; every valid event in the
  warehouse exactly once, every malformed one dead-lettered.
- **shop DB and Pub/Sub cut off mid-run**: a TCP relay in front of PostgreSQL (slowed, so a pull
  of the catalogue takes seconds) and of the emulator is cut while a catalogue pull or the landing
  consumer runs: one line and a non-zero exit, no file and no watermark written by the cut pull;
  after the relay is back, every product and every event is in the lake once.
- **orders API faults**: 20% 5xx, 10% 429 with Retry-After, 10% answers slower than the
  client's timeout (`SHOPFLOW_ORDERS_API_TIMEOUT_SECONDS=1`), and the API killed and restarted
  under one pull; every order line exactly once in the lake and in
  `orders_enriched`.
- **disk full**: `SHOPFLOW_HOME` on a small tmpfs filled to within 10-200 kB under `etl`, then,
  with a first date already loaded, under `load` (alternately leaving no room for the load's copy
  of the warehouse, and room for the copy but not for the commit): one line, a non-zero exit, no
  partial file visible, the ETL state not advanced, the warehouse readable and unchanged after
  each failed load; after space is freed, the warehouse equals an uninterrupted run's.

Not covered here: the Kafka broker going away mid-run (clients reach the broker at the address it
advertises, so no relay can sit in between, and the local broker keeps topics in memory only);
BigQuery and a GCS lake under these faults (the writer lock's GCS lease is tested on
fake-gcs-server in `tests/lake/test_lock.py`; the suite runs on a local lake and DuckDB).
"""


def reliability_markdown(rows: Sequence[dict[str, object]], size: str, notes: Sequence[str]) -> str:
    """RELIABILITY.md: the table, the scenarios' notes, and how each scenario works."""
    header = list(rows[0])
    lines = [
        "# Reliability",
        "",
        "What the fault suite (`python -m bench faults`, `bench/faults.py`; `make faults`) found "
        "when it ran the real pipeline under injected faults. *lost*: events of the raw lake's "
        "recount (or the valid events published, or the order lines posted) missing from the "
        "warehouse; *doubled*: present more than once; *errors seen by the user*: the distinct "
        "one-line errors the commands printed (cut at the first colon). The small size of every "
        "scenario runs in `make test` (`tests/faults/`) and fails when its guarantee breaks.",
        "",
        f"Size: **{size}** ({', '.join(f'{k} {v:,}' for k, v in SIZES[size].items())}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row[h]).replace("|", "\\|") for h in header) + " |")
    lines += ["", *(f"- {note}" for note in notes), "", HOW_IT_WORKS]
    return "\n".join(lines)
