"""Synthesize a stack in-process and look things up in its Terraform JSON, in the style of cdktf's ``Testing``.

cdktf's own ``Testing.synth(stack)`` returns the JSON of a stack that
``cdktf synth`` would refuse: it runs the constructs' validations only with
``run_validations=True``, and never fails on error annotations (an
unsuppressed policy finding, a construct's ``Annotations.add_error``), which
``app.synth()`` aborts on. :func:`synth` does both, so such a stack fails
the test with :class:`SynthError` instead of passing quietly.
The lookups work on the parsed JSON (a ``dict``), so assertions read like
the ``cdk.tf.json`` a reviewer sees.

``cdktf`` starts when a synth helper is first called, not on import: the
lookup helpers are plain functions over dicts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lepton_cdk.core.framework import Construct, TerraformStack


# The metadata type cdktf's Annotations.add_error writes, and app.synth() aborts on.
ERROR_ANNOTATION = "@cdktf/error"


class SynthError(AssertionError):
    """The stack has error annotations, so ``cdktf synth`` would refuse it; the message lists each with its construct path."""


def synth(stack: TerraformStack) -> dict[str, Any]:
    """The stack's Terraform JSON, parsed, as ``cdktf synth`` would write it.

    Runs the Aspects (the policy checks) and the constructs' validations
    (``Testing.synth(stack, True)``), then fails as ``app.synth()`` does when
    any construct of the stack carries an error annotation.

    :raises SynthError: one or more error annotations, listed as ``[path] message``.
    """
    from lepton_cdk.core.framework import Testing

    doc = json.loads(Testing.synth(stack, True))
    errors = [f"[{c.node.path}] {entry.data}" for c in stack.node.find_all() for entry in c.node.metadata if entry.type == ERROR_ANNOTATION]
    if errors:
        raise SynthError(f"{len(errors)} error annotation(s), which cdktf synth refuses: " + "; ".join(errors))
    return doc


def synth_stack(build: Callable[[Construct], Any], *, provider: Callable[[Construct], Any] | None = None,
                stack_id: str = "test") -> tuple[dict[str, Any], Any]:
    """Build a stack in a fresh test app and synthesize it; returns ``(the Terraform JSON, what build returned)``.

    :param build: called with the new stack; declares what the test checks and returns anything the test wants back.
    :param provider: called with the stack first, to declare the provider
        (``lambda s: AwsProvider(s, "aws", region="us-east-1")``,
        ``AwsEmulator(url).provider``). Default: none; ``build`` declares it.
    :param stack_id: the stack's id. Default: ``"test"``.
    """
    from lepton_cdk.core.framework import TerraformStack, Testing

    stack = TerraformStack(Testing.app(), stack_id)
    if provider is not None:
        provider(stack)
    built = build(stack)
    return synth(stack), built


def synthesized_stacks(outdir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every stack an app wrote into ``outdir`` (a ``cdktf.out``), as ``{stack name: Terraform JSON}``."""
    stacks = Path(outdir) / "stacks"
    return {path.parent.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(stacks.glob("*/cdk.tf.json"))}


def _matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and _matches(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(_matches(a, e) for a, e in zip(actual, expected, strict=True))
    return actual == expected


def resources(doc: Mapping[str, Any], rtype: str, properties: Mapping[str, Any] | None = None, *,
              section: str = "resource") -> dict[str, dict[str, Any]]:
    """Every resource of type ``rtype`` by logical id (empty when none).

    :param properties: keep only the resources whose configuration contains
        these properties; nested objects and lists of objects match when
        they contain the given keys (cdktf's ``to_have_resource_with_properties``).
    :param section: ``"resource"``, or ``"data"`` for data sources.
    """
    found = dict(doc.get(section, {}).get(rtype, {}))
    if properties is None:
        return found
    return {name: r for name, r in found.items() if _matches(r, properties)}


def only(doc: Mapping[str, Any], rtype: str, section: str = "resource") -> dict[str, Any]:
    """The single resource (or, with ``section="data"``, data source) of type ``rtype``; AssertionError when none or several."""
    found = doc.get(section, {}).get(rtype, {})
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {rtype}, found {sorted(found)}")
    return next(iter(found.values()))


def logical_ids(doc: Mapping[str, Any], section: str = "resource") -> set[str]:
    """``type.logical_id`` for everything in ``section``: what a test pins so a rename (a replaced resource) fails."""
    return {f"{rtype}.{name}" for rtype, items in doc.get(section, {}).items() for name in items}


def ref(rtype: str, logical_id: str, attribute: str) -> str:
    """The Terraform reference cdktf writes for an attribute: ``${rtype.logical_id.attribute}``."""
    return f"${{{rtype}.{logical_id}.{attribute}}}"


def at(doc: Mapping[str, Any], rtype: str, path: str, section: str = "resource") -> dict[str, Any]:
    """The resource of type ``rtype`` declared at construct ``path`` below the stack.

    ``path`` is like ``"Models/Key"``; a ``"Resource"`` child is named by its
    parent's path (``"Models"`` finds ``Models/Resource``). AssertionError
    when there is none or several.
    """
    stem = path.removesuffix("/Resource").replace("/", "_")
    candidates = doc.get(section, {}).get(rtype, {})
    found = {name: r for name, r in candidates.items() if name.rsplit("_", 1)[0] == stem}
    if len(found) != 1:
        raise AssertionError(f"expected one {rtype} at {path}, found {sorted(candidates)}")
    return next(iter(found.values()))
