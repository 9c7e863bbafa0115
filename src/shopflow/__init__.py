"""shopflow: an e-commerce data pipeline from three sources to a warehouse."""

__version__ = "0.1.0"
