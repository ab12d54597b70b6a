"""Errors of the migration engine; messages are one line naming the problem and the fix."""

from __future__ import annotations


class SyncError(Exception):
    """A sync, plan or verify request that cannot run as given."""


class SyncIncompleteError(SyncError):
    """The sync finished but some objects failed or changed during the run (listed in the message)."""


class VerifyError(SyncError):
    """Two trees (or a tree and a manifest) differ."""


class TranscodeError(SyncError):
    """A CSV table could not be converted, or the Parquet copy did not prove equal to it."""
