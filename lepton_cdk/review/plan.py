"""Terraform plan JSON (``terraform show -json PLAN``): what Terraform will really do to one stack.

The review reads ``resource_changes`` (each with ``change.actions``,
``before`` / ``after``, ``after_unknown``, ``before_sensitive`` /
``after_sensitive``, ``replace_paths`` and ``action_reason``), the
``prior_state`` (what is deployed, to price the base) and the
``configuration`` (which resource addresses the plan was made for, to match
it with a synthesized stack). Format reference:
https://developer.hashicorp.com/terraform/internals/json-format
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ReviewError
from .resources import StackDocument

SUPPORTED_FORMAT_MAJOR = 1
MAX_PLAN_BYTES = 512 * 2**20  # a plan of thousands of resources stays far below

# action_reason -> what the comment says
ACTION_REASONS = {
    "replace_because_cannot_update": "an attribute that cannot change in place changed",
    "replace_because_tainted": "it is tainted (a failed or interrupted apply)",
    "replace_by_request": "it was asked for (-replace)",
    "replace_by_triggers": "a replace_triggered_by reference changed",
    "delete_because_no_resource_config": "it is no longer in the configuration",
    "delete_because_no_module": "its module is no longer in the configuration",
    "delete_because_wrong_repetition": "its count / for_each changed form",
    "delete_because_count_index": "its count index is out of range",
    "delete_because_each_key": "its for_each key is gone",
    "delete_because_no_move_target": "its moved block has no target",
    "read_because_config_unknown": "its configuration depends on values known only after apply",
    "read_because_dependency_pending": "a resource it depends on has pending changes",
}


@dataclass(frozen=True)
class PlannedChange:
    """One entry of ``resource_changes``, as Terraform wrote it."""

    address: str
    mode: str
    rtype: str
    actions: tuple[str, ...]
    before: Any
    after: Any
    after_unknown: Any
    before_sensitive: Any
    after_sensitive: Any
    replace_paths: tuple[tuple[Any, ...], ...]
    action_reason: str = ""


@dataclass(frozen=True)
class TerraformPlan:
    """A parsed plan of one stack; ``path`` is where it was read from (for messages)."""

    path: str
    terraform_version: str
    changes: tuple[PlannedChange, ...]
    prior_state: dict = field(default_factory=dict, repr=False)  # prior_state.values
    configured: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)  # address -> attributes set in config
    region: str | None = None  # the provider's literal region in the configuration, if any
    drifted: tuple[str, ...] = ()  # resource_drift addresses: changed outside Terraform

    @property
    def config_addresses(self) -> frozenset[str]:
        """The managed resources the configuration declares."""
        return frozenset(self.configured)

    def change(self, address: str) -> PlannedChange | None:
        """The planned change of ``address``, if any."""
        return next((c for c in self.changes if c.address == address), None)


def _configured(doc: dict) -> dict[str, frozenset[str]]:
    """{address: the attributes its configuration sets} for every managed resource the configuration declares."""
    found: dict[str, frozenset[str]] = {}

    def walk(module: dict, prefix: str) -> None:
        for item in module.get("resources", []) or []:
            if isinstance(item, dict) and item.get("mode", "managed") == "managed" and isinstance(item.get("address"), str):
                expressions = item.get("expressions") if isinstance(item.get("expressions"), dict) else {}
                found[prefix + item["address"]] = frozenset(expressions)
        for name, call in (module.get("module_calls") or {}).items():
            if isinstance(call, dict) and isinstance(call.get("module"), dict):
                walk(call["module"], f"{prefix}module.{name}.")

    walk(((doc.get("configuration") or {}).get("root_module")) or {}, "")
    return found


def _config_region(doc: dict) -> str | None:
    for provider in ((doc.get("configuration") or {}).get("provider_config") or {}).values():
        if not isinstance(provider, dict):
            continue
        region = ((provider.get("expressions") or {}).get("region") or {})
        if isinstance(region, dict) and isinstance(region.get("constant_value"), str):
            return region["constant_value"]
    return None


def parse_plan(doc: Any, where: str) -> TerraformPlan:
    """A :class:`TerraformPlan` from the decoded JSON; raises :class:`ReviewError` naming what is wrong."""
    fix = "write it with `terraform show -json PLANFILE > plan.json`"
    if not isinstance(doc, dict):
        raise ReviewError(f"plan {where} is a JSON {type(doc).__name__}, not a Terraform plan object; {fix}")
    version = doc.get("format_version")
    if not isinstance(version, str):
        raise ReviewError(f"plan {where} has no format_version, so it is not `terraform show -json` output of a plan; {fix}")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ReviewError(f"plan {where}: format_version {version!r} is not a version number; {fix}") from None
    if major > SUPPORTED_FORMAT_MAJOR:
        raise ReviewError(f"plan {where} has format_version {version}, newer than the {SUPPORTED_FORMAT_MAJOR}.x lepton review "
                          "reads; upgrade lepton-cdk")
    if "resource_changes" not in doc and "planned_values" not in doc:
        raise ReviewError(f"plan {where} has no resource_changes: it looks like `terraform show -json` of a state, not of a saved "
                          f"plan; {fix}")
    changes = []
    for i, item in enumerate(doc.get("resource_changes") or []):
        change = item.get("change") if isinstance(item, dict) else None
        if not isinstance(change, dict) or not isinstance(item.get("address"), str) or not isinstance(change.get("actions"), list):
            raise ReviewError(f"plan {where}: resource_changes[{i}] lacks address or change.actions; {fix}")
        changes.append(PlannedChange(
            address=item["address"], mode=str(item.get("mode", "managed")), rtype=str(item.get("type", "")),
            actions=tuple(str(a) for a in change["actions"]), before=change.get("before"), after=change.get("after"),
            after_unknown=change.get("after_unknown"), before_sensitive=change.get("before_sensitive"),
            after_sensitive=change.get("after_sensitive"),
            replace_paths=tuple(tuple(p) for p in change.get("replace_paths") or [] if isinstance(p, list)),
            action_reason=str(item.get("action_reason") or ""),
        ))
    drifted = tuple(str(d.get("address")) for d in doc.get("resource_drift") or []
                    if isinstance(d, dict) and tuple((d.get("change") or {}).get("actions") or ()) not in (("no-op",), ("read",)))
    return TerraformPlan(where, str(doc.get("terraform_version", "?")), tuple(changes),
                         ((doc.get("prior_state") or {}).get("values")) or {}, _configured(doc), _config_region(doc), drifted)


def read_plan(path: str | Path) -> TerraformPlan:
    """Read a plan JSON file (``terraform show -json PLAN``)."""
    from lepton_cdk.contract.errors import ContractError
    from lepton_cdk.contract.files import read_file_bytes

    try:
        data = read_file_bytes(path, what="plan", fix="pass the output of `terraform show -json PLANFILE` to --plan",
                               missing=f"plan {path} not found; pass the output of `terraform show -json PLANFILE` to --plan",
                               limit=MAX_PLAN_BYTES)
    except ContractError as exc:
        raise ReviewError(str(exc)) from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ReviewError(f"plan {path} is not UTF-8 text (byte {exc.start}); pass the output of `terraform show -json PLANFILE`") from None
    except json.JSONDecodeError as exc:
        raise ReviewError(f"plan {path} is not valid JSON ({exc.msg}, line {exc.lineno}); pass the output of "
                          "`terraform show -json PLANFILE`, not of `terraform plan`") from None
    return parse_plan(doc, str(path))


_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def split_plan_option(text: str) -> tuple[str | None, str]:
    """``"STACK=FILE"`` -> (STACK, FILE); a bare path -> (None, path)."""
    name, sep, path = text.partition("=")
    if sep and _STACK_NAME.match(name) and path and "/" not in name:
        return name, path
    return None, text


def match_plans(plans: list[tuple[str | None, TerraformPlan]], stacks: list[StackDocument]) -> dict[str, TerraformPlan]:
    """{stack name: plan}: a plan named ``STACK=FILE`` goes to that stack; an unnamed one to the stack whose
    resources are exactly the plan's configuration. Raises :class:`ReviewError` when one cannot be placed."""
    by_name = {s.name: s for s in stacks}
    found: dict[str, TerraformPlan] = {}
    for name, plan in plans:
        if name is None:
            candidates = [s.name for s in stacks
                          if set(s.resource_bodies()) == set(plan.config_addresses) and plan.config_addresses]
            if len(candidates) != 1:
                known = ", ".join(sorted(by_name)) or "none"
                why = "no synthesized stack has exactly its resources" if not candidates else f"it fits {', '.join(candidates)}"
                raise ReviewError(f"plan {plan.path}: {why}; name its stack with --plan STACK={plan.path} (stacks: {known}), "
                                  "and make the plan from the same synth")
            name = candidates[0]
        elif name not in by_name:
            raise ReviewError(f"--plan {name}={plan.path}: there is no stack {name!r} in the synth "
                              f"(stacks: {', '.join(sorted(by_name)) or 'none'})")
        if name in found:
            raise ReviewError(f"two plans for stack {name!r} ({found[name].path} and {plan.path}); pass one per stack")
        found[name] = plan
    return found
