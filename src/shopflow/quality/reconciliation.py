"""`reconciliation`: order events against the orders API's order lines, per date.

The ETL counts every kind of mismatch in the curated table `order_reconciliation`
(`shopflow.transform.reconciliation`); this check judges those counts. A date's mismatched orders
are its API orders without an order event, its order events without an API order, and its orders
whose amounts disagree. Returns of an order outside the lake are not counted here (the lake may
begin after the order).
"""

from __future__ import annotations

import math

from shopflow.quality.curated import CuratedData
from shopflow.quality.results import CheckResult, Severity


def reconciliation(data: CuratedData, tolerance: float) -> list[CheckResult]:
    """Per checked date: mismatched orders (error beyond `tolerance` of the date's orders)."""
    found = {
        row[0]: row[1:]
        for row in data.rows(
            "SELECT date, sum(api_orders), sum(event_orders), sum(orders_without_event), "
            "sum(events_without_order), sum(amount_mismatches) "
            "FROM order_reconciliation GROUP BY date"
        )
    }
    results = []
    for day in data.dates:
        if day not in found:
            results.append(
                CheckResult(
                    "reconciliation",
                    "order_reconciliation",
                    day,
                    Severity.ERROR,
                    None,
                    None,
                    True,
                    "no order_reconciliation partition for this date (no orders on either side)",
                )
            )
            continue
        api, events, without_event, without_order, amounts = (int(v or 0) for v in found[day])
        mismatched = without_event + without_order + amounts
        allowed = math.floor(tolerance * max(api, events))
        detail = (
            f"{mismatched:,} of {max(api, events):,} orders mismatched: {without_event:,} API "
            f"orders without an order event, {without_order:,} order events without an API "
            f"order, {amounts:,} amounts that disagree"
        )
        results.append(
            CheckResult(
                "reconciliation",
                "order_reconciliation",
                day,
                Severity.ERROR,
                float(mismatched),
                float(allowed),
                mismatched <= allowed,
                detail,
            )
        )
    return results
