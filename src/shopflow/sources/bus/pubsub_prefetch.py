"""Synchronous Pull kept running in the background: the Pub/Sub landing consumer's read-ahead."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

#: Pause after a Pull that came back empty, in case a bus answers an empty Pull at once rather
#: than holding it open (the emulator and the service hold it): an idle consumer must not spin.
EMPTY_PULL_PAUSE_SECONDS: Final = 0.05


class PullPrefetcher:
    """Keeps up to `concurrency` Pulls in flight on a background thread, each asking for at most
    `pull_max` messages, so that pulled messages waiting to be taken plus those asked for never
    exceed `limit`.

    The bus goes on working while the caller validates and writes a batch; without it, the Pulls
    in flight answer within milliseconds of a batch closing and the bus then idles until the next
    `take`. Every pulled message is leased to the consumer: `on_pulled` records each answer
    before it can be taken (so the consumer can nack what it never acknowledged), including the
    answers of Pulls still in flight when the prefetcher stops.
    """

    def __init__(
        self,
        pull: Callable[[int], list[Any]],
        concurrency: int,
        limit: int,
        on_pulled: Callable[[list[Any]], None],
        pull_max: int = 1000,
    ) -> None:
        self._pull = pull
        self._pull_max = pull_max
        self._concurrency = concurrency
        self._limit = limit
        self._on_pulled = on_pulled
        self._answers: deque[list[Any]] = deque()
        self._count = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def take(self, max_messages: int, timeout_seconds: float) -> list[Any]:
        """Up to `max_messages` pulled messages, oldest first, waiting at most `timeout_seconds`
        for the first; raises the error that stopped the Pulls once nothing pulled is left."""
        self._start()
        deadline = time.monotonic() + timeout_seconds
        taken: list[Any] = []
        with self._cond:
            while not self._count and self._error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return taken
                self._cond.wait(remaining)
            if not self._count and self._error is not None:
                raise self._error
            while self._answers and len(taken) < max_messages:
                answer = self._answers.popleft()
                wanted = max_messages - len(taken)
                if len(answer) > wanted:
                    self._answers.appendleft(answer[wanted:])
                    answer = answer[:wanted]
                taken.extend(answer)
            self._count -= len(taken)
            self._cond.notify_all()  # room for more Pulls
        return taken

    def leftover(self) -> list[Any]:
        """What was pulled and not taken (call after `stop`)."""
        with self._cond:
            left = [message for answer in self._answers for message in answer]
            self._answers.clear()
            self._count = 0
        return left

    def stop(self) -> None:
        """Stop pulling; returns once no Pull is in flight (at most one Pull's wait)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pubsub-prefetch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        calls = ThreadPoolExecutor(self._concurrency, thread_name_prefix="pubsub-pull")
        # (messages asked for, its answer): a Pull asks only for the room left under the limit,
        # so what waits leased never exceeds it, whatever `concurrency` times `pull_max` is.
        in_flight: deque[tuple[int, Future[list[Any]]]] = deque()
        requested = 0
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    if not in_flight:
                        self._cond.wait_for(lambda: self._stopping or self._count < self._limit)
                        if self._stopping:
                            return
                    room = self._limit - self._count - requested
                while room > 0 and len(in_flight) < self._concurrency:
                    asked = min(self._pull_max, room)
                    in_flight.append((asked, calls.submit(self._pull, asked)))
                    requested += asked
                    room -= asked
                asked, future = in_flight.popleft()
                requested -= asked
                answer = future.result()
                self._deliver(answer)
                if not answer:
                    time.sleep(EMPTY_PULL_PAUSE_SECONDS)
        except BaseException as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            for _, future in in_flight:
                with contextlib.suppress(Exception):
                    self._deliver(future.result())
            calls.shutdown(wait=True)

    def _deliver(self, answer: list[Any]) -> None:
        if not answer:
            return
        self._on_pulled(answer)
        with self._cond:
            self._answers.append(answer)
            self._count += len(answer)
            self._cond.notify_all()
