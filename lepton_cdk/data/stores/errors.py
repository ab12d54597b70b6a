"""Errors raised by the object stores; their messages are written for the user (one line, problem and fix)."""

from __future__ import annotations


class StorageError(Exception):
    """A store operation failed for a reason that retrying will not fix."""


class StoreConfigError(StorageError):
    """A store URI, bucket, endpoint or credential problem found before anything moves."""


class TransientStorageError(StorageError):
    """A failure worth retrying: a 5xx answer, throttling, a dropped connection."""


class ObjectNotFoundError(StorageError):
    """The object is not (or no longer) in the store."""


class SourceChangedError(StorageError):
    """The source object changed while it was being copied; nothing of it was kept."""


class IntegrityError(StorageError):
    """What the destination holds does not match the checksums of what was read from the source."""


class DestinationBusyError(StorageError):
    """Another sync holds the destination's lock."""


class UnwritableKeyError(StorageError):
    """An object key that cannot be a file inside a local folder (``..``, ``a//b``, a link or a file in the way)."""
