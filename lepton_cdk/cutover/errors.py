"""Errors of a cutover. Each message is one line naming the problem and the fix."""

from __future__ import annotations


class CutoverError(RuntimeError):
    """A cutover command could not do what it was asked."""


class PlanError(CutoverError):
    """The cutover plan file (or a flag standing for part of it) cannot work."""


class GateFailedError(CutoverError):
    """A step's gate did not pass: the step must not be taken (CI fails the pull request on it)."""

    def __init__(self, message: str, gate: str) -> None:
        super().__init__(message)
        self.gate = gate
