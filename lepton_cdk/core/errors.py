"""Errors shared by every construct. Standard library only."""

from __future__ import annotations


class ConstructValidationError(ValueError):
    """A construct was given props that cannot work.

    Raised once per construct from its ``__init__`` with every problem found,
    each naming the prop, the value given and the fix, so a user fixes them
    all in one round instead of one per synth.
    """

    def __init__(self, construct_path: str, problems: list[str]) -> None:
        self.construct_path = construct_path
        self.problems = list(problems)
        if len(problems) == 1:
            message = f"{construct_path}: {problems[0]}"
        else:
            listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
            message = f"{construct_path}: {len(problems)} problems: {listed}"
        super().__init__(message)
