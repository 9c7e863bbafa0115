"""The Pub/Sub sync consumer's failures on a fake client: one clear error, the first one."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.pubsub_v1.types import PullResponse, ReceivedMessage

from shopflow.errors import ServiceUnavailableError, ShopflowError
from shopflow.settings import Settings
from shopflow.sources.bus import pubsub_consumer
from shopflow.sources.bus.pubsub_consumer import PubSubConsumer


def api_error(kind: type[Exception], *args: Any) -> Exception:
    """An api_core exception (their constructors are untyped)."""
    return kind(*args)


class FakeClient:
    """A subscriber client: `pull` answers `pulls` in turn (an exception is raised), then waits."""

    def __init__(self, pulls: list[Any], modify_error: Exception | None = None) -> None:
        self._pulls = pulls
        self._modify_error = modify_error
        self.nacked: list[str] = []

    def subscription_path(self, project: str, name: str) -> str:
        return f"projects/{project}/subscriptions/{name}"

    def get_subscription(self, **kwargs: Any) -> None:
        return None

    def pull(self, request: dict[str, Any], **kwargs: Any) -> PullResponse:
        reply = self._pulls.pop(0) if self._pulls else api_error(gexc.DeadlineExceeded, "idle")
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, PullResponse)
        return reply

    def acknowledge(self, request: dict[str, Any], **kwargs: Any) -> None:
        return None

    def modify_ack_deadline(self, request: dict[str, Any], **kwargs: Any) -> None:
        if self._modify_error is not None:
            raise self._modify_error
        self.nacked.extend(request["ack_ids"])

    def close(self) -> None:
        return None


def answer(*ids: str) -> PullResponse:
    return PullResponse(
        received_messages=[
            ReceivedMessage(ack_id=i, message={"data": i.encode(), "message_id": i}) for i in ids
        ]
    )


def consumer(
    settings: Settings, client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> PubSubConsumer:
    monkeypatch.setattr(pubsub_consumer, "make_subscriber_client", lambda s: client)
    monkeypatch.setattr(pubsub_consumer, "check_emulator", lambda s: None)
    return PubSubConsumer(
        settings.model_copy(update={"pubsub_pull_concurrency": 1, "bus_call_timeout_seconds": 1})
    )


def test_a_nack_that_times_out_at_close_does_not_hide_the_error_before_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator dies: the Pull fails, and the nack of what was pulled ends in a RetryError.
    down = api_error(gexc.ServiceUnavailable, "failed to connect to all addresses")
    client = FakeClient(
        [answer("a", "b"), down],
        modify_error=api_error(gexc.RetryError, "Timeout of 1.0s exceeded", down),
    )
    reader = consumer(settings, client, monkeypatch)
    with pytest.raises(ServiceUnavailableError, match="is not reachable"):
        try:
            assert len(reader.receive_batch(1, 2.0)) == 1
            while True:
                reader.receive_batch(10, 2.0)
        finally:
            reader.close()  # must not raise: the messages come back after the ack deadline


def test_a_subscription_deleted_while_reading_is_one_clear_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient([answer("a"), api_error(gexc.NotFound, "Subscription does not exist")])
    reader = consumer(settings, client, monkeypatch)
    try:
        assert len(reader.receive_batch(10, 2.0)) == 1
        with pytest.raises(ShopflowError) as info:
            while True:
                reader.receive_batch(10, 2.0)
    finally:
        reader.close()
    message = str(info.value)
    assert "\n" not in message
    assert f"{reader.subscription_path} no longer exists" in message
    assert client.nacked == ["a"]
