"""Include/exclude globs over object keys.

A pattern matches the whole key: ``*`` and ``?`` stay within one path segment,
``**`` crosses segments, and a pattern ending in ``/`` means everything under
that folder. A key is selected when it matches some ``--include`` (or there is
none) and no ``--exclude``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from .errors import SyncError


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile one glob to a regex over whole keys."""
    if not pattern:
        raise SyncError("an empty --include/--exclude pattern matches nothing; remove it")
    if pattern.endswith("/"):
        pattern += "**"
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise SyncError(f"pattern {pattern!r} has an unclosed '['; close it or escape it as [[]")
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard: what a prefix-only transfer service can filter on."""
    pattern = pattern.lstrip("/")
    cut = min((pattern.find(c) for c in "*?[" if c in pattern), default=len(pattern))
    return pattern[:cut]


@dataclass(frozen=True)
class KeyFilter:
    """The selection ``--include`` / ``--exclude`` make."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @cached_property
    def _inc(self) -> list[re.Pattern[str]]:
        return [glob_to_regex(p) for p in self.include]

    @cached_property
    def _exc(self) -> list[re.Pattern[str]]:
        return [glob_to_regex(p) for p in self.exclude]

    def selects(self, key: str) -> bool:
        """Whether ``key`` is in the selection."""
        if self._inc and not any(p.match(key) for p in self._inc):
            return False
        return not any(p.match(key) for p in self._exc)

    def validate(self) -> None:
        """Compile every pattern now, so a bad one fails before anything moves."""
        _ = self._inc, self._exc
