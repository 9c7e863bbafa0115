"""Errors a user sees as one actionable line."""

from __future__ import annotations


class ShopflowError(Exception):
    """A failure the command line reports as one line and a non-zero exit, without a traceback."""


class ServiceUnavailableError(ShopflowError):
    """A service shopflow needs (database, API, bus) could not be reached."""
