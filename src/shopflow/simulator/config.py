"""What the simulated shop does: traffic, funnel and dirt, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from shopflow.errors import ShopflowError

#: A fixed default start keeps a seed's output identical whenever it is run.
DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ShopflowError(f"simulator: {name} must be between 0 and 1, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ShopflowError(f"simulator: {name} must not be negative, got {value}")


@dataclass(frozen=True, slots=True)
class DirtConfig:
    """How dirty the deliveries and how lively the catalogue are.

    Delivery rates are per valid event; catalogue changes are counts per simulated day.
    """

    duplicate_rate: float = 0.02
    redelivery_max_seconds: float = 600.0
    late_rate: float = 0.01
    late_min_hours: float = 2.0
    late_max_hours: float = 8.0
    malformed_rate: float = 0.005
    price_changes_per_day: float = 200.0
    new_products_per_day: float = 20.0
    new_users_per_day: float = 50.0
    renamed_users_per_day: float = 5.0

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "late_rate", "malformed_rate"):
            _check_share(name, getattr(self, name))
        for spec in fields(self):
            _check_non_negative(spec.name, getattr(self, spec.name))
        if self.late_max_hours < self.late_min_hours:
            raise ShopflowError("simulator: late_max_hours must be at least late_min_hours")

    @classmethod
    def clean(cls) -> DirtConfig:
        """No duplicates, late or malformed deliveries, and a catalogue that never changes."""
        return cls(
            duplicate_rate=0.0,
            late_rate=0.0,
            malformed_rate=0.0,
            price_changes_per_day=0.0,
            new_products_per_day=0.0,
            new_users_per_day=0.0,
            renamed_users_per_day=0.0,
        )


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """One simulation: how many valid events, from when, how fast in simulated time, and how users behave.

    Funnel: a session has on average `mean_views_per_session` views; each view is followed by a
    wishlist with `wishlist_per_view`; a session ends in an order with `order_per_session`; each
    order line is returned by its buyer with `return_per_order_line`, `return_after_hours` later.
    """

    seed: int = 42
    events: int = 10_000
    start: datetime = DEFAULT_START
    events_per_day: int = 50_000
    initial_users: int = 5_000
    batch_minutes: int = 60
    session_id_share: float = 0.6
    mean_views_per_session: float = 6.0
    wishlist_per_view: float = 0.06
    order_per_session: float = 0.08
    return_per_order_line: float = 0.1
    return_after_hours: tuple[float, float] = (12.0, 240.0)
    dirt: DirtConfig = field(default_factory=DirtConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ShopflowError(f"simulator: seed must not be negative, got {self.seed}")
        if self.events < 0:
            raise ShopflowError(f"simulator: events must not be negative, got {self.events}")
        if self.events_per_day < 1:
            raise ShopflowError("simulator: events_per_day must be at least 1")
        if self.initial_users < 1:
            raise ShopflowError("simulator: initial_users must be at least 1")
        if not 1 <= self.batch_minutes <= 24 * 60 or (24 * 60) % self.batch_minutes:
            raise ShopflowError("simulator: batch_minutes must divide a day (1..1440)")
        if self.start.tzinfo is None:
            raise ShopflowError("simulator: start must carry a time zone")
        if self.mean_views_per_session < 1:
            raise ShopflowError("simulator: mean_views_per_session must be at least 1")
        for name in (
            "session_id_share",
            "wishlist_per_view",
            "order_per_session",
            "return_per_order_line",
        ):
            _check_share(name, getattr(self, name))
        low, high = self.return_after_hours
        if not 0 < low <= high:
            raise ShopflowError(
                "simulator: return_after_hours must be (low, high) with 0 < low <= high"
            )
