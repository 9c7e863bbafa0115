"""The Pub/Sub landing consumer: synchronous Pull (several calls in flight) or StreamingPull."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any, Final, Literal

import google.cloud.pubsub_v1 as pubsub_v1  # bigquery's py.typed hides untyped siblings from `from google.cloud import`
from google.api_core import exceptions as gexc
from google.pubsub_v1.types import PullResponse

from shopflow.errors import ShopflowError
from shopflow.settings import Settings
from shopflow.sources.bus.base import MessageBatch, ReceivedMessage, to_epoch_us
from shopflow.sources.bus.pubsub import (
    UNREACHABLE_ERRORS,
    call_deadline,
    check_emulator,
    make_subscriber_client,
    unreachable,
)
from shopflow.sources.bus.pubsub_prefetch import PullPrefetcher

#: The longest lease a StreamingPull asks for at a time (the library renews it while a message is
#: held). It bounds how long a message whose nack is lost stays away: the emulator mishandles a
#: cancelled stream (its gRPC server fails on the RST_STREAM), keeps handing messages to it, and
#: each such delivery was leased for the library's default 60 s; Pub/Sub itself calls a nack best
#: effort. A held landing batch is renewed long before this runs out.
STREAM_LEASE_SECONDS: Final = 10
#: Ack ids per Acknowledge / ModifyAckDeadline request (the API caps the request size).
ACK_CHUNK: Final = 1000
#: The emulator (and the service) return at most this many messages per Pull.
PULL_BATCH: Final = 1000
#: How long a background Pull waits for messages (the bus holds it open until then); it bounds
#: how long `close` waits for the Pulls in flight.
PULL_WAIT_SECONDS: Final = 2.0


class PubSubConsumer:
    """Reads one subscription; `pull_mode` is synchronous Pull or StreamingPull into a buffer.

    Synchronous pull keeps `settings.pubsub_pull_concurrency` Pull calls in flight on a
    background thread from the first `receive` on, also while the caller validates and writes a
    batch, each asking only for the room left under `settings.landing_batch_max_messages` pulled
    messages waiting (the emulator and the service answer at most `PULL_BATCH` messages a call,
    and the emulator only 100 at a time, so one call at a time, or none between batches, leaves
    the bus idle). What is pulled and not yet received waits, leased; `close` nacks it.
    """

    def __init__(
        self,
        settings: Settings,
        subscription: str | None = None,
        pull_mode: Literal["sync", "streaming"] | None = None,
        max_outstanding: int = 20_000,
    ) -> None:
        self._settings = settings
        self.pull_mode = pull_mode or settings.pubsub_pull_mode
        check_emulator(settings)
        self._client = make_subscriber_client(settings)
        self.subscription_path = self._client.subscription_path(
            settings.gcp_project, subscription or settings.events_subscription
        )
        try:
            self._client.get_subscription(
                subscription=self.subscription_path, **call_deadline(settings)
            )
        except gexc.NotFound:
            self._client.close()
            raise ShopflowError(
                f"Pub/Sub subscription {self.subscription_path} does not exist: create it first "
                "(ensure_event_topic)"
            ) from None
        except UNREACHABLE_ERRORS as exc:
            self._client.close()
            raise unreachable(settings, exc) from None
        self._outstanding: dict[str, Any] = {}  # ack id -> streaming Message (None for sync)
        self._lock = threading.Lock()
        self._buffer: queue.Queue[Any] = queue.Queue()
        self._stream: Any = None
        self._prefetch = PullPrefetcher(
            lambda n: self._pull(n, PULL_WAIT_SECONDS),
            concurrency=settings.pubsub_pull_concurrency,
            limit=settings.landing_batch_max_messages,
            on_pulled=self._lease,
            pull_max=PULL_BATCH,
        )
        #: Acknowledgement calls (in parallel chunks).
        self._calls = ThreadPoolExecutor(
            max_workers=settings.pubsub_pull_concurrency, thread_name_prefix="pubsub-ack"
        )
        if self.pull_mode == "streaming":
            self._stream = self._client.subscribe(
                self.subscription_path,
                callback=self._buffer.put,
                flow_control=pubsub_v1.types.FlowControl(
                    max_messages=max_outstanding,
                    max_bytes=256 * 1024 * 1024,
                    max_duration_per_lease_extension=STREAM_LEASE_SECONDS,
                ),
            )

    def receive_batch(self, max_messages: int, timeout_seconds: float) -> MessageBatch:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        if self.pull_mode == "streaming":
            return self._receive_streaming(max_messages, timeout_seconds)
        return self._receive_sync(max_messages, timeout_seconds)

    def receive(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        return self.receive_batch(max_messages, timeout_seconds).messages()

    def _pull(self, n: int, timeout: float) -> list[Any]:
        try:
            response = self._client.pull(
                request={"subscription": self.subscription_path, "max_messages": n},
                timeout=max(timeout, 0.5),
                retry=None,
            )
        except gexc.DeadlineExceeded:
            return []
        except gexc.ServiceUnavailable as exc:
            raise unreachable(self._settings, exc) from None
        except gexc.NotFound:
            raise self._gone() from None
        # The raw protobuf: proto-plus wrappers cost more than the pull itself at 10k+ msg/s.
        return list(PullResponse.pb(response).received_messages)

    def _lease(self, answer: list[Any]) -> None:
        """Record pulled messages as leased to this consumer until acknowledged or nacked."""
        with self._lock:
            self._outstanding.update(dict.fromkeys(r.ack_id for r in answer))

    def _receive_sync(self, max_messages: int, timeout_seconds: float) -> MessageBatch:
        received = self._prefetch.take(max_messages, timeout_seconds)
        messages = [r.message for r in received]
        ack_ids: list[object] = [r.ack_id for r in received]
        return MessageBatch(
            payloads=[m.data for m in messages],
            message_ids=[m.message_id for m in messages],
            publish_ts_us=[
                m.publish_time.seconds * 1_000_000 + m.publish_time.nanos // 1000
                if m.HasField("publish_time")
                else None
                for m in messages
            ],
            ack_tokens=ack_ids,
        )

    def _receive_streaming(self, max_messages: int, timeout_seconds: float) -> MessageBatch:
        self._raise_if_stream_failed()
        try:
            first = self._buffer.get(timeout=max(timeout_seconds, 0))
        except queue.Empty:
            self._raise_if_stream_failed()
            return MessageBatch()
        held = [first]
        while len(held) < max_messages:
            try:
                held.append(self._buffer.get_nowait())
            except queue.Empty:
                break
        batch = MessageBatch()
        with self._lock:
            for msg in held:
                self._outstanding[msg.ack_id] = msg
                batch.payloads.append(msg.data)
                batch.message_ids.append(msg.message_id)
                batch.publish_ts_us.append(_stream_publish_us(msg))
                batch.ack_tokens.append(msg.ack_id)
        return batch

    def _raise_if_stream_failed(self) -> None:
        if self._stream is not None and self._stream.done():
            exc = self._stream.exception()
            if isinstance(exc, UNREACHABLE_ERRORS):
                raise unreachable(self._settings, exc)
            raise ShopflowError(f"Pub/Sub streaming pull stopped: {exc}")

    def acknowledge_batch(self, batch: MessageBatch) -> None:
        """Acknowledge every message of `batch` (see `acknowledge`)."""
        self._ack([str(token) for token in batch.ack_tokens])

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        """Acknowledge messages (in chunks for sync pull; through the stream's batching otherwise)."""
        self._ack([str(m.ack_token) for m in messages])

    def _ack(self, ack_ids: list[str]) -> None:
        with self._lock:
            handles = [self._outstanding.pop(a, None) for a in ack_ids]
        if self.pull_mode == "streaming":
            for handle in handles:
                if handle is not None:
                    handle.ack()
            return

        def send(chunk: list[str]) -> None:
            self._client.acknowledge(
                request={"subscription": self.subscription_path, "ack_ids": chunk},
                **call_deadline(self._settings),
            )

        try:
            # Every chunk is acknowledged (or this raises) before the caller goes on.
            list(self._calls.map(send, _chunks(ack_ids, ACK_CHUNK)))
        except UNREACHABLE_ERRORS as exc:
            raise unreachable(self._settings, exc) from None
        except gexc.NotFound:
            raise self._gone() from None

    def _gone(self) -> ShopflowError:
        """The error for a subscription deleted while it was being read."""
        return ShopflowError(
            f"Pub/Sub subscription {self.subscription_path} no longer exists (deleted while "
            "landing?): what was not acknowledged is lost with it; the next `shopflow ingest "
            "events` creates it again"
        )

    def close(self) -> None:
        """Stop reading; whatever was not acknowledged is nacked, so it is delivered again.

        Pub/Sub redelivers a nacked message at once, best effort; after a StreamingPull consumer
        the emulator can take a few `STREAM_LEASE_SECONDS` leases longer.
        """
        try:
            if self._stream is not None:
                self._close_stream()
                return
            self._prefetch.stop()  # Pulls in flight answer first: their messages are leased too
            self._prefetch.leftover()
            with self._lock:
                pending = list(self._outstanding)
                self._outstanding.clear()
            self._nack(pending)
        finally:
            self._calls.shutdown(wait=True)
            self._client.close()

    def _nack(self, ack_ids: list[str]) -> None:
        for chunk in _chunks(ack_ids, ACK_CHUNK):
            try:
                self._client.modify_ack_deadline(
                    request={
                        "subscription": self.subscription_path,
                        "ack_ids": chunk,
                        "ack_deadline_seconds": 0,
                    },
                    **call_deadline(self._settings),
                )
            except gexc.GoogleAPIError:  # RetryError too: what the bus deadline ends in
                return  # they come back after the ack deadline instead

    def _close_stream(self) -> None:
        self._stream.cancel()
        # The future ends in CancelledError or the stream's own error; both mean "stopped". Only
        # once the library's threads are gone can no late lease extension undo the nack below.
        with contextlib.suppress(Exception):
            self._stream.result(timeout=10)
        with self._lock:
            pending = list(self._outstanding)
            self._outstanding.clear()
        pending.extend(h.ack_id for h in self._drain_buffer())
        # Known emulator gaps: a new StreamingPull may get these only after the ack deadline, and
        # the emulator may go on leasing them to this (cancelled) stream; see STREAM_LEASE_SECONDS.
        self._nack(pending)

    def _drain_buffer(self) -> list[Any]:
        drained = []
        while True:
            try:
                drained.append(self._buffer.get_nowait())
            except queue.Empty:
                return drained


def _stream_publish_us(msg: Any) -> int | None:
    """A StreamingPull message's publish time in epoch microseconds (naive means UTC)."""
    publish_ts = msg.publish_time
    if publish_ts is None:
        return None
    if publish_ts.tzinfo is None:
        publish_ts = publish_ts.replace(tzinfo=UTC)
    return to_epoch_us(publish_ts)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
