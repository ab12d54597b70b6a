"""Collect every problem with a construct's props, then raise once."""

from __future__ import annotations

from typing import Any

from .errors import ConstructValidationError
from .framework import is_unresolved


class PropChecks:
    """Gathers problems found while checking props; :meth:`raise_if_any` reports them together.

    Each check is skipped when the value is an unresolved token: its value is
    known only at synth or apply time, where Terraform checks it.
    """

    def __init__(self, construct_path: str) -> None:
        self._path = construct_path
        self._problems: list[str] = []

    def add(self, *problems: str) -> None:
        """Record ``problems`` (each: the prop, the value given and the fix)."""
        self._problems.extend(problems)

    def require(self, ok: bool, problem: str) -> None:
        """Record ``problem`` unless ``ok``."""
        if not ok:
            self._problems.append(problem)

    def known(self, *values: Any) -> bool:
        """True when none of ``values`` is a token (so they can be checked now)."""
        return not any(is_unresolved(v) for v in values)

    def int_range(self, prop: str, value: int, *, minimum: int | None = None, maximum: int | None = None, fix: str = "") -> None:
        """Check that integer prop ``prop`` lies in ``[minimum, maximum]``."""
        if not self.known(value):
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self._problems.append(f"{prop}={value!r} is not an integer; pass a whole number")
            return
        low = minimum is not None and value < minimum
        high = maximum is not None and value > maximum
        if low or high:
            bounds = f"between {minimum} and {maximum}" if minimum is not None and maximum is not None else (
                f"at least {minimum}" if minimum is not None else f"at most {maximum}")
            self._problems.append(f"{prop}={value} must be {bounds}{'; ' + fix if fix else ''}")

    def raise_if_any(self) -> None:
        """Raise one :class:`ConstructValidationError` listing every problem recorded."""
        if self._problems:
            raise ConstructValidationError(self._path, self._problems)
