"""Alerts reach a real webhook once per incident; the run history finds slow runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from shopflow.orchestration.alerts import Alert, resolve_incident, send_alert
from shopflow.orchestration.history import check_slowness, recent_runs, record_run
from shopflow.settings import Settings
from tests.orchestration.receiver import WebhookReceiver
from tests.service_fixtures import free_port

HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)


def alert(incident: str = "failure shopflow_hourly etl run-1") -> Alert:
    return Alert(
        kind="failure",
        title="shopflow_hourly.etl failed",
        incident=incident,
        fields={"error": "LakeError: no space left"},
        link="http://127.0.0.1:8080/log",
    )


@pytest.mark.integration
def test_one_incident_sends_one_alert_to_the_webhook(settings: Settings) -> None:
    with WebhookReceiver() as receiver:
        hooked = settings.model_copy(update={"alert_webhook_url": SecretStr(receiver.url)})
        assert send_alert(hooked, alert()) is True
        assert send_alert(hooked, alert()) is False  # a retry, another worker: quiet
        assert send_alert(hooked, alert("failure shopflow_hourly etl run-2")) is True
        assert resolve_incident(hooked, "failure shopflow_hourly etl run-1") is True
        assert send_alert(hooked, alert()) is True  # closed, so it alerts again
    assert len(receiver.received) == 3
    first = receiver.received[0]
    assert first["text"].startswith("[shopflow failure] shopflow_hourly.etl failed")
    assert "LakeError: no space left" in first["text"]
    assert first["blocks"][0]["text"]["text"] == "shopflow_hourly.etl failed"


def test_an_unreachable_webhook_is_logged_never_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?token=s3cret"
    hooked = settings.model_copy(update={"alert_webhook_url": SecretStr(url)})
    assert send_alert(hooked, alert()) is True
    assert "could not deliver the alert" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_run_five_times_slower_than_its_median_is_slow(settings: Settings) -> None:
    for n, seconds in enumerate([10.0, 12.0, 11.0, 9.0]):
        record_run(settings, "d", "t", HOUR + timedelta(hours=n), seconds, {"rows_in": 5})
    later = HOUR + timedelta(hours=4)
    slow = check_slowness(settings, "d", "t", later, 5 * 10.5)
    assert slow is not None and slow.median_seconds == 10.5 and slow.runs == 4
    assert check_slowness(settings, "d", "t", later, 2.5 * 10.5) is None
    # Only earlier intervals count, so re-running an old hour is judged against its own past.
    assert check_slowness(settings, "d", "t", HOUR + timedelta(hours=2), 1000.0) is None
    assert [r.rows_in for r in recent_runs(settings, "d", "t", later, 10)] == [5, 5, 5, 5]


def test_too_little_history_is_never_slow(settings: Settings) -> None:
    record_run(settings, "d", "t", HOUR, 1.0, {})
    record_run(settings, "d", "t", HOUR + timedelta(hours=1), 1.0, {})
    assert check_slowness(settings, "d", "t", HOUR + timedelta(hours=2), 100.0) is None
