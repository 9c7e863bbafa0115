"""Dashboard tests build their warehouse from the warehouse tests' tiny lake."""

from tests.warehouse.fixtures import tiny_lake

__all__ = ["tiny_lake"]
