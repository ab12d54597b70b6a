"""Synthesize a stack in-process and look things up in the Terraform JSON: lepton_cdk.testing's helpers, which users
get too, so the project's tests and theirs cannot drift apart. ``synth_json`` is the name these tests grew up with."""

from __future__ import annotations

from lepton_cdk.testing import at, logical_ids, only, ref, resources, synth, synth_stack, synthesized_stacks

synth_json = synth_stack

__all__ = ["at", "logical_ids", "only", "ref", "resources", "synth", "synth_json", "synth_stack", "synthesized_stacks"]
