"""Errors of the lake layer."""

from __future__ import annotations

from shopflow.errors import ShopflowError


class LakeError(ShopflowError):
    """A lake read or write that could not be done."""


class AlreadyExistsError(LakeError):
    """A create-only write found the object already there."""


class StateConflictError(LakeError):
    """Another writer changed a state record since this store last read or wrote it."""


class WriteConflictError(LakeError):
    """A conditional write found the object changed by another writer; nothing was written."""
