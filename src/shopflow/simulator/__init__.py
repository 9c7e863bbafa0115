"""The deterministic simulated shop that feeds the three sources."""

from shopflow.simulator.config import DEFAULT_START, DirtConfig, SimulationConfig
from shopflow.simulator.malformed import MalformedKind
from shopflow.simulator.records import Delivery, DeliveryKind, GroundTruth, SimBatch, event_id_for
from shopflow.simulator.shop import ShopSimulator, simulate

__all__ = [
    "DEFAULT_START",
    "Delivery",
    "DeliveryKind",
    "DirtConfig",
    "GroundTruth",
    "MalformedKind",
    "ShopSimulator",
    "SimBatch",
    "SimulationConfig",
    "event_id_for",
    "simulate",
]
