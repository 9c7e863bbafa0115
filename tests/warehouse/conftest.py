"""Warehouse test fixtures (shared with tests/metrics)."""

from tests.warehouse.fixtures import bq_emulator, bq_warehouse, tiny_lake

__all__ = ["bq_emulator", "bq_warehouse", "tiny_lake"]
