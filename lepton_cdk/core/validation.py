"""Collect every problem with a construct's props, then raise once."""

from __future__ import annotations

import ipaddress
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

    def private_ipv4_range(self, prop: str, value: str, *, largest: int, smallest: int, example: str) -> None:
        """Check that ``value`` is a private IPv4 range in CIDR form, from ``/largest`` to ``/smallest``."""
        if not self.known(value):
            return
        try:
            network = ipaddress.ip_network(value, strict=True)
        except (TypeError, ValueError):
            self._problems.append(f"{prop}={value!r} is not an IPv4 network in CIDR form; use e.g. {example!r}")
            return
        if not (network.version == 4 and largest <= network.prefixlen <= smallest and network.is_private):
            self._problems.append(f"{prop}={value!r} must be a private IPv4 range from /{largest} to /{smallest} (inside 10.0.0.0/8, "
                                  f"172.16.0.0/12 or 192.168.0.0/16); use e.g. {example!r}")

    def raise_if_any(self) -> None:
        """Raise one :class:`ConstructValidationError` listing every problem recorded."""
        if self._problems:
            raise ConstructValidationError(self._path, self._problems)
