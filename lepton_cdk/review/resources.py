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
from typing import Any

from .errors import ReviewError

# The provider block name in Terraform JSON, and the cloud it stands for.
PROVIDER_CLOUDS = {"aws": "aws", "google": "gcp", "google-beta": "gcp"}


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


@dataclass(frozen=True)
class StackDocument:
    """One stack's Terraform JSON, with the lookups a review needs."""

    name: str
    path: Path  # the cdk.tf.json file
    doc: dict[str, Any]

    @property
    def folder(self) -> Path:
        """The stack's folder (asset paths in the JSON are relative to it)."""
        return self.path.parent

    def resources_of(self, rtype: str) -> dict[str, dict]:
        """Resources of type ``rtype`` by logical name (empty when none)."""
        return self.doc.get("resource", {}).get(rtype, {})

    def resource_bodies(self) -> dict[str, str]:
        """``type.name`` -> the resource body as canonical JSON (cdktf's ``//`` metadata left out)."""
        return {
            f"{rtype}.{name}": json.dumps({k: v for k, v in body.items() if k != "//"}, sort_keys=True)
            for rtype, items in self.doc.get("resource", {}).items()
            for name, body in items.items()
        }

    @property
    def cloud(self) -> str | None:
        """``aws`` or ``gcp`` from the stack's provider block; None when it has neither."""
        for block in self.doc.get("provider", {}):
            if block in PROVIDER_CLOUDS:
                return PROVIDER_CLOUDS[block]
        return None

    @property
    def region(self) -> str | None:
        """The provider block's literal ``region``; None when absent or a Terraform expression."""
        for block, configs in self.doc.get("provider", {}).items():
            if block in PROVIDER_CLOUDS and configs:
                region = configs[0].get("region")
                if isinstance(region, str) and "${" not in region:
                    return region
        return None


def _load(file: Path) -> StackDocument:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReviewError(f"{file} is not valid JSON ({exc.msg}); re-run `cdktf synth`") from None
    if not isinstance(doc, dict):
        raise ReviewError(f"{file} is a JSON {type(doc).__name__}, not a Terraform JSON object; re-run `cdktf synth`")
    for section in ("resource", "data", "output", "provider"):
        if not isinstance(doc.get(section, {}), dict):
            raise ReviewError(f"{file}: {section!r} is not an object; re-run `cdktf synth`")
    for rtype, items in doc.get("resource", {}).items():
        if not isinstance(items, dict) or not all(isinstance(b, dict) for b in items.values()):
            raise ReviewError(f"{file}: resource type {rtype!r} is not an object of named resources; re-run `cdktf synth`")
    return StackDocument(file.parent.name, file, doc)


def read_stack_documents(cdktf_out: str | Path) -> list[StackDocument]:
    """Every stack under ``cdktf_out/stacks``, sorted by name; a clear error when there are none."""
    root = Path(cdktf_out) / "stacks"
    files = sorted(root.glob("*/cdk.tf.json"))
    if not files:
        raise ReviewError(f"no synthesized stacks under {root}; run `cdktf synth` (or `lepton demo`) first")
    return [_load(file) for file in files]


def read_stacks(cdktf_out: str | Path) -> list[StackResources]:
    """Every stack under ``cdktf_out/stacks``, sorted by name."""
    stacks = []
    for stack in read_stack_documents(cdktf_out):
        doc = stack.doc
        resources = Counter({rtype: len(items) for rtype, items in doc.get("resource", {}).items()})
        data = Counter({dtype: len(items) for dtype, items in doc.get("data", {}).items()})
        stacks.append(StackResources(stack.name, stack.path, resources, data, tuple(sorted(doc.get("output", {})))))
    return stacks
