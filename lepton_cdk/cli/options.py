"""Checks shared by every command's options: one parser for numeric flags and
one check for output file paths, so each bad value fails the same way, up
front, as a usage error naming the flag (exit 2) before any work starts."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer


class OutputFormat(StrEnum):
    """How review and recommend print their result."""

    markdown = "markdown"
    json = "json"


def number(*, at_least: float | None = None, above: float | None = None, at_most: float | None = None) -> Callable[[Any], float]:
    """A typer ``parser`` for a float option that refuses text, NaN, infinities and values outside the bounds.

    Use as ``typer.Option("--gpu-memory-gib", parser=number(above=0))``. Python's
    ``float()`` (which typer uses) accepts ``nan`` and ``inf`` and turns ``1e400``
    into ``inf``; none of those is a usable size, weight or tolerance, so every
    float flag goes through here. The message names the allowed range.
    """
    parts = ([f">= {at_least:g}"] if at_least is not None else []) + ([f"> {above:g}"] if above is not None else []) \
        + ([f"<= {at_most:g}"] if at_most is not None else [])
    allowed = "a finite number" + (f" {' and '.join(parts)}" if parts else "")

    def parse(value: Any) -> float:
        # a default arrives as a number, a flag's value as text
        text = value if isinstance(value, float | int) and not isinstance(value, bool) else str(value).strip()
        try:
            parsed = float(text)
        except OverflowError:  # an int default too large for a float
            parsed = math.inf
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a number; give {allowed}") from None
        if not math.isfinite(parsed):
            raise typer.BadParameter(f"{value!r} is not finite; give {allowed}")
        if (at_least is not None and parsed < at_least) or (above is not None and parsed <= above) \
                or (at_most is not None and parsed > at_most):
            raise typer.BadParameter(f"{value} is out of range; give {allowed}")
        return parsed

    return parse


def check_output_file(path: Path, flag: str) -> None:
    """Refuse, before any work, a path ``flag`` names for a file to write that can never be written.

    Refused: a folder, a special file (FIFO, device: replacing one would be
    worse than failing), a path below an existing file (``out.csv/p.csv``),
    and a nearest existing folder that cannot be written (the file is written
    beside its final name, then renamed into place). Raises
    ``typer.BadParameter`` naming the flag and the fix. Output *folders* are
    checked where a run publishes them (:mod:`lepton_cdk.publish`).
    """
    def bad(problem: str) -> typer.BadParameter:
        return typer.BadParameter(f"{path}: {problem}; choose another path", param_hint=f"'{flag}'")

    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise bad(f"it cannot be checked ({exc.strerror})") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise bad("it is a folder, not a file")
    if mode is not None and not stat.S_ISREG(mode):
        raise bad("it exists and is not a regular file")
    for parent in Path(os.path.abspath(path)).parents:  # the nearest one that exists
        try:
            parent_mode = os.stat(parent).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise bad(f"its folder {parent} cannot be checked ({exc.strerror})") from None
        if not stat.S_ISDIR(parent_mode):
            raise bad(f"{parent} is a file, so nothing can be created under it")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise bad(f"the folder {parent} is not writable")
        return
