"""What a pull request changes: resources added, changed and removed against a base synth.

Resources are matched by address (``type.name``, the cdktf logical id) and
compared by their body, so a renamed construct id shows as one removal and one
addition: exactly what Terraform will do (destroy and create).
"""

from __future__ import annotations

from dataclasses import dataclass

from .resources import StackDocument


@dataclass(frozen=True)
class TypeChanges:
    """Counts for one resource type in one stack; the change lists are None without a base."""

    rtype: str
    count: int  # in the head synth
    added: tuple[str, ...] | None = None
    changed: tuple[str, ...] | None = None
    removed: tuple[str, ...] | None = None


def diff_stack(head: StackDocument | None, base: StackDocument | None, *, compare: bool) -> list[TypeChanges]:
    """Per resource type: how many the head has, and (when ``compare``) which were added, changed or removed."""
    head_bodies = head.resource_bodies() if head else {}
    base_bodies = base.resource_bodies() if base else {}
    types = sorted({a.split(".", 1)[0] for a in head_bodies} | ({a.split(".", 1)[0] for a in base_bodies} if compare else set()))
    result = []
    for rtype in types:
        mine = {a for a in head_bodies if a.startswith(rtype + ".")}
        theirs = {a for a in base_bodies if a.startswith(rtype + ".")}
        if not compare:
            result.append(TypeChanges(rtype, len(mine)))
            continue
        result.append(TypeChanges(
            rtype, len(mine),
            added=tuple(sorted(mine - theirs)),
            changed=tuple(sorted(a for a in mine & theirs if head_bodies[a] != base_bodies[a])),
            removed=tuple(sorted(theirs - mine)),
        ))
    return result
