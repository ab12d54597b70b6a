"""What every benchmark records: the machine it ran on, and its result written as JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def machine() -> dict:
    """What the numbers were measured on."""
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def write_result(result: dict, out: Path) -> None:
    """Write ``result`` to ``out`` (bench-results/<name>.json) and print it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
