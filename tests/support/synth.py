"""Synthesize a stack in-process and look things up in the Terraform JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lepton_cdk.core.framework import Construct, TerraformStack, Testing


def synth_json(build: Callable[[Construct], Any], *, provider: Callable[[Construct], Any]) -> tuple[dict, Any]:
    """Build a stack with ``provider`` and ``build``; returns (the synthesized JSON, what ``build`` returned).

    Uses ``Testing.synth(..., run_validations=True)`` so error annotations fail the test.
    """
    app = Testing.app()
    stack = TerraformStack(app, "test")
    provider(stack)
    built = build(stack)
    return json.loads(Testing.synth(stack, True)), built


def resources(doc: dict, rtype: str) -> dict[str, dict]:
    """Every resource of type ``rtype``, by logical id (empty when none)."""
    return doc.get("resource", {}).get(rtype, {})


def only(doc: dict, rtype: str, section: str = "resource") -> dict:
    """The single resource (or data source) of type ``rtype``; fails when there are none or several."""
    found = doc.get(section, {}).get(rtype, {})
    assert len(found) == 1, f"expected exactly one {rtype}, found {sorted(found)}"
    return next(iter(found.values()))


def logical_ids(doc: dict, section: str = "resource") -> set[str]:
    """``type.logical_id`` for everything in ``section``."""
    return {f"{rtype}.{name}" for rtype, items in doc.get(section, {}).items() for name in items}


def ref(rtype: str, logical_id: str, attribute: str) -> str:
    """The Terraform reference string cdktf writes for an attribute."""
    return f"${{{rtype}.{logical_id}.{attribute}}}"


def at(doc: dict, rtype: str, path: str, section: str = "resource") -> dict:
    """The resource of type ``rtype`` declared at construct ``path`` (``"ModelBucket/Encryption"``; a
    ``"Resource"`` child is named by its parent's path); fails when there is none."""
    stem = path.removesuffix("/Resource").replace("/", "_")
    found = {name: r for name, r in doc.get(section, {}).get(rtype, {}).items() if name.rsplit("_", 1)[0] == stem}
    assert len(found) == 1, f"expected one {rtype} at {path}, found {sorted(doc.get(section, {}).get(rtype, {}))}"
    return next(iter(found.values()))
