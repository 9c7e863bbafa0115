"""Alerts (failures, slow tasks, stale events) to a Slack-compatible webhook, one per incident.

An incident is a key (for example the failed task's DAG, task and run). The first alert of an
incident creates a marker under the lake's `_state/alerts/` with a create-only write (atomic and
exclusive locally and on GCS), and only the writer of the marker sends; retries, repeated health
checks and several workers raising the same incident find the marker and stay quiet. Resolving an
incident (events flowing again) removes its marker, so the next stall alerts again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from shopflow.lake import AlreadyExistsError, LakeLayout, resolve, write_json_atomic
from shopflow.settings import Settings

log = logging.getLogger("shopflow.alerts")

AlertKind = Literal["failure", "slowness", "stale events", "deadline missed"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: what happened, where, and the incident it belongs to."""

    kind: AlertKind
    title: str
    incident: str
    fields: dict[str, str] = field(default_factory=dict)
    link: str | None = None

    def text(self) -> str:
        """The alert as plain text (the log line, and the webhook's fallback text)."""
        parts = [f"[shopflow {self.kind}] {self.title}"]
        parts += [f"{name}: {value}" for name, value in self.fields.items()]
        if self.link:
            parts.append(f"log: {self.link}")
        return " | ".join(parts)

    def slack_payload(self) -> dict[str, Any]:
        """Slack's incoming-webhook JSON: `text`, plus blocks for receivers that render them."""
        lines = [f"*{name}*: {value}" for name, value in self.fields.items()]
        if self.link:
            lines.append(f"<{self.link}|log in Airflow>")
        return {
            "text": self.text(),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines) or "-"}},
            ],
        }


def _marker(settings: Settings, incident: str) -> str:
    digest = hashlib.sha256(incident.encode()).hexdigest()[:32]
    return f"{LakeLayout.from_settings(settings).state_root()}/alerts/{digest}.json"


def open_incident(settings: Settings, incident: str) -> bool:
    """Record `incident` as alerted; False when it already was (someone else alerts)."""
    record = {"incident": incident, "opened_at": datetime.now(UTC).isoformat()}
    try:
        write_json_atomic(record, _marker(settings, incident), create_only=True)
    except AlreadyExistsError:
        return False
    return True


def resolve_incident(settings: Settings, incident: str) -> bool:
    """Close `incident` (its next occurrence alerts again); False when it was not open."""
    fs, path = resolve(_marker(settings, incident))
    try:
        fs.rm(path)
    except FileNotFoundError:
        return False
    return True


@retry(
    retry=retry_if_exception_type(httpx.TransportError),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.5, max=5),
    reraise=True,
)
def _post(url: str, payload: dict[str, Any], timeout_seconds: float) -> None:
    response = httpx.post(
        url,
        content=json.dumps(payload),
        timeout=timeout_seconds,
        headers={"Content-Type": "application/json"},
    )
    if response.status_code >= 500:
        raise httpx.TransportError(f"webhook answered {response.status_code}")
    response.raise_for_status()


def send_alert(settings: Settings, alert: Alert, *, timeout_seconds: float = 10.0) -> bool:
    """Send `alert` once per incident: logged, and posted to `SHOPFLOW_ALERT_WEBHOOK_URL` when set.

    Returns whether this call sent it. A webhook that cannot be reached is logged, never raised:
    an alert must not fail the task it reports on.
    """
    if not open_incident(settings, alert.incident):
        log.info("alert already sent for incident %s", alert.incident)
        return False
    log.error("%s", alert.text())
    if settings.alert_webhook_url is None:
        return True
    # httpx logs each request's URL at INFO; the webhook URL is a secret.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        _post(settings.alert_webhook_url.get_secret_value(), alert.slack_payload(), timeout_seconds)
    except Exception as exc:  # an alert must never fail its task: name the failure, not the URL
        log.error("could not deliver the alert to the webhook: %s", type(exc).__name__)
    return True
