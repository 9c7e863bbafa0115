"""Peak memory of a process tree (the Python driver plus, for Spark, the JVM it launches)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def tree_rss_bytes(root: int) -> int:
    """The summed VmRSS of `root` and all its descendants right now."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/status") as status:
                total += next(
                    (int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:")),
                    0,
                )
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


class TreeRssSampler:
    """The peak of the summed VmRSS of this process and its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Take one sample now."""
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
