"""One timed `run_etl` (the `shopflow etl` path) with the process tree's peak memory."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench._memory import TreeRssSampler
from shopflow.settings import Settings
from shopflow.transform.jobs import EtlRun


@dataclass(frozen=True, slots=True)
class TimedEtl:
    """Seconds to an ETL session (Spark or SQLFrame), seconds of `run_etl`, what it did, peak RSS."""

    session_seconds: float
    etl_seconds: float
    run: EtlRun
    tree_peak_rss_bytes: int


def time_etl_run(settings: Settings) -> TimedEtl:
    """Open the settings' engine and run one `run_etl` for what is new; meant for a child process."""
    from shopflow.transform.engine import open_etl_session
    from shopflow.transform.jobs import EtlRequest, run_etl

    with TreeRssSampler() as sampler:
        started = time.perf_counter()
        session = open_etl_session(settings, app_name="shopflow-bench")
        ready = time.perf_counter()
        run = run_etl(session, settings, EtlRequest())
        done = time.perf_counter()
        sampler.sample()  # before the JVM goes away with the session
        session.stop()
    return TimedEtl(ready - started, done - ready, run, sampler.peak)
