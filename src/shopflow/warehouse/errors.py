"""Errors of the warehouse layer."""

from __future__ import annotations

from shopflow.errors import ShopflowError


class WarehouseError(ShopflowError):
    """A warehouse load, view or query that could not be done."""
