"""Google Cloud Pub/Sub bus (or its local emulator): publisher, clients, topic set-up (the
consumer: `shopflow.sources.bus.pubsub_consumer`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1  # bigquery's py.typed hides untyped siblings from `from google.cloud import`
import grpc
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

from shopflow.errors import ServiceUnavailableError, ShopflowError
from shopflow.services.probes import port_open, split_host_port
from shopflow.settings import Settings

#: Generous, so a landing batch is written long before its messages are redelivered.
DEFAULT_ACK_DEADLINE_SECONDS = 120
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
UNREACHABLE_ERRORS = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError)


def call_deadline(settings: Settings) -> dict[str, Any]:
    """Keyword arguments bounding one unary call, its retries included, by the bus deadline.

    The client's default retry policy retries UNAVAILABLE for up to 600 s, whatever `timeout`
    says per attempt: a host that answers but is not Pub/Sub would hang the caller that long.
    """
    seconds = settings.bus_call_timeout_seconds
    return {"timeout": seconds, "retry": Retry(timeout=seconds, initial=0.1, maximum=1.0)}


def unreachable(settings: Settings, exc: BaseException | None = None) -> ServiceUnavailableError:
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


def check_emulator(settings: Settings) -> None:
    """Fail in about a second, not after gRPC's retries, when the emulator is down."""
    if settings.pubsub_emulator_host:
        host, port = split_host_port(settings.pubsub_emulator_host, 8085)
        if not port_open(host, port, timeout=2.0):
            raise unreachable(settings)


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
    check_emulator(settings)
    publisher = make_publisher_client(settings)
    subscriber = make_subscriber_client(settings)
    topic_path = publisher.topic_path(settings.gcp_project, topic)
    sub_path = subscriber.subscription_path(settings.gcp_project, subscription)
    try:
        with contextlib.suppress(gexc.AlreadyExists):
            publisher.create_topic(name=topic_path, **call_deadline(settings))
        with contextlib.suppress(gexc.AlreadyExists):
            subscriber.create_subscription(
                request={
                    "name": sub_path,
                    "topic": topic_path,
                    "ack_deadline_seconds": ack_deadline_seconds,
                },
                **call_deadline(settings),
            )
    except UNREACHABLE_ERRORS as exc:
        raise unreachable(settings, exc) from None
    except gexc.GoogleAPICallError as exc:
        raise ShopflowError(f"could not create Pub/Sub {topic_path} / {sub_path}: {exc}") from None
    finally:
        subscriber.close()
        publisher.transport.close()


class PubSubPublisher:
    """Publishes payloads to one Pub/Sub topic, batched for throughput."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self._settings = settings
        check_emulator(settings)
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
            self._client.get_topic(topic=self.topic_path, **call_deadline(settings))
        except gexc.NotFound:
            raise ShopflowError(
                f"Pub/Sub topic {self.topic_path} does not exist: create it first "
                "(ensure_event_topic / `shopflow services up pubsub` for the emulator)"
            ) from None
        except UNREACHABLE_ERRORS as exc:
            raise unreachable(settings, exc) from None

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
            except UNREACHABLE_ERRORS as exc:
                raise unreachable(self._settings, exc) from None
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
