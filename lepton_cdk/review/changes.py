"""What a pull request changes, resource by resource: from a Terraform plan, or a static diff of two synths.

A **plan** (``terraform show -json``) says what Terraform will really do:
create, update in place, replace (and which attribute forces it), destroy.
Without one, a **static diff** compares the head synth with the base synth
by address (``type.name``, the cdktf logical id) and body. It knows the
attributes that force a replacement for the resource types the constructs
create (:data:`FORCES_REPLACEMENT`), and follows a replacement to the
resources that refer to the replaced one through such an attribute (a
renamed bucket replaces its versioning, encryption ... and re-uploads its
objects). It cannot see drift, values known only to the provider, or
replacements of types it has no table for: the comment says so.

Every change carries what the reviewer needs: the changed attributes (long
values shortened, sensitive ones masked), the attributes forcing a
replacement, whether the resource holds data (bucket, key, disk, log group),
and whether it is a traffic step (:mod:`lepton_cdk.review.traffic`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .plan import ACTION_REASONS, PlannedChange, TerraformPlan
from .resources import StackDocument
from .traffic import TRAFFIC_TYPES, TrafficStep, traffic_step, weight_paths_only

MAX_VALUE_CHARS = 60
UNKNOWN = "(known after apply)"
SENSITIVE = "(sensitive)"
ABSENT = "(none)"
# Meta-arguments: how Terraform manages a resource, not what the resource is.
META_KEYS = ("//", "depends_on", "lifecycle", "provider", "provisioner", "connection")

# Attributes whose change makes Terraform destroy and re-create the resource (ForceNew in the
# providers' schemas: AWS 5.x, Google 5.x/6.x), for the types the constructs create. "*": any change.
FORCES_REPLACEMENT: dict[str, tuple[str, ...]] = {
    "aws_s3_bucket": ("bucket", "bucket_prefix", "object_lock_enabled"),
    **dict.fromkeys(("aws_s3_bucket_versioning", "aws_s3_bucket_server_side_encryption_configuration",
                     "aws_s3_bucket_public_access_block", "aws_s3_bucket_ownership_controls", "aws_s3_bucket_policy",
                     "aws_s3_bucket_lifecycle_configuration", "aws_s3_bucket_logging", "aws_s3_bucket_acl"),
                    ("bucket", "expected_bucket_owner")),
    "aws_s3_object": ("bucket", "key"),
    "aws_kms_key": ("customer_master_key_spec", "key_usage", "multi_region", "custom_key_store_id", "xks_key_id"),
    "aws_kms_alias": ("name", "name_prefix"),
    "aws_launch_template": ("name", "name_prefix"),
    "aws_autoscaling_group": ("name", "name_prefix"),
    "aws_lb": ("name", "name_prefix", "internal", "load_balancer_type"),
    "aws_lb_target_group": ("name", "name_prefix", "port", "protocol", "protocol_version", "vpc_id", "target_type"),
    "aws_lb_listener": ("load_balancer_arn",),
    "aws_sagemaker_model": ("name", "primary_container", "container", "execution_role_arn", "vpc_config",
                            "enable_network_isolation", "inference_execution_config"),
    "aws_sagemaker_endpoint_configuration": ("name", "name_prefix", "production_variants", "shadow_production_variants",
                                             "kms_key_arn", "data_capture_config", "async_inference_config"),
    "aws_sagemaker_endpoint": ("name",),
    "aws_vpc": ("cidr_block", "instance_tenancy"),
    "aws_subnet": ("vpc_id", "cidr_block", "availability_zone", "availability_zone_id"),
    "aws_route_table": ("vpc_id",),
    "aws_route_table_association": ("subnet_id", "gateway_id"),
    "aws_security_group": ("name", "name_prefix", "vpc_id", "description"),
    "aws_default_security_group": ("vpc_id",),
    "aws_vpc_security_group_ingress_rule": ("security_group_id",),
    "aws_vpc_security_group_egress_rule": ("security_group_id",),
    "aws_vpc_endpoint": ("vpc_id", "service_name", "vpc_endpoint_type"),
    "aws_iam_role": ("name", "name_prefix", "path"),
    "aws_iam_role_policy": ("name", "name_prefix", "role"),
    "aws_iam_instance_profile": ("name", "name_prefix", "path"),
    "aws_sns_topic": ("name", "name_prefix", "fifo_topic"),
    "aws_sns_topic_policy": ("arn",),
    "aws_sns_topic_subscription": ("topic_arn", "protocol", "endpoint"),
    "aws_cloudwatch_metric_alarm": ("alarm_name",),
    "aws_cloudwatch_log_group": ("name", "name_prefix"),
    "aws_cloudwatch_log_resource_policy": ("policy_name",),
    "aws_cloudwatch_event_rule": ("name", "name_prefix", "event_bus_name"),
    "aws_cloudwatch_event_target": ("rule", "target_id", "event_bus_name"),
    "aws_datasync_task": ("source_location_arn", "destination_location_arn"),
    "aws_datasync_location_s3": ("s3_bucket_arn", "subdirectory", "s3_config", "agent_arns", "s3_storage_class"),
    "aws_datasync_location_object_storage": ("server_hostname", "bucket_name"),
    "aws_ebs_volume": ("availability_zone", "snapshot_id", "encrypted", "kms_key_id"),
    "aws_route53_record": ("name", "zone_id"),
    "aws_route53_health_check": ("type", "request_interval", "measure_latency"),
    "google_storage_bucket": ("name", "location", "project"),
    "google_storage_bucket_object": ("name", "bucket", "source", "content", "detect_md5hash"),
    "google_kms_key_ring": ("name", "location", "project"),
    "google_kms_crypto_key": ("name", "key_ring", "purpose", "import_only", "skip_initial_version_creation"),
    "google_compute_instance_template": ("*",),
    "google_compute_region_instance_group_manager": ("name", "region", "project", "base_instance_name"),
    "google_compute_instance_group_manager": ("name", "zone", "project", "base_instance_name"),
    "google_compute_network": ("name", "project", "auto_create_subnetworks"),
    "google_compute_subnetwork": ("name", "network", "region", "project"),
    "google_compute_firewall": ("name", "network", "direction", "project"),
    "google_compute_forwarding_rule": ("name", "region", "project", "ip_address", "ip_protocol", "load_balancing_scheme",
                                       "network", "subnetwork", "port_range", "ports", "network_tier"),
    "google_compute_region_backend_service": ("name", "region", "project", "load_balancing_scheme"),
    "google_compute_region_url_map": ("name", "region", "project"),
    "google_compute_region_target_http_proxy": ("name", "region", "project"),
    "google_compute_region_health_check": ("name", "region", "project"),
    "google_compute_disk": ("name", "zone", "type", "image", "snapshot", "project"),
    "google_service_account": ("account_id", "project"),
    **dict.fromkeys(("google_storage_bucket_iam_member", "google_kms_crypto_key_iam_member", "google_project_iam_member"), ("*",)),
    "google_dns_record_set": ("name", "type", "managed_zone", "project"),
    "google_storage_transfer_job": ("project",),
}

# Resources that hold data: destroying or replacing one loses it.
DATA_BEARING = {
    "aws_s3_bucket": "bucket", "google_storage_bucket": "bucket",
    "aws_kms_key": "key", "google_kms_crypto_key": "key",
    "aws_ebs_volume": "disk", "google_compute_disk": "disk", "aws_efs_file_system": "file system",
    "aws_cloudwatch_log_group": "log group", "google_logging_project_bucket_config": "log bucket",
    "aws_dynamodb_table": "table", "aws_db_instance": "database", "aws_rds_cluster": "database",
    "google_sql_database_instance": "database", "aws_secretsmanager_secret": "secret", "aws_ecr_repository": "image repository",
}
# Objects a stack uploads: replaced means uploaded again (from cdktf.out), not lost.
UPLOADED_OBJECTS = ("aws_s3_object", "google_storage_bucket_object")

# An update of these gives attributes others refer to a new value (a launch template's new version).
NEW_ON_UPDATE = {"aws_launch_template": ("latest_version", "default_version")}


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


# -- values ----------------------------------------------------------------------------------------------------------

def shorten(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}… ({len(text):,} chars)"


def render_value(value: Any) -> str:
    """A value as the comment shows it: JSON, long ones shortened."""
    if value is None:
        return ABSENT
    text = json.dumps(value, sort_keys=True, separators=(",", ":")) if not isinstance(value, str) else json.dumps(value)
    return shorten(text)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b[0].c": leaf}``; lists of plain values and empty containers are leaves."""
    out: dict[str, Any] = {}
    if isinstance(value, dict) and value:
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
    elif prefix:
        out[prefix] = value
    return out


def _path_text(path: tuple[Any, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _marked(tree: Any, path: str) -> bool:
    """Whether ``path`` (``a.b[0].c``) or a parent of it is ``true`` in a sensitive / unknown marker tree."""
    node = tree
    for step in re.findall(r"[^.\[\]]+", path):
        if node is True:
            return True
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return False
    return node is True


def _top(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


# -- the change model ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttributeChange:
    """One attribute that changes: its path, the values as shown, and whether it forces a replacement."""

    path: str
    before: str
    after: str
    forces_replacement: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"path": self.path, "before": self.before, "after": self.after, "forces_replacement": self.forces_replacement}


SYMBOLS = {"create": "+", "update": "~", "delete": "-", "forget": ".", "replace": "-/+"}


@dataclass(frozen=True)
class ResourceChange:
    """What happens to one resource: ``action`` is create, update, replace, delete or forget."""

    address: str
    rtype: str
    action: str
    attributes: tuple[AttributeChange, ...] = ()
    forced_by: tuple[str, ...] = ()  # attribute paths forcing the replacement
    because: str = ""  # why, when Terraform or the diff knows
    create_first: bool = False  # a replacement made before the old one is destroyed
    data: str = ""  # what it holds ("bucket", "key" ...) when it holds data
    loss: str = ""  # what destroying it loses
    prevent_destroy: bool = False  # the head keeps lifecycle.prevent_destroy on a resource it destroys
    traffic: TrafficStep | None = None

    @property
    def symbol(self) -> str:
        """Terraform's sign: ``+``, ``~``, ``-``, ``-/+`` (destroy first) or ``+/-`` (create first)."""
        return "+/-" if self.action == "replace" and self.create_first else SYMBOLS[self.action]

    @property
    def destroys(self) -> bool:
        """Destroyed (or replaced): the old object is gone after the apply."""
        return self.action in ("delete", "replace")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"address": self.address, "type": self.rtype, "action": self.action, "symbol": self.symbol,
                "attributes": [a.to_dict() for a in self.attributes], "forced_by": list(self.forced_by),
                "because": self.because or None, "create_before_destroy": self.create_first if self.action == "replace" else None,
                "data": self.data or None, "loss": self.loss or None, "prevent_destroy": self.prevent_destroy,
                "traffic_step": self.traffic.describe() if self.traffic else None}


@dataclass(frozen=True)
class StackChanges:
    """Every change of one stack and where it was learnt: ``plan``, ``static`` or ``none`` (no base to compare)."""

    source: str
    changes: tuple[ResourceChange, ...] = ()
    plan: TerraformPlan | None = None
    notes: tuple[str, ...] = field(default=())

    def count(self, action: str) -> int:
        """How many changes are ``action``."""
        return sum(c.action == action for c in self.changes)

    @property
    def at_risk(self) -> list[ResourceChange]:
        """Data-bearing resources destroyed or replaced."""
        return [c for c in self.changes if c.data and c.destroys]

    @property
    def traffic_steps(self) -> list[TrafficStep]:
        """One step per split, when every change of the stack is a weight change; else empty."""
        if not self.changes or not all(c.traffic for c in self.changes):
            return []
        seen: dict[str, TrafficStep] = {}
        for c in self.changes:
            seen.setdefault(c.traffic.split, c.traffic)
        return list(seen.values())


def _loss(rtype: str, before: dict | None) -> str:
    before = before or {}
    kind = DATA_BEARING.get(rtype, "")
    if kind == "bucket":
        force = before.get("force_destroy")
        if force in (True, "true"):
            return "every object in it is deleted with it (force_destroy)"
        return "deleting it fails while it holds objects (force_destroy is off), leaving the apply half done"
    if kind == "key":
        days = before.get("deletion_window_in_days")
        window = f" ({days} days)" if isinstance(days, int | str) and str(days).isdigit() else ""
        return f"everything encrypted with it becomes unreadable once its deletion window{window} ends"
    if kind == "log group":
        return "its log events are deleted"
    if kind:
        return f"the data in the {kind} is lost"
    return ""


def _with_data(change: ResourceChange, before: dict | None) -> ResourceChange:
    kind = DATA_BEARING.get(change.rtype, "")
    if not kind:
        return change
    return ResourceChange(change.address, change.rtype, change.action, change.attributes, change.forced_by, change.because,
                          change.create_first, kind, _loss(change.rtype, before) if change.destroys else "",
                          change.prevent_destroy, change.traffic)


def _forced(rtype: str, paths: list[str]) -> list[str]:
    table = FORCES_REPLACEMENT.get(rtype, ())
    return [p for p in paths if "*" in table or _top(p) in table]


def _attr_changes(before: dict, after: dict, forcing: list[str]) -> tuple[AttributeChange, ...]:
    flat_b, flat_a = flatten(before), flatten(after)
    out = []
    for path in sorted(set(flat_b) | set(flat_a)):
        b, a = flat_b.get(path), flat_a.get(path)
        if b != a:
            out.append(AttributeChange(path, render_value(b), render_value(a), path in forcing))
    return tuple(out)


# -- static diff -------------------------------------------------------------------------------------------------------

def _bodies(stack: StackDocument | None) -> dict[str, dict]:
    if stack is None:
        return {}
    return {f"{rtype}.{name}": {k: v for k, v in body.items() if k not in META_KEYS}
            for rtype, items in stack.doc.get("resource", {}).items() for name, body in items.items()}


def _lifecycle(stack: StackDocument | None, address: str) -> dict:
    if stack is None:
        return {}
    rtype, name = address.split(".", 1)
    lifecycle = stack.resources_of(rtype).get(name, {}).get("lifecycle")
    return lifecycle if isinstance(lifecycle, dict) else {}


def _refers(text: str, address: str, attributes: tuple[str, ...] | None) -> bool:
    """Whether ``text`` (JSON of a value) refers to ``address`` (to one of ``attributes`` when given)."""
    tail = r"\.(?:" + "|".join(map(re.escape, attributes)) + r")\b" if attributes else r"\."
    return re.search(r"(?<![\w.])" + re.escape(address) + tail, text) is not None


def static_changes(head: StackDocument | None, base: StackDocument | None) -> StackChanges:
    """The changes from ``base`` to ``head`` as far as the synthesized JSON tells them (see the module docstring)."""
    if base is None and head is not None:
        return StackChanges("none")
    new, old = _bodies(head), _bodies(base)
    changes: dict[str, ResourceChange] = {}
    for address in sorted(set(new) | set(old)):
        rtype = address.split(".", 1)[0]
        if address not in old:
            changes[address] = ResourceChange(address, rtype, "create")
        elif address not in new:
            changes[address] = ResourceChange(address, rtype, "delete", because="it is no longer in the synth")
        elif new[address] != old[address]:
            paths = [p for p in set(flatten(old[address])) | set(flatten(new[address]))
                     if flatten(old[address]).get(p) != flatten(new[address]).get(p)]
            forcing = _forced(rtype, paths)
            attrs = _attr_changes(old[address], new[address], forcing)
            action = "replace" if forcing else "update"
            changes[address] = ResourceChange(address, rtype, action, attrs, tuple(sorted(forcing)))
    # A replaced resource gets new computed values (id, arn ...), an updated launch template a new version:
    # whatever refers to them through an attribute that forces a replacement is replaced too; else updated.
    grown = True
    while grown:
        grown = False
        sources = {a: ("replaced", None) if c.action == "replace" else ("updated", NEW_ON_UPDATE[c.rtype])
                   for a, c in changes.items() if c.action == "replace" or (c.action == "update" and c.rtype in NEW_ON_UPDATE)}
        for address, body in new.items():
            current = changes.get(address)
            if address not in old or (current and current.action in ("replace", "delete")):
                continue
            rtype = address.split(".", 1)[0]
            hits = sorted({(key, ref, how) for key, value in body.items() for ref, (how, attrs) in sources.items()
                           if ref != address and _refers(json.dumps(value), ref, attrs)})
            if not hits:
                continue
            forcing = sorted({key for key, _, _ in hits if _forced(rtype, [key])})
            key, ref, how = next((h for h in hits if h[0] in forcing), hits[0])
            because = f"`{key}` refers to `{ref}`, which is {how}"
            shown = {x.path for x in current.attributes} if current else set()
            extra = tuple(AttributeChange(k, render_value(old[address].get(k)), UNKNOWN, k in forcing)
                          for k in sorted({k for k, _, _ in hits}) if k not in shown)
            attrs = (current.attributes if current else ()) + extra
            if forcing:
                changes[address] = ResourceChange(address, rtype, "replace", attrs, tuple(forcing), because)
                grown = True
            elif current is None:
                changes[address] = ResourceChange(address, rtype, "update", attrs, because=because)
                grown = True
    # create_before_destroy passes from a replaced resource to the replaced resources it depends on
    replaced = {a for a, c in changes.items() if c.action == "replace"}
    first = {a for a in replaced if _lifecycle(head, a).get("create_before_destroy") in (True, "true")}
    pending = list(first)
    while pending:
        body = json.dumps(new.get(pending.pop(), {}))
        for dep in replaced - first:
            if _refers(body, dep, None):
                first.add(dep)
                pending.append(dep)
    out = []
    for address, change in sorted(changes.items()):
        before = old.get(address)
        if change.destroys and _lifecycle(head, address).get("prevent_destroy") in (True, "true"):
            change = ResourceChange(change.address, change.rtype, change.action, change.attributes, change.forced_by,
                                    change.because, change.create_first, prevent_destroy=True)
        if change.action == "replace" and address in first:
            change = ResourceChange(change.address, change.rtype, change.action, change.attributes, change.forced_by,
                                    change.because, True, prevent_destroy=change.prevent_destroy)
        out.append(_with_data(_with_traffic(change, old, new), before))
    return StackChanges("static", tuple(out))


def _with_traffic(change: ResourceChange, before: dict[str, dict], after: dict[str, dict]) -> ResourceChange:
    if change.action != "update" or change.rtype not in TRAFFIC_TYPES:
        return change
    if not weight_paths_only(change.rtype, [a.path for a in change.attributes]):
        return change
    of_type = change.rtype + "."
    step = traffic_step(change.rtype, change.address, {a: b for a, b in before.items() if a.startswith(of_type)},
                        {a: b for a, b in after.items() if a.startswith(of_type)})
    if step is None:
        return change
    return ResourceChange(change.address, change.rtype, change.action, change.attributes, change.forced_by, change.because,
                          change.create_first, change.data, change.loss, change.prevent_destroy, step)


# -- from a plan -------------------------------------------------------------------------------------------------------

def _action(actions: tuple[str, ...]) -> tuple[str, bool] | None:
    """(action, create first) for Terraform's action list; None for no-op and read."""
    return {("create",): ("create", False), ("update",): ("update", False), ("delete",): ("delete", False),
            ("delete", "create"): ("replace", False), ("create", "delete"): ("replace", True),
            ("forget",): ("forget", False)}.get(actions)


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _planned_attributes(c: PlannedChange, forcing: list[str], configured: frozenset[str] | None) -> tuple[AttributeChange, ...]:
    """The attributes the reviewer needs: those the configuration sets, and those forcing a replacement; a computed
    attribute that only becomes "(known after apply)" (an arn, an id) is left out, as is "" becoming null."""
    before = c.before if isinstance(c.before, dict) else {}
    after = c.after if isinstance(c.after, dict) else {}
    flat_b, flat_a, flat_u = flatten(before), flatten(after), flatten(c.after_unknown if isinstance(c.after_unknown, dict) else {})
    unknown = {p for p, v in flat_u.items() if v is True}
    out = []
    for path in sorted(set(flat_b) | set(flat_a) | unknown):
        b = flat_b.get(path)
        is_unknown = path in unknown or _marked(c.after_unknown, path)
        if not is_unknown and b == flat_a.get(path):
            continue
        if is_unknown and path not in flat_b and path not in flat_a and not any(p.startswith(path) for p in flat_b):
            continue  # a computed attribute of a new block: nothing to compare
        shown_b = SENSITIVE if _marked(c.before_sensitive, path) else render_value(b)
        shown_a = UNKNOWN if is_unknown else (SENSITIVE if _marked(c.after_sensitive, path) else render_value(flat_a.get(path)))
        if shown_b == shown_a:
            continue  # both sensitive: it changed, but nothing can be shown
        forces = any(path == f or path.startswith(f + ".") or path.startswith(f + "[") or f.startswith(path + ".")
                     for f in forcing)
        if not forces and configured is not None and _top(path) not in configured:
            continue
        if not forces and not is_unknown and _blank(b) and _blank(flat_a.get(path)):
            continue
        if not forces and c.actions in (("delete", "create"), ("create", "delete")) and (is_unknown or flat_a.get(path) is None):
            continue  # a new object: what it computes, or leaves to the provider's default, is no change to review
        out.append(AttributeChange(path, shown_b, shown_a, forces))
    return tuple(out)


def plan_changes(plan: TerraformPlan, head: StackDocument | None = None) -> StackChanges:
    """The stack's changes as ``plan`` states them (managed resources; no-ops and reads left out)."""
    records_before: dict[str, dict] = {}
    records_after: dict[str, dict] = {}
    for c in plan.changes:
        if c.mode == "managed" and c.rtype in TRAFFIC_TYPES:
            if isinstance(c.before, dict):
                records_before[c.address] = c.before
            if isinstance(c.after, dict):
                records_after[c.address] = c.after
    out = []
    for c in plan.changes:
        verdict = _action(c.actions)
        if c.mode != "managed" or verdict is None:
            continue
        action, create_first = verdict
        forcing = [_path_text(p) for p in c.replace_paths] if action == "replace" else []
        configured = plan.configured.get(c.address) if plan.configured else None
        attrs = _planned_attributes(c, forcing, configured) if action in ("update", "replace") else ()
        because = ACTION_REASONS.get(c.action_reason, c.action_reason.replace("_", " "))
        change = ResourceChange(c.address, c.rtype, action, attrs, tuple(forcing), because, create_first)
        if action == "update" and c.rtype in TRAFFIC_TYPES and weight_paths_only(c.rtype, [a.path for a in attrs]):
            step = traffic_step(c.rtype, c.address, records_before, records_after)
            if step is not None:
                change = ResourceChange(c.address, c.rtype, action, attrs, tuple(forcing), because, create_first, traffic=step)
        out.append(_with_data(change, c.before if isinstance(c.before, dict) else None))
    notes = [f"Terraform {plan.terraform_version} plan `{plan.path}`"]
    if plan.drifted:
        notes.append(f"{len(plan.drifted)} resource(s) changed outside Terraform since the last apply (drift): "
                     + ", ".join(f"`{a}`" for a in plan.drifted[:5]) + (" ..." if len(plan.drifted) > 5 else ""))
    return StackChanges("plan", tuple(sorted(out, key=lambda x: x.address)), plan, tuple(notes))
