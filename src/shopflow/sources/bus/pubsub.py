"""Google Cloud Pub/Sub bus (or its local emulator): publisher, consumer, topic set-up."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import google.cloud.pubsub_v1 as pubsub_v1  # bigquery's py.typed hides untyped siblings from `from google.cloud import`
import grpc
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport
from google.pubsub_v1.types import PullResponse

from shopflow.errors import ServiceUnavailableError, ShopflowError
from shopflow.services.manager import port_open, split_host_port
from shopflow.settings import Settings
from shopflow.sources.bus.base import ReceivedMessage

#: Generous, so a landing batch is written long before its messages are redelivered.
DEFAULT_ACK_DEADLINE_SECONDS = 120
#: The longest lease a StreamingPull asks for at a time (the library renews it while a message is
#: held). It bounds how long a message whose nack is lost stays away: the emulator mishandles a
#: cancelled stream (its gRPC server fails on the RST_STREAM), keeps handing messages to it, and
#: each such delivery was leased for the library's default 60 s; Pub/Sub itself calls a nack best
#: effort. A held landing batch is renewed long before this runs out.
STREAM_LEASE_SECONDS = 10
#: Ack ids per Acknowledge / ModifyAckDeadline request (the API caps the request size).
ACK_CHUNK = 1000
#: The emulator (and the service) return at most this many messages per Pull.
PULL_BATCH = 1000
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
_UNREACHABLE = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError)


def _deadline(settings: Settings) -> dict[str, Any]:
    """Keyword arguments bounding one unary call, its retries included, by the bus deadline.

    The client's default retry policy retries UNAVAILABLE for up to 600 s, whatever `timeout`
    says per attempt: a host that answers but is not Pub/Sub would hang the caller that long.
    """
    seconds = settings.bus_call_timeout_seconds
    return {"timeout": seconds, "retry": Retry(timeout=seconds, initial=0.1, maximum=1.0)}


def _unreachable(settings: Settings, exc: BaseException | None = None) -> ServiceUnavailableError:
    if settings.pubsub_emulator_host:
        where = f"Pub/Sub emulator at {settings.pubsub_emulator_host}"
        hint = "run `shopflow services up pubsub`"
    else:
        where = f"Google Cloud Pub/Sub (project {settings.gcp_project})"
        hint = "check network access and credentials (`gcloud auth application-default login`)"
    if isinstance(exc, gexc.RetryError | gexc.DeadlineExceeded):
        return ServiceUnavailableError(
            f"{where} did not answer as Pub/Sub within {settings.bus_call_timeout_seconds:g} s "
            f"(SHOPFLOW_BUS_CALL_TIMEOUT_SECONDS): is that address really Pub/Sub? {hint}"
        )
    detail = f" ({type(exc).__name__})" if exc is not None else ""
    return ServiceUnavailableError(f"{where} is not reachable{detail}: {hint}")


def _check_emulator(settings: Settings) -> None:
    """Fail in about a second, not after gRPC's retries, when the emulator is down."""
    if settings.pubsub_emulator_host:
        host, port = split_host_port(settings.pubsub_emulator_host, 8085)
        if not port_open(host, port, timeout=2.0):
            raise _unreachable(settings)


def make_publisher_client(
    settings: Settings, batch_settings: pubsub_v1.types.BatchSettings | None = None
) -> pubsub_v1.PublisherClient:
    """A PublisherClient for real Pub/Sub, or for the emulator over an insecure channel."""
    kwargs: dict[str, Any] = {}
    if batch_settings is not None:
        kwargs["batch_settings"] = batch_settings
    if settings.pubsub_emulator_host:
        channel = grpc.insecure_channel(settings.pubsub_emulator_host, options=_CHANNEL_OPTIONS)
        kwargs["transport"] = PublisherGrpcTransport(channel=channel)
    return pubsub_v1.PublisherClient(**kwargs)


def make_subscriber_client(settings: Settings) -> pubsub_v1.SubscriberClient:
    """A SubscriberClient for real Pub/Sub, or for the emulator over an insecure channel."""
    if settings.pubsub_emulator_host:
        channel = grpc.insecure_channel(settings.pubsub_emulator_host, options=_CHANNEL_OPTIONS)
        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    return pubsub_v1.SubscriberClient()


def ensure_topic_and_subscription(
    settings: Settings,
    topic: str | None = None,
    subscription: str | None = None,
    ack_deadline_seconds: int = DEFAULT_ACK_DEADLINE_SECONDS,
) -> None:
    """Create the topic and its pull subscription unless they exist (idempotent)."""
    topic = topic or settings.events_topic
    subscription = subscription or settings.events_subscription
    _check_emulator(settings)
    publisher = make_publisher_client(settings)
    subscriber = make_subscriber_client(settings)
    topic_path = publisher.topic_path(settings.gcp_project, topic)
    sub_path = subscriber.subscription_path(settings.gcp_project, subscription)
    try:
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=topic_path, **_deadline(settings))
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(
                request={
                    "name": sub_path,
                    "topic": topic_path,
                    "ack_deadline_seconds": ack_deadline_seconds,
                },
                **_deadline(settings),
            )
    except _UNREACHABLE as exc:
        raise _unreachable(settings, exc) from None
    except gexc.GoogleAPICallError as exc:
        raise ShopflowError(f"could not create Pub/Sub {topic_path} / {sub_path}: {exc}") from None
    finally:
        subscriber.close()
        publisher.transport.close()


class PubSubPublisher:
    """Publishes payloads to one Pub/Sub topic, batched for throughput."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self._settings = settings
        _check_emulator(settings)
        self._client = make_publisher_client(
            settings,
            pubsub_v1.types.BatchSettings(
                max_messages=1000, max_bytes=8 * 1024 * 1024, max_latency=0.05
            ),
        )
        self.topic_path = self._client.topic_path(
            settings.gcp_project, topic or settings.events_topic
        )
        try:
            self._client.get_topic(topic=self.topic_path, **_deadline(settings))
        except gexc.NotFound:
            raise ShopflowError(
                f"Pub/Sub topic {self.topic_path} does not exist: create it first "
                "(ensure_event_topic / `shopflow services up pubsub` for the emulator)"
            ) from None
        except _UNREACHABLE as exc:
            raise _unreachable(settings, exc) from None

    def publish(self, payloads: Iterable[bytes]) -> int:
        """Publish every payload and wait until Pub/Sub accepted all of them."""
        futures = []
        count = 0
        for payload in payloads:
            futures.append(self._client.publish(self.topic_path, payload))
            count += 1
            # Bound memory for huge inputs: wait for a window before queueing more.
            if len(futures) >= 50_000:
                self._wait(futures)
                futures = []
        self._wait(futures)
        return count

    def _wait(self, futures: Sequence[Any]) -> None:
        failures: list[BaseException] = []
        for future in futures:
            try:
                future.result(timeout=120)
            except _UNREACHABLE as exc:
                raise _unreachable(self._settings, exc) from None
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise ShopflowError(
                f"{len(failures)} of {len(futures)} Pub/Sub publishes failed: {failures[0]}"
            )

    def close(self) -> None:
        """Flush pending batches and close the channel."""
        self._client.stop()
        self._client.transport.close()


class PubSubConsumer:
    """Reads one subscription; `pull_mode` is synchronous Pull or StreamingPull into a buffer."""

    def __init__(
        self,
        settings: Settings,
        subscription: str | None = None,
        pull_mode: Literal["sync", "streaming"] | None = None,
        max_outstanding: int = 20_000,
    ) -> None:
        self._settings = settings
        self.pull_mode = pull_mode or settings.pubsub_pull_mode
        _check_emulator(settings)
        self._client = make_subscriber_client(settings)
        self.subscription_path = self._client.subscription_path(
            settings.gcp_project, subscription or settings.events_subscription
        )
        try:
            self._client.get_subscription(
                subscription=self.subscription_path, **_deadline(settings)
            )
        except gexc.NotFound:
            self._client.close()
            raise ShopflowError(
                f"Pub/Sub subscription {self.subscription_path} does not exist: create it first "
                "(ensure_event_topic)"
            ) from None
        except _UNREACHABLE as exc:
            self._client.close()
            raise _unreachable(settings, exc) from None
        self._outstanding: dict[str, Any] = {}  # ack id -> streaming Message (None for sync)
        self._lock = threading.Lock()
        self._buffer: queue.Queue[Any] = queue.Queue()
        self._stream: Any = None
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

    def receive(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        """Up to `max_messages` messages, waiting at most `timeout_seconds` for the first."""
        if self.pull_mode == "streaming":
            return self._receive_streaming(max_messages, timeout_seconds)
        return self._receive_sync(max_messages, timeout_seconds)

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
            raise _unreachable(self._settings, exc) from None
        # The raw protobuf: proto-plus wrappers cost more than the pull itself at 10k+ msg/s.
        return list(PullResponse.pb(response).received_messages)

    def _receive_sync(self, max_messages: int, timeout_seconds: float) -> list[ReceivedMessage]:
        deadline = time.monotonic() + timeout_seconds
        received: list[Any] = []
        while not received:
            remaining = deadline - time.monotonic()
            received = self._pull(min(max_messages, PULL_BATCH), remaining)
            if received or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
        while received and len(received) < max_messages:
            more = self._pull(min(max_messages - len(received), PULL_BATCH), 2.0)
            if not more:
                break
            received.extend(more)
        out = [
            ReceivedMessage(
                payload=r.message.data,
                message_id=r.message.message_id,
                publish_ts=r.message.publish_time.ToDatetime(tzinfo=UTC)
                if r.message.HasField("publish_time")
                else None,
                ack_token=r.ack_id,
            )
            for r in received
        ]
        with self._lock:
            for m in out:
                self._outstanding[str(m.ack_token)] = None
        return out

    def _receive_streaming(
        self, max_messages: int, timeout_seconds: float
    ) -> list[ReceivedMessage]:
        self._raise_if_stream_failed()
        try:
            first = self._buffer.get(timeout=max(timeout_seconds, 0))
        except queue.Empty:
            self._raise_if_stream_failed()
            return []
        batch = [first]
        while len(batch) < max_messages:
            try:
                batch.append(self._buffer.get_nowait())
            except queue.Empty:
                break
        out = []
        with self._lock:
            for msg in batch:
                self._outstanding[msg.ack_id] = msg
                publish_ts: datetime | None = msg.publish_time
                if publish_ts is not None and publish_ts.tzinfo is None:
                    publish_ts = publish_ts.replace(tzinfo=UTC)
                out.append(
                    ReceivedMessage(
                        payload=msg.data,
                        message_id=msg.message_id,
                        publish_ts=publish_ts,
                        ack_token=msg.ack_id,
                    )
                )
        return out

    def _raise_if_stream_failed(self) -> None:
        if self._stream is not None and self._stream.done():
            exc = self._stream.exception()
            if isinstance(exc, _UNREACHABLE):
                raise _unreachable(self._settings, exc)
            raise ShopflowError(f"Pub/Sub streaming pull stopped: {exc}")

    def acknowledge(self, messages: Sequence[ReceivedMessage]) -> None:
        """Acknowledge messages (in chunks for sync pull; through the stream's batching otherwise)."""
        ack_ids = [str(m.ack_token) for m in messages]
        with self._lock:
            handles = [self._outstanding.pop(a, None) for a in ack_ids]
        if self.pull_mode == "streaming":
            for handle in handles:
                if handle is not None:
                    handle.ack()
            return
        for chunk in _chunks(ack_ids, ACK_CHUNK):
            try:
                self._client.acknowledge(
                    request={"subscription": self.subscription_path, "ack_ids": chunk},
                    **_deadline(self._settings),
                )
            except _UNREACHABLE as exc:
                raise _unreachable(self._settings, exc) from None

    def close(self) -> None:
        """Stop reading; whatever was not acknowledged is nacked, so it is delivered again.

        Pub/Sub redelivers a nacked message at once, best effort; after a StreamingPull consumer
        the emulator can take a few `STREAM_LEASE_SECONDS` leases longer.
        """
        try:
            if self._stream is not None:
                self._close_stream()
                return
            with self._lock:
                pending = list(self._outstanding)
                self._outstanding.clear()
            self._nack(pending)
        finally:
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
                    **_deadline(self._settings),
                )
            except gexc.GoogleAPICallError:
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


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
