"""The dashboard's auto-refreshing "last minutes" panel (a Streamlit fragment over the live path)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
import streamlit as st

from shopflow.dashboard.live import (
    LIVE_MINUTES,
    REFRESH_SECONDS,
    LiveActivity,
    recent_live_activity,
)
from shopflow.settings import Settings

EVENT_COLOURS = {
    "view": "#4c78a8",
    "wishlist": "#f58518",
    "order": "#54a24b",
    "return": "#e45756",
}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "no live events"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def activity_chart(activity: LiveActivity, zone: str) -> alt.Chart:
    """Events per minute by type, every minute of the window on the axis (zero when quiet)."""
    tz = ZoneInfo(zone)
    last = activity.now.replace(second=0, microsecond=0)
    minutes = [last - timedelta(minutes=i) for i in range(activity.minutes, -1, -1)]
    label = {m: m.astimezone(tz).strftime("%H:%M") for m in minutes}
    rows = [
        {"minute": label[r["minute"]], "event_name": r["event_name"], "events": r["events"]}
        for r in activity.per_minute
        if r["minute"] in label
    ]
    frame = pd.DataFrame(rows, columns=["minute", "event_name", "events"])
    chart: alt.Chart = (
        alt.Chart(frame, title=f"Events per minute, last {activity.minutes} minutes")
        .mark_bar()
        .encode(
            x=alt.X(
                "minute:O",
                title=f"minute ({zone})",
                sort=list(label.values()),
                scale=alt.Scale(domain=list(label.values())),
            ),
            y=alt.Y("events:Q", title="events"),
            color=alt.Color(
                "event_name:N",
                title="event",
                scale=alt.Scale(domain=list(EVENT_COLOURS), range=list(EVENT_COLOURS.values())),
            ),
            tooltip=["minute", "event_name", "events"],
        )
        .properties(height=220, usermeta={"embedOptions": {"renderer": "svg"}})
    )
    return chart


@st.fragment(run_every=REFRESH_SECONDS)
def live_panel(settings: Settings, minutes: int = LIVE_MINUTES) -> None:
    """The panel; Streamlit reruns only this fragment every REFRESH_SECONDS."""
    st.subheader("Last minutes (live)")
    activity = recent_live_activity(settings, minutes=minutes)
    if activity.note:
        st.info(f"No live panel: {activity.note}.")
        return
    if activity.damaged:
        st.warning(
            f"{len(activity.damaged)} damaged live file(s) left out (`shopflow stream` moves "
            f"them to quarantine at its next check): {activity.damaged[0]}"
        )
    if activity.newest_event_ts is None:  # no file, or only the view's zero-row placeholder
        st.info(
            "No live events yet: `shopflow stream` writes them to the user_behavior_live "
            "table as they arrive."
        )
        return
    a, b = st.columns(2)
    a.metric(f"Events in the last {minutes} min", f"{activity.events:,}")
    b.metric("Newest event's age", _age(activity.newest_age_seconds))
    st.caption(
        f"From {activity.source}, re-read every {REFRESH_SECONDS} s "
        f"(last read {datetime.now(UTC):%H:%M:%S} UTC)."
    )
    st.altair_chart(activity_chart(activity, settings.reporting_timezone))
