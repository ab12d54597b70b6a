"""Read what a synthesized cdktf app will create, from ``cdktf.out`` alone.

Works on the plain Terraform JSON (``stacks/<name>/cdk.tf.json``), so it needs
neither cdktf nor credentials and keeps working after a move to CDK Terrain or
hand-written Terraform JSON.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lepton_cdk.contract import ContractError


@dataclass(frozen=True)
class StackResources:
    """The resources, data sources and outputs of one synthesized stack."""

    name: str
    path: Path
    resources: Counter = field(default_factory=Counter)  # terraform type -> count
    data_sources: Counter = field(default_factory=Counter)
    outputs: tuple[str, ...] = ()

    @property
    def resource_count(self) -> int:
        """How many resources the stack manages."""
        return sum(self.resources.values())


def read_stacks(cdktf_out: str | Path) -> list[StackResources]:
    """Every stack under ``cdktf_out/stacks``, sorted by name."""
    root = Path(cdktf_out) / "stacks"
    files = sorted(root.glob("*/cdk.tf.json"))
    if not files:
        raise ContractError(f"no synthesized stacks under {root}; run `cdktf synth` (or `lepton demo`) first")
    stacks = []
    for file in files:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ContractError(f"{file} is not valid JSON ({exc.msg}); re-run `cdktf synth`") from None
        resources = Counter({rtype: len(items) for rtype, items in doc.get("resource", {}).items()})
        data = Counter({dtype: len(items) for dtype, items in doc.get("data", {}).items()})
        stacks.append(StackResources(file.parent.name, file, resources, data, tuple(sorted(doc.get("output", {})))))
    return stacks
