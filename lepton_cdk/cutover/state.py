"""Where the current traffic weight lives: the embedded splitter's state file, or the DNS stack's settings file. Standard library only.

Both are written atomically (a reader sees the old file or the new one,
never half), so the splitter can follow its state file while ``lepton
cutover advance`` / ``rollback`` rewrite it, and a settings file is never
left half-edited for ``cdktf deploy`` to read.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from lepton_cdk.contract.manifest import write_json_atomic, write_text_atomic
from lepton_cdk.core.routing import WEIGHT_TOTAL

from .errors import CutoverError
from .plan import WEIGHT_SETTING

STATE_KIND = "lepton-cutover-state"
_SETTING_LINE = re.compile(rf"^\s*(?:export\s+)?{WEIGHT_SETTING}\s*=\s*['\"]?([^'\"#\s]*)['\"]?\s*(?:#.*)?$")


@dataclass(frozen=True)
class SplitState:
    """The weight the embedded splitter follows; ``revision`` changes with every write (the splitter echoes it)."""

    weight_percent: int
    revision: str
    updated_at: str = ""
    by: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        """The state file's JSON."""
        return {"kind": STATE_KIND, "weight_percent": self.weight_percent, "revision": self.revision, "updated_at": self.updated_at,
                "by": self.by, "note": self.note}


def read_state(path: Path) -> SplitState | None:
    """The state at ``path``; None when there is no file yet (every caller on the old endpoint).

    Raises :class:`CutoverError` for a file that is not a state file or holds an impossible weight.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CutoverError(f"{path}: not a readable cutover state file ({exc}); run `lepton cutover rollback` to rewrite it") from None
    weight = doc.get("weight_percent") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("kind") != STATE_KIND or isinstance(weight, bool) or not isinstance(weight, int) \
            or not 0 <= weight <= WEIGHT_TOTAL:
        raise CutoverError(f"{path}: not a cutover state file (kind {STATE_KIND}, weight_percent 0-{WEIGHT_TOTAL}); run "
                           "`lepton cutover rollback` to rewrite it")
    return SplitState(weight_percent=weight, revision=str(doc.get("revision", "")), updated_at=str(doc.get("updated_at", "")),
                      by=str(doc.get("by", "")), note=str(doc.get("note", "")))


def write_state(path: Path, weight_percent: int, *, by: str, note: str = "", updated_at: str = "") -> SplitState:
    """Write a new state (a fresh revision) atomically and return it."""
    state = SplitState(weight_percent=weight_percent, revision=uuid.uuid4().hex[:12], updated_at=updated_at, by=by, note=note)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state.to_dict(), path)
    return state


def read_weight_setting(path: Path) -> int | None:
    """``LEPTON_CUTOVER_WEIGHT`` from a settings file of ``KEY=VALUE`` lines; None when the file or the line is missing."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CutoverError(f"{path}: cannot be read ({exc}); it should hold {WEIGHT_SETTING}=<percent>") from None
    for line in lines:
        match = _SETTING_LINE.match(line)
        if match:
            value = match.group(1)
            if not value.isdigit() or not 0 <= int(value) <= WEIGHT_TOTAL:
                raise CutoverError(f"{path}: {WEIGHT_SETTING}={value!r} is not a whole percent from 0 to {WEIGHT_TOTAL}; fix the line")
            return int(value)
    return None


def write_weight_setting(path: Path, weight_percent: int) -> None:
    """Set ``LEPTON_CUTOVER_WEIGHT`` in the settings file (other lines kept, the file created if missing), atomically."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    line = f"{WEIGHT_SETTING}={weight_percent}"
    replaced = False
    for i, existing in enumerate(lines):
        if _SETTING_LINE.match(existing):
            lines[i], replaced = line, True
    if not replaced:
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic("\n".join(lines) + "\n", path)
