"""A separate writer process for the crash and concurrency tests (run as a script, never imported).

    _writer.py parquet|replace URL OPTIONS_JSON ROWS FIRST_VERSION   write versions forever
    _writer.py increment LAKE_ROOT OPTIONS_JSON COUNT                 add 1 to state `counter`

Each write of version v prints `writing v` before and `wrote v` after it, flushed.
"""

from __future__ import annotations

import itertools
import json
import sys

import pyarrow as pa
import pyarrow.compute as pc

from shopflow.lake import (
    StateConflictError,
    StateStore,
    replace_partition,
    write_parquet_atomic,
)


def table_of(rows: int, version: int) -> pa.Table:
    """`rows` rows that all carry `version`, big enough that writing them takes a while."""
    numbers = pa.array(range(rows), pa.int64())
    return pa.table(
        {
            "version": pa.array([version] * rows, pa.int64()),
            "n": numbers,
            "text": pc.binary_join_element_wise(
                pc.cast(pc.multiply(numbers, 7919), pa.string()), "-row-", "x"
            ),
        }
    )


def main(argv: list[str]) -> None:
    """Run one mode until killed (or, for `increment`, until done)."""
    mode, url, options_json, amount = argv[:4]
    options = json.loads(options_json)
    if mode == "increment":
        store = StateStore(url, storage_options=options)
        for _ in range(int(amount)):
            while True:
                current = store.get("counter") or {"n": 0}
                try:
                    store.put("counter", {"n": current["n"] + 1})
                    break
                except StateConflictError:
                    continue
        return
    base = table_of(int(amount), 0)
    for version in itertools.count(int(argv[4])):
        table = base.set_column(0, "version", pa.array([version] * base.num_rows, pa.int64()))
        print(f"writing {version}", flush=True)
        if mode == "parquet":
            write_parquet_atomic(table, url, storage_options=options)
        else:
            replace_partition(table, url, storage_options=options)
        print(f"wrote {version}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
