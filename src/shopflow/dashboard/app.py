"""The Streamlit page: the five metrics as charts, a date range filter, and the data's freshness.

Run by `shopflow dashboard` (`streamlit run` on this file); settings come from `SHOPFLOW_*`.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

import altair as alt
import pandas as pd
import streamlit as st

from shopflow.dashboard.data import (
    DashboardUnavailable,
    Freshness,
    Snapshot,
    read_snapshot,
    warehouse_version,
)
from shopflow.dashboard.live_panel import EVENT_COLOURS, live_panel
from shopflow.errors import ShopflowError
from shopflow.settings import Settings, load_settings

TOP_N = 10
#: Vega-Embed options of every chart: SVG, not canvas, so bars and axis labels are elements a
#: browser test can measure and read.
SVG: Final = {"embedOptions": {"renderer": "svg"}}


@st.cache_data(show_spinner=False, max_entries=32, ttl=300)
def _snapshot(
    _settings: Settings, home: str, version: str, start: date | None, end: date | None
) -> Snapshot:
    """The snapshot, cached per warehouse version (`home` and `version` are the cache key)."""
    return read_snapshot(_settings, start, end)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "unknown"
    seconds = int((now - moment).total_seconds())
    span = abs(seconds)
    if span < 120:
        amount = f"{span} s"
    elif span < 2 * 3600:
        amount = f"{span // 60} min"
    elif span < 2 * 86400:
        amount = f"{span // 3600} h"
    else:
        amount = f"{span // 86400} days"
    age = f"{amount} ago" if seconds >= 0 else f"{amount} ahead of this machine's clock"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({age})"


def _freshness(freshness: Freshness, snapshot: Snapshot) -> None:
    now = datetime.now(UTC)
    st.caption(
        f"**Data freshness** · latest event: {_ago(freshness.latest_event_ts, now)}"
        f" · latest ingest: {_ago(freshness.latest_ingest_ts, now)}"
        f" · warehouse last loaded: {_ago(freshness.last_loaded, now)}"
        f" · {snapshot.events:,} events from {snapshot.first_date} to {snapshot.last_date}"
    )


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    # Money comes as exact decimals; charts draw floats (Vega-Lite cannot take a Decimal).
    rows = [{k: float(v) if isinstance(v, Decimal) else v for k, v in r.items()} for r in rows]
    frame = pd.DataFrame(rows)
    if "date" in frame.columns:
        # ISO strings: Vega-Lite reads them as UTC dates, whatever the browser's time zone.
        frame["date"] = frame["date"].map(lambda d: d.isoformat() if d is not None else None)
    return frame


def _day_axis(zone: str) -> alt.X:
    # The dates are already the reporting zone's; `utc` only keeps Vega from shifting them.
    return alt.X("utcyearmonthdate(date):O", title=f"date ({zone})", axis=alt.Axis(labelAngle=-45))


def _top_products(rows: list[dict[str, Any]]) -> list[alt.Chart]:
    """Most sold, most wishlisted, most returned: three charts, drawn side by side in columns."""
    frame = _frame(rows)
    charts = []
    for measure, rank, title, colour in (
        ("lines_sold", "sold_rank", "Most sold (order lines)", EVENT_COLOURS["order"]),
        ("wishlisted", "wishlisted_rank", "Most wishlisted", EVENT_COLOURS["wishlist"]),
        ("returned", "returned_rank", "Most returned", EVENT_COLOURS["return"]),
    ):
        # Zero counts are not "top": a product never returned is not among the most returned.
        top = frame[(frame[rank] <= TOP_N) & (frame[measure] > 0)]
        charts.append(
            alt.Chart(top, title=title)
            .mark_bar(color=colour)
            .encode(
                x=alt.X(
                    f"{measure}:Q", title=measure.replace("_", " "), axis=alt.Axis(tickMinStep=1)
                ),
                y=alt.Y(
                    "product_name:N",
                    sort=alt.EncodingSortField(rank),
                    title=None,
                    axis=alt.Axis(labelLimit=140, labelOverlap=False),
                ),
                tooltip=[
                    "product_id",
                    "product_name",
                    "category",
                    "lines_sold",
                    "units_sold",
                    "wishlisted",
                    "returned",
                ],
            )
            .properties(height=alt.Step(26), usermeta=SVG)
        )
    return charts


#: Where the spend histogram's axis is labelled.
SPEND_TICKS_INR: Final = (0, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def _spend_distribution(rows: list[dict[str, Any]]) -> alt.Chart:
    users = _frame([r for r in rows if r["scope"] == "user"])
    spend = users["avg_spend_per_session_inr"].astype(float)
    # Spend per session is heavily skewed (most users buy nothing, a few buy a lot): users who
    # spent nothing (or returned more than they bought) are counted in the title, not drawn,
    # and the rest are binned on a log scale of 1 + spend, labelled in rupees; on linear bins
    # the same data is one tall bar.
    nothing = int((spend <= 0).sum())
    spenders = users[spend > 0]
    chart: alt.Chart = (
        alt.Chart(
            spenders,
            title=alt.TitleParams(
                "Users by average spend per session (INR, log-scale bins)",
                subtitle=f"{len(spenders):,} users who spent; {nothing:,} who spent nothing "
                "or returned more than they bought are not drawn",
            ),
        )
        .transform_calculate(log_spend="log(1 + datum.avg_spend_per_session_inr) / LN10")
        .mark_bar(color="#72b7b2")
        .encode(
            x=alt.X(
                "log_spend:Q",
                bin=alt.Bin(maxbins=30),
                title="average spend per session (INR)",
                # Ticks at 0, 10, 100, ... rupees (positions log10(1 + spend)).
                axis=alt.Axis(
                    values=[math.log10(1 + inr) for inr in SPEND_TICKS_INR],
                    labelExpr="format(pow(10, datum.value) - 1, ',.0f')",
                ),
            ),
            y=alt.Y("count():Q", title="users"),
            tooltip=[alt.Tooltip("count():Q", title="users")],
        )
        # SVG, not canvas: the bars are elements the browser test can measure.
        .properties(height=260, usermeta=SVG)
    )
    return chart


def _unique_visitors(rows: list[dict[str, Any]], zone: str) -> alt.Chart:
    days = _frame([r for r in rows if r["scope"] == "day"])
    chart: alt.Chart = (
        alt.Chart(days, title="Unique visitors per day")
        .mark_bar(color=EVENT_COLOURS["view"])
        .encode(
            x=_day_axis(zone),
            y=alt.Y("unique_visitors:Q", title="unique visitors"),
            tooltip=["date", "unique_visitors"],
        )
        .properties(height=260, usermeta=SVG)
    )
    return chart


def _orders_by_date(rows: list[dict[str, Any]], zone: str) -> alt.LayerChart:
    frame = _frame(rows)
    base = alt.Chart(frame, title="Orders and net amount by date").encode(x=_day_axis(zone))
    bars = base.mark_bar(color=EVENT_COLOURS["order"], opacity=0.8).encode(
        y=alt.Y("orders:Q", title="orders"),
        tooltip=["date", "orders", "order_lines", "order_amount_inr", "returns", "net_amount_inr"],
    )
    line = base.mark_line(point=True, color="#333333").encode(
        y=alt.Y("net_amount_inr:Q", title="net amount (INR)")
    )
    layered: alt.LayerChart = (
        alt.layer(bars, line).resolve_scale(y="independent").properties(height=260, usermeta=SVG)
    )
    return layered


def _daily_traffic(rows: list[dict[str, Any]], zone: str) -> alt.Chart:
    frame = _frame(rows)
    chart: alt.Chart = (
        alt.Chart(frame, title="Daily traffic by event type")
        .mark_bar()
        .encode(
            x=_day_axis(zone),
            y=alt.Y("events:Q", title="events"),
            color=alt.Color(
                "event_name:N",
                title="event",
                scale=alt.Scale(domain=list(EVENT_COLOURS), range=list(EVENT_COLOURS.values())),
            ),
            tooltip=["date", "event_name", "events", "unique_visitors"],
        )
        .properties(height=260, usermeta=SVG)
    )
    return chart


def _date_range(first: date, last: date, zone: str) -> tuple[date, date]:
    picked = st.sidebar.date_input(
        f"Date range ({zone})", value=(first, last), min_value=first, max_value=last
    )
    # While a range is being picked the widget holds one date; use it as both ends.
    if isinstance(picked, tuple | list):
        days = [d for d in picked if isinstance(d, date)]
        if len(days) == 2:
            return days[0], days[1]
        if len(days) == 1:
            return days[0], days[0]
    elif isinstance(picked, date):
        return picked, picked
    return first, last


def render() -> None:
    """Draw the page."""
    st.set_page_config(page_title="shopflow dashboard", layout="wide")
    st.title("shopflow dashboard")
    try:
        settings = load_settings()
    except ShopflowError as exc:
        st.error(str(exc))
        return
    zone = settings.reporting_timezone
    try:
        live_panel(settings)
    except ShopflowError as exc:  # the live panel's trouble must not hide the metrics
        st.warning(f"No live panel: {exc}", icon="⚠️")
    try:
        home = str(settings.home.resolve())
        whole = _snapshot(settings, home, warehouse_version(settings), None, None)
        start, end = _date_range(whole.first_date, whole.last_date, zone)
        snapshot = (
            whole
            if (start, end) == (whole.start, whole.end)
            else _snapshot(settings, home, warehouse_version(settings), start, end)
        )
    except DashboardUnavailable as exc:
        st.warning(str(exc), icon="⚠️")
        return
    except ShopflowError as exc:
        st.error(str(exc))
        return
    _freshness(snapshot.freshness, snapshot)
    st.sidebar.caption(f"Showing {snapshot.start} to {snapshot.end}.")
    if st.sidebar.button("Reload data"):
        _snapshot.clear()
        st.rerun()

    metrics = snapshot.metrics
    if not metrics["metric_daily_traffic"]:
        st.info(f"No events between {snapshot.start} and {snapshot.end}.")
        return

    st.subheader("Top products")
    # Three columns that share the page's width: the third chart never runs past the window.
    for column, chart in zip(
        st.columns(3), _top_products(metrics["metric_top_products"]), strict=True
    ):
        column.altair_chart(chart, width="stretch")

    st.subheader("Average spend per session")
    overall = next(r for r in metrics["metric_avg_spend_per_session"] if r["scope"] == "overall")
    a, b, c = st.columns(3)
    a.metric("Average spend per session", f"₹{overall['avg_spend_per_session_inr'] or 0:,.2f}")
    b.metric("Spend (orders - returns)", f"₹{overall['spend_inr']:,.2f}")
    c.metric("Sessions", f"{overall['sessions']:,}")
    st.altair_chart(_spend_distribution(metrics["metric_avg_spend_per_session"]))

    left, right = st.columns(2)
    with left:
        st.subheader("Unique visitors")
        total = next(r for r in metrics["metric_unique_visitors"] if r["scope"] == "overall")
        st.metric("Unique visitors in the range", f"{total['unique_visitors']:,}")
        st.altair_chart(_unique_visitors(metrics["metric_unique_visitors"], zone))
    with right:
        st.subheader("Orders by date")
        orders = metrics["metric_orders_by_date"]
        st.metric("Orders in the range", f"{sum(int(r['orders']) for r in orders):,}")
        if orders:
            st.altair_chart(_orders_by_date(orders, zone))
        else:
            st.info("No orders in this range.")

    st.subheader("Daily traffic")
    st.altair_chart(_daily_traffic(metrics["metric_daily_traffic"], zone))


if __name__ == "__main__":
    render()
