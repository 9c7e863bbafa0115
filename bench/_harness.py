"""The benchmark registry, result types, and running work in a fresh process to measure its peak RSS."""

from __future__ import annotations

import importlib
import multiprocessing
import pkgutil
import resource
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Row:
    """One measured case: `items` units of work (`unit`, e.g. "events") done in `wall_seconds`."""

    case: str
    params: Mapping[str, object]
    wall_seconds: float
    items: int
    unit: str = "events"
    peak_rss_bytes: int | None = None
    notes: str = ""

    @property
    def throughput(self) -> float | None:
        """Items per wall second (None when nothing was timed)."""
        return self.items / self.wall_seconds if self.wall_seconds > 0 else None


@dataclass(frozen=True, slots=True)
class BenchResult:
    """What one benchmark run measured, the settings it ran with, and notes worth printing with it."""

    rows: Sequence[Row]
    settings: Mapping[str, object]
    notes: Sequence[str] = ()


_FLAGS: Final = {
    "1": True, "0": False, "true": True, "false": False,
    "yes": True, "no": False, "on": True, "off": False,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What the harness hands a benchmark: quick mode, `--param key=value` pairs, a scratch dir."""

    quick: bool
    params: Mapping[str, str]
    scratch: Path

    def int_param(self, name: str, default: int, quick: int) -> int:
        """An integer `--param`, else the default for the mode."""
        raw = self.params.get(name)
        if raw is None:
            return quick if self.quick else default
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise ValueError(f"--param {name} must be an integer, got {raw!r}") from None

    def flag_param(self, name: str, default: bool) -> bool:
        """An on/off `--param` (1/0, true/false, yes/no, on/off), else the default."""
        raw = self.params.get(name)
        if raw is None:
            return default
        value = _FLAGS.get(raw.strip().lower())
        if value is None:
            raise ValueError(f"--param {name} must be one of {', '.join(_FLAGS)}, got {raw!r}")
        return value

    def list_param(self, name: str, default: Sequence[str]) -> list[str]:
        """A comma-separated `--param`, else the default."""
        raw = self.params.get(name)
        return [p.strip() for p in raw.split(",") if p.strip()] if raw else list(default)


BenchFunction = Callable[[BenchContext], BenchResult]


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A registered benchmark: `name` is its CLI name and its BENCHMARKS.md section key."""

    name: str
    title: str
    description: str
    function: BenchFunction = field(repr=False)


#: Every registered benchmark by name, in registration order.
REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str, *, title: str, description: str
) -> Callable[[BenchFunction], BenchFunction]:
    """Register the decorated function as benchmark `name` (letters, digits, `-`, `_`)."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"benchmark name {name!r}: use letters, digits, '-' and '_'")

    def register(function: BenchFunction) -> BenchFunction:
        existing = REGISTRY.get(name)
        if existing is not None and existing.function is not function:
            same_place = (existing.function.__module__, existing.function.__qualname__) == (
                function.__module__,
                function.__qualname__,
            )
            if not same_place:
                raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = Benchmark(name, title, description.strip(), function)
        return function

    return register


#: Modules of the `bench` package that failed to import, with the error (see `discover`).
BROKEN: dict[str, str] = {}


def discover() -> dict[str, Benchmark]:
    """Import every public module of the `bench` package (each registers itself); the registry.

    A module that fails to import is recorded in `BROKEN` instead of stopping the others.
    """
    import bench

    for module in pkgutil.iter_modules(bench.__path__):
        if not module.name.startswith("_"):
            try:
                importlib.import_module(f"bench.{module.name}")
            except Exception as exc:
                BROKEN[module.name] = f"{type(exc).__name__}: {exc}"
    return REGISTRY


def current_rss_bytes() -> int:
    """This process's resident set size right now (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (VmHWM of its address space).

    Not `getrusage().ru_maxrss`: Linux carries the pre-exec high-water mark of the forking parent
    into it, so a spawned child would report the harness's peak instead of its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


@dataclass(frozen=True, slots=True)
class Isolated(Generic[T]):
    """What a function returned in a fresh process, and that process's peak RSS over its life."""

    value: T
    peak_rss_bytes: int


class IsolatedError(RuntimeError):
    """The function failed (or its process died) in the child."""


def _child(conn: Connection, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        value = function(*args)
        conn.send(("ok", value, peak_rss_bytes()))
    except BaseException:
        conn.send(("error", traceback.format_exc(), 0))
    finally:
        conn.close()


def run_isolated(function: Callable[..., T], *args: Any) -> Isolated[T]:
    """Run `function(*args)` in a fresh (spawned) interpreter; return its value and peak RSS.

    Spawned, not forked, so the peak belongs to the work (plus the interpreter and its imports)
    and not to pages inherited from the harness. `function` must be importable by module path and
    its arguments and result picklable.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, function, args), daemon=False)
    process.start()
    sender.close()
    try:
        try:
            status, value, peak = receiver.recv()
        except EOFError:
            process.join()
            raise IsolatedError(
                f"{function.__qualname__} died in its child process (exit code {process.exitcode})"
            ) from None
        process.join()
    except BaseException:
        if process.is_alive():
            process.terminate()
            process.join(10)
        raise
    finally:
        receiver.close()
    if status != "ok":
        raise IsolatedError(f"{function.__qualname__} failed in its child process:\n{value}")
    return Isolated(value, int(peak))
