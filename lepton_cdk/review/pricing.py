"""What every resource of a stack costs a month, broken into cost components, as Infracost shows it.

Each resource gets exactly one verdict: **priced** (its components, each
``quantity x unit price``), **free** (with the reason: IAM, VPC networking,
configuration of something priced elsewhere) or **unknown** (with the reason:
no price in the catalog for that region, a size that is a Terraform
expression, a fee that depends on a volume the synth does not hold). Nothing is
silently $0 and nothing is silently left out: a resource type this module has
no model for is unknown, saying so.

Prices come from the dated catalog (:mod:`lepton_cdk.review.prices`); what
depends on traffic is priced at the stated usage of :class:`UsageAssumptions`,
which the comment prints. Two scenarios: **on-demand** (list prices) and
**spot** (every node group on Spot capacity; an estimate, spot prices move);
only VM instances differ between them (SageMaker endpoints have no Spot
price).

Works on a synthesized stack (references are ``${type.name.attr}``) and on a
deployed state from a plan's ``prior_state`` (references are resolved
values), through :class:`Inventory`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_cdk.contract import ContractError, resolve_artifact_path

from .costs import HOURS_PER_MONTH, gb, unit_price, usd
from .errors import ReviewError
from .prices import PriceCatalog, PriceRow
from .resources import StackDocument

PRICINGS = ("on-demand", "spot")


@dataclass(frozen=True)
class UsageAssumptions:
    """The traffic a review assumes where a price depends on it; printed under every comment."""

    bucket_class_a_requests: int = 10_000  # writes and lists, per bucket per month
    bucket_class_b_requests: int = 100_000  # reads, per bucket per month
    alb_lcu: float = 1.0  # capacity units an AWS load balancer uses, averaged over every hour
    gcp_lb_gb_processed: float = 100.0  # GB a Google Cloud load balancer processes a month
    gcp_ilb_proxy_instances: int = 1  # proxy instances of an internal Application Load Balancer
    log_gb_ingested: float = 1.0  # GB written to a log group a month (and kept stored)
    network_gb_processed: float = 100.0  # GB through a NAT gateway or an interface endpoint a month
    dns_million_queries: float = 1.0  # queries a hosted / managed zone answers a month, in millions
    alert_series_per_condition: int = 1  # time series an alerting condition reads each minute

    def lines(self) -> list[str]:
        """The assumptions as short phrases for the comment's footnote."""
        return [
            f"{self.bucket_class_a_requests:,} write and {self.bucket_class_b_requests:,} read requests per bucket",
            f"{self.alb_lcu:g} LCU per AWS load balancer every hour",
            f"{self.gcp_lb_gb_processed:g} GB through a Google Cloud load balancer "
            f"({self.gcp_ilb_proxy_instances} proxy instance for an internal one)",
            f"{self.log_gb_ingested:g} GB written to each log group",
            f"{self.network_gb_processed:g} GB through a NAT gateway or interface endpoint",
            f"{self.dns_million_queries:g} million DNS queries per zone",
            f"{self.alert_series_per_condition} time series read per alerting condition each minute",
        ]


DEFAULT_USAGE = UsageAssumptions()


@dataclass(frozen=True)
class CostComponent:
    """One priced part of a resource: ``quantity`` ``unit`` x ``price`` a month (spot: ``spot_price``).

    ``monthly`` / ``spot_monthly`` are None when unknown, with ``reason``.
    """

    name: str
    quantity: float | None
    unit: str
    price: float | None
    monthly: float | None
    spot_price: float | None = None
    spot_monthly: float | None = None
    usage: str = ""  # "stated usage" when the quantity is an assumption
    reason: str = ""
    rows: tuple[PriceRow, ...] = field(default=(), repr=False)

    @property
    def known(self) -> bool:
        """Priced in both scenarios."""
        return self.monthly is not None and self.spot_monthly is not None

    @property
    def estimate(self) -> bool:
        """A price the catalog marks as an estimate (spot, or a row noted ESTIMATE)."""
        return any(r.is_estimate for r in self.rows)

    def cost(self, pricing: str) -> float | None:
        """The monthly figure in ``pricing`` (on-demand or spot)."""
        return self.spot_monthly if pricing == "spot" else self.monthly

    def to_dict(self) -> dict:
        """JSON-ready form, with the sources of the prices used."""
        def rounded(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {"name": self.name, "quantity": self.quantity, "unit": self.unit, "price_usd": self.price,
                "monthly_usd": rounded(self.monthly), "spot_price_usd": self.spot_price,
                "spot_monthly_usd": rounded(self.spot_monthly), "usage": self.usage or None,
                "unknown_reason": self.reason or None, "estimate": self.estimate,
                "sources": [{"row": r.origin, "source_url": r.source_url, "retrieved": r.retrieved} for r in self.rows]}


@dataclass(frozen=True)
class ResourceCost:
    """The verdict on one resource: ``status`` is ``priced``, ``free`` or ``unknown`` (``reason`` says why)."""

    address: str
    rtype: str
    status: str
    reason: str = ""
    components: tuple[CostComponent, ...] = ()

    def monthly(self, pricing: str = "on-demand") -> float:
        """The sum of the known components in ``pricing``."""
        return sum(c.cost(pricing) or 0.0 for c in self.components)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"address": self.address, "type": self.rtype, "status": self.status, "reason": self.reason or None,
                "monthly_usd": {p: round(self.monthly(p), 4) for p in PRICINGS},
                "components": [c.to_dict() for c in self.components]}


def resource_type(address: str) -> str:
    """``aws_s3_bucket`` of ``aws_s3_bucket.X``, ``module.m.aws_s3_bucket.X`` or ``aws_s3_bucket.X[0]``."""
    parts = re.sub(r"\[[^\]]*\]", "", address).split(".")
    return parts[-2] if len(parts) >= 2 else address


# -- where the resources come from ---------------------------------------------------------------------------------

_REF = r"\$\{{(?:[a-z_]+\()?{rtype}\.([^.}}\[]+)"


@dataclass(frozen=True)
class Inventory:
    """The managed resources of one stack at one moment: a synth (``config``) or a deployed state (``state``)."""

    name: str
    cloud: str | None
    region: str | None
    resources: dict[str, dict]  # "type.name" -> attributes
    style: str = "config"
    folder: Path | None = None  # where a synth's asset files lie (``source`` paths are relative to it)
    artifact_bytes: dict[str, int] = field(default_factory=dict)  # manifest artifact path -> bytes (``--manifest``)

    def with_artifacts(self, sizes: dict[str, int]) -> Inventory:
        """This inventory pricing uploaded objects by the manifest's artifact sizes (matched by key), not the staged files."""
        return Inventory(self.name, self.cloud, self.region, self.resources, self.style, self.folder, dict(sizes))

    @classmethod
    def from_stack(cls, stack: StackDocument) -> Inventory:
        """A synthesized stack (``cdk.tf.json``)."""
        resources = {f"{rtype}.{name}": body for rtype, items in stack.doc.get("resource", {}).items()
                     for name, body in items.items()}
        return cls(stack.name, stack.cloud, stack.region, resources, "config", stack.folder)

    @classmethod
    def from_state(cls, name: str, state_values: dict, *, cloud: str | None, region: str | None,
                   folder: Path | None = None) -> Inventory:
        """A plan's ``prior_state.values`` (managed resources of every module); ``folder`` sizes uploaded files."""
        resources: dict[str, dict] = {}

        def walk(module: dict) -> None:
            for item in module.get("resources", []) or []:
                if isinstance(item, dict) and item.get("mode", "managed") == "managed" and isinstance(item.get("values"), dict):
                    resources[str(item.get("address"))] = item["values"]
            for child in module.get("child_modules", []) or []:
                if isinstance(child, dict):
                    walk(child)

        walk((state_values or {}).get("root_module") or {})
        return cls(name, cloud, region, resources, "state", folder)

    def of_type(self, rtype: str) -> dict[str, dict]:
        """``address -> attributes`` of every resource of ``rtype``."""
        return {a: b for a, b in self.resources.items() if resource_type(a) == rtype}

    def referenced(self, rtype: str, ref: Any) -> tuple[str, dict] | None:
        """The ``rtype`` resource ``ref`` points at: a ``${rtype.name...}`` reference (synth) or a value (state)."""
        if not isinstance(ref, str):
            return None
        if self.style == "config":
            match = re.search(_REF.format(rtype=re.escape(rtype)), ref)
            address = f"{rtype}.{match.group(1)}" if match else None
            return (address, self.resources[address]) if address in self.resources else None
        for address, body in self.of_type(rtype).items():
            for key in ("id", "arn", "name", "self_link"):
                value = body.get(key)
                if isinstance(value, str) and value and (value == ref or ref.endswith("/" + value) or value.endswith("/" + ref)):
                    return address, body
        return None


# -- small readers for Terraform JSON and state values -------------------------------------------------------------

def _block(body: dict, key: str) -> dict:
    """A nested block: cdktf writes one as an object, state holds a list of them."""
    value = body.get(key)
    if isinstance(value, list):
        value = value[0] if value else {}
    return value if isinstance(value, dict) else {}


def _blocks(body: dict, key: str) -> list[dict]:
    value = body.get(key)
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def literal_number(value: Any) -> float | None:
    """A number written literally (``3``, ``"3"``, ``2.5``); None for an expression, a bool or nothing."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def literal_text(value: Any) -> str | None:
    """A string that is not a Terraform expression."""
    return value if isinstance(value, str) and "${" not in value else None


# -- building components -----------------------------------------------------------------------------------------

def _missing(what: str, catalog: PriceCatalog) -> str:
    return f"no {what} in the price catalog ({', '.join(catalog.sources)}); add a row and pass it with --prices"


def _priced(name: str, quantity: float, unit: str, row: PriceRow, *, usage: str = "",
            spot_row: PriceRow | None = None, spot_sensitive: bool = False, spot_reason: str = "") -> CostComponent:
    """A component of ``quantity`` at ``row``'s price; in the spot scenario ``spot_row``'s when ``spot_sensitive``."""
    monthly = quantity * row.price_usd
    if not spot_sensitive:
        return CostComponent(name, quantity, unit, row.price_usd, monthly, row.price_usd, monthly, usage, rows=(row,))
    if spot_row is None:
        return CostComponent(name, quantity, unit, row.price_usd, monthly, None, None, usage, spot_reason, rows=(row,))
    return CostComponent(name, quantity, unit, row.price_usd, monthly, spot_row.price_usd, quantity * spot_row.price_usd,
                         usage, rows=(row, spot_row))


def _unknown(name: str, reason: str, quantity: float | None = None, unit: str = "") -> CostComponent:
    return CostComponent(name, quantity, unit, None, None, None, None, reason=reason)


def _lookup(catalog: PriceCatalog, inv: Inventory, kind: str, sku: str, pricing: str = "list") -> tuple[PriceRow | None, str]:
    """(row, unknown reason) for ``sku`` in the inventory's cloud and region."""
    if inv.cloud is None or inv.region is None:
        return None, "the region is not a literal in the provider block"
    row = catalog.find(inv.cloud, inv.region, kind, sku, pricing)
    what = f"{kind} price for {sku}" if pricing == "list" else f"{pricing} {kind} price for {sku}"
    return row, "" if row else _missing(f"{what} in {inv.cloud} {inv.region}", catalog)


def _component(catalog: PriceCatalog, inv: Inventory, name: str, quantity: float, unit: str, kind: str, sku: str,
               *, usage: str = "") -> CostComponent:
    row, reason = _lookup(catalog, inv, kind, sku)
    return _priced(name, quantity, unit, row, usage=usage) if row else _unknown(name, reason, quantity, unit)


def _resource(address: str, rtype: str, components: list[CostComponent]) -> ResourceCost:
    unknown = [c for c in components if not c.known]
    if unknown:
        return ResourceCost(address, rtype, "unknown", unknown[0].reason, tuple(components))
    return ResourceCost(address, rtype, "priced", "", tuple(components))


Pricer = Callable[[str, dict, Inventory, PriceCatalog, UsageAssumptions], ResourceCost]


# -- compute -------------------------------------------------------------------------------------------------------

def _instances(catalog: PriceCatalog, inv: Inventory, machine: str | None, accelerators: list[tuple[str, int]],
               count: float, label: str) -> list[CostComponent]:
    """``count`` VMs of ``machine`` (plus attached GPUs) for a month, on-demand and spot."""
    hours = count * HOURS_PER_MONTH
    name = f"{label} ({machine or '?'})"
    if machine is None:
        return [_unknown(name, "the machine type is not a literal in the synthesized JSON (an expression or a mixed-instances "
                         "policy)", hours, "h")]
    if inv.cloud is None or inv.region is None:
        return [_unknown(name, "the region is not a literal in the provider block", hours, "h")]
    out = []
    on_demand = catalog.find(inv.cloud, inv.region, "instance", machine, "on-demand")
    spot = catalog.find(inv.cloud, inv.region, "instance", machine, "spot")
    if on_demand is None:
        out.append(_unknown(name, _missing(f"on-demand price for {machine} in {inv.cloud} {inv.region}", catalog), hours, "h"))
    else:
        out.append(_priced(name, hours, "h", on_demand, spot_row=spot, spot_sensitive=True,
                           spot_reason=_missing(f"spot price for {machine} in {inv.cloud} {inv.region}", catalog)))
    # a machine priced with its GPU bundled (g2, a2 ...) carries gpu_memory_gib; an N1 machine takes them on top
    if on_demand is not None and on_demand.gpu_memory_gib is not None:
        return out
    for accel, per_node in accelerators:
        accel_name, accel_hours = f"GPUs ({per_node} x {accel} per node)", hours * per_node
        row = catalog.find(inv.cloud, inv.region, "accelerator", accel, "on-demand")
        spot_row = catalog.find(inv.cloud, inv.region, "accelerator", accel, "spot")
        if row is None:
            out.append(_unknown(accel_name, _missing(f"on-demand price for accelerator {accel} in {inv.cloud} {inv.region}", catalog),
                                accel_hours, "h"))
        else:
            out.append(_priced(accel_name, accel_hours, "h", row, spot_row=spot_row, spot_sensitive=True,
                               spot_reason=_missing(f"spot price for accelerator {accel} in {inv.cloud} {inv.region}", catalog)))
    return out


def _ebs(catalog: PriceCatalog, inv: Inventory, volume: dict, count: float, label: str) -> list[CostComponent]:
    """``count`` EBS volumes described by ``volume`` (size, type, iops, throughput)."""
    vtype = literal_text(volume.get("volume_type")) or "gp2"  # EC2's default for a new volume
    size = literal_number(volume.get("volume_size") if "volume_size" in volume else volume.get("size"))
    name = f"{label} ({vtype}" + (f", {size:g} GiB)" if size is not None else ")")
    if size is None:
        return [_unknown(name, "the volume size is not a literal (unset: the AMI's snapshot decides it)", None, "GB-month")]
    out = [_component(catalog, inv, name, count * size, "GB-month", "disk", vtype)]
    if vtype == "gp3":
        iops, throughput = literal_number(volume.get("iops")), literal_number(volume.get("throughput"))
        if iops is not None and iops > 3000:
            out.append(_component(catalog, inv, f"{label}: IOPS above 3,000", count * (iops - 3000), "IOPS-month", "disk", "gp3-iops"))
        if throughput is not None and throughput > 125:
            out.append(_component(catalog, inv, f"{label}: throughput above 125 MB/s", count * (throughput - 125), "MBps-month",
                                  "disk", "gp3-throughput"))
    return out


def _node_count(body: dict) -> float | None:
    for key in ("desired_capacity", "min_size"):
        if key in body:
            return literal_number(body.get(key))
    return None


def price_autoscaling_group(address: str, body: dict, inv: Inventory, catalog: PriceCatalog,
                            usage: UsageAssumptions) -> ResourceCost:
    """Nodes x (instance hours + their EBS volumes): desired capacity (else min size) for a month."""
    rtype = "aws_autoscaling_group"
    count = _node_count(body)
    if count is None:
        return ResourceCost(address, rtype, "unknown", "the group size (desired_capacity / min_size) is not a literal")
    if _block(body, "mixed_instances_policy"):
        return ResourceCost(address, rtype, "unknown", "a mixed-instances policy: the instance types vary, so the review "
                            "cannot price them")
    template_ref = _block(body, "launch_template")
    found = inv.referenced("aws_launch_template", template_ref.get("id") or template_ref.get("name"))
    if found is None:
        return ResourceCost(address, rtype, "unknown", "its launch template is not a resource of this stack")
    template = found[1]
    components = _instances(catalog, inv, literal_text(template.get("instance_type")), [], count, "instances")
    mappings = _blocks(template, "block_device_mappings")
    if not mappings:
        components.append(_unknown("root volume", "the launch template sets no block device: the AMI's root volume size and "
                                   "type decide it", None, "GB-month"))
    for mapping in mappings:
        ebs = _block(mapping, "ebs")
        if ebs:
            components += _ebs(catalog, inv, ebs, count, f"volume {mapping.get('device_name', '')}".strip())
    return _resource(address, rtype, components)


def price_instance(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """One EC2 instance and its root volume."""
    components = _instances(catalog, inv, literal_text(body.get("instance_type")), [], 1, "instance")
    root = _block(body, "root_block_device")
    components += _ebs(catalog, inv, root, 1, "root volume") if root else [
        _unknown("root volume", "no root_block_device: the AMI's root volume decides it", None, "GB-month")]
    return _resource(address, "aws_instance", components)


def price_ebs_volume(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """An EBS volume by type and size."""
    return _resource(address, "aws_ebs_volume", _ebs(catalog, inv, body, 1, "volume"))


def price_instance_group(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """A managed instance group: target size x (machine + GPUs + its disks)."""
    rtype = resource_type(address)
    count = literal_number(body.get("target_size"))
    if count is None:
        return ResourceCost(address, rtype, "unknown", "target_size is not a literal (an autoscaler sets it)")
    versions = _blocks(body, "version")
    found = inv.referenced("google_compute_instance_template", versions[0].get("instance_template")) if versions else None
    if found is None:
        return ResourceCost(address, rtype, "unknown", "its instance template is not a resource of this stack")
    template = found[1]
    accelerators = [(str(a.get("type")), int(literal_number(a.get("count")) or 0)) for a in _blocks(template, "guest_accelerator")]
    components = _instances(catalog, inv, literal_text(template.get("machine_type")), accelerators, count, "instances")
    for disk in _blocks(template, "disk"):
        components += _pd(catalog, inv, disk, count, "boot disk" if disk.get("boot") in (True, "true") else "disk")
    return _resource(address, rtype, components)


def _pd(catalog: PriceCatalog, inv: Inventory, disk: dict, count: float, label: str) -> list[CostComponent]:
    dtype = literal_text(disk.get("disk_type") or disk.get("type")) or "pd-standard"
    size = literal_number(disk.get("disk_size_gb") if "disk_size_gb" in disk else disk.get("size"))
    name = f"{label} ({dtype}" + (f", {size:g} GB)" if size is not None else ")")
    if size is None:
        return [_unknown(name, "the disk size is not a literal (unset: the image's size decides it)", None, "GB-month")]
    return [_component(catalog, inv, name, count * size, "GB-month", "disk", dtype)]


def price_compute_disk(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """A persistent disk by type and size."""
    return _resource(address, "google_compute_disk", _pd(catalog, inv, body, 1, "disk"))


def price_sagemaker_endpoint(address: str, body: dict, inv: Inventory, catalog: PriceCatalog,
                             usage: UsageAssumptions) -> ResourceCost:
    """The hosting instances of the endpoint configuration it serves (no Spot price for endpoints)."""
    rtype = "aws_sagemaker_endpoint"
    found = inv.referenced("aws_sagemaker_endpoint_configuration", body.get("endpoint_config_name"))
    if found is None:
        return ResourceCost(address, rtype, "unknown", "its endpoint configuration is not a resource of this stack")
    components = []
    for variant in _blocks(found[1], "production_variants"):
        itype = literal_text(variant.get("instance_type"))
        if _block(variant, "serverless_config"):
            components.append(_unknown("serverless variant", "a serverless variant is billed per request duration (usage)"))
            continue
        count = literal_number(variant.get("initial_instance_count"))
        count = 1.0 if count is None and "initial_instance_count" not in variant else count
        name = f"hosting instances ({itype or '?'})"
        if itype is None or count is None:
            components.append(_unknown(name, "the instance type or count is not a literal"))
            continue
        row, reason = _lookup(catalog, inv, "managed-instance", itype, "on-demand")
        components.append(_priced(name, count * HOURS_PER_MONTH, "h", row) if row else
                          _unknown(name, reason, count * HOURS_PER_MONTH, "h"))
    if not components:
        return ResourceCost(address, rtype, "unknown", "its endpoint configuration has no production variant to price")
    return _resource(address, rtype, components)


# -- storage, keys, monitoring -----------------------------------------------------------------------------------

def _object_bytes(inv: Inventory, body: dict) -> tuple[int | None, str]:
    """(bytes an uploaded object holds, why unknown)."""
    content = body.get("content")
    if isinstance(content, str) and body.get("source") is None:
        return len(content.encode()), ""
    key = literal_text(body.get("key") if "key" in body else body.get("name"))
    if key is not None and inv.artifact_bytes:  # the manifest's sizes win: its checks report the staged files
        matches = [path for path in inv.artifact_bytes if key == path or key.endswith("/" + path)]
        if matches:
            return inv.artifact_bytes[max(matches, key=len)], ""
    source = literal_text(body.get("source"))
    if source is None:
        return None, "its source is not a literal file path"
    if inv.folder is None:
        return None, "the uploaded file's size is not recorded in the state"
    try:  # the contract's rule: a staged file stays inside its stack folder; never size a file outside it
        file = resolve_artifact_path(inv.folder, source)
    except ContractError:
        if inv.style == "config":  # a synth that points outside itself is broken or tampered with: stop, say so
            raise ReviewError(f"{inv.name}: an object uploads {source!r}, which leaves the stack folder {inv.folder}; "
                              "re-run `cdktf synth`") from None
        return None, f"its source {source!r} is outside the synth"
    if not file.is_file():
        if inv.style == "config":
            raise ReviewError(f"{inv.name}: an object uploads {source}, but {file} does not exist; re-run `cdktf synth`")
        return None, f"the uploaded file {source} is not in this synth"
    return file.stat().st_size, ""


def _price_object(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, sku: str) -> ResourceCost:
    rtype = resource_type(address)
    size, why = _object_bytes(inv, body)
    name = f"storage ({sku})"
    if size is None:
        return _resource(address, rtype, [_unknown(name, why, None, "GB-month")])
    return _resource(address, rtype, [_component(catalog, inv, name, gb(size), "GB-month", "storage", sku)])


def price_s3_object(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """The object's bytes in S3 Standard a month."""
    return _price_object(address, body, inv, catalog, "s3-standard")


def price_gcs_object(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """The object's bytes in Cloud Storage Standard a month."""
    return _price_object(address, body, inv, catalog, "gcs-standard")


def _requests(catalog: PriceCatalog, inv: Inventory, prefix: str, usage: UsageAssumptions) -> list[CostComponent]:
    stated = "stated usage"
    return [
        _component(catalog, inv, "write and list requests", usage.bucket_class_a_requests / 1000, "1000-requests", "requests",
                   f"{prefix}-class-a", usage=stated),
        _component(catalog, inv, "read requests", usage.bucket_class_b_requests / 1000, "1000-requests", "requests",
                   f"{prefix}-class-b", usage=stated),
    ]


def price_s3_bucket(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Requests at the stated usage; the objects the stack uploads are priced on each object."""
    return _resource(address, "aws_s3_bucket", _requests(catalog, inv, "s3-standard", usage))


def price_gcs_bucket(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Requests at the stated usage; the objects the stack uploads are priced on each object."""
    sclass = (literal_text(body.get("storage_class")) or "STANDARD").upper()
    if sclass != "STANDARD":
        return ResourceCost(address, "google_storage_bucket", "unknown", f"storage class {sclass}: the catalog prices Standard only")
    return _resource(address, "google_storage_bucket", _requests(catalog, inv, "gcs-standard", usage))


def price_kms_key(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """A customer managed key a month."""
    return _resource(address, "aws_kms_key", [_component(catalog, inv, "customer managed key", 1, "key-month", "key", "aws-kms")])


def price_gcp_crypto_key(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """One active software key version a month (each rotation keeps another version active)."""
    level = (literal_text(_block(body, "version_template").get("protection_level")) or "SOFTWARE").upper()
    if level != "SOFTWARE":
        return ResourceCost(address, "google_kms_crypto_key", "unknown", f"protection level {level}: the catalog prices SOFTWARE keys only")
    return _resource(address, "google_kms_crypto_key",
                     [_component(catalog, inv, "active key version", 1, "key-month", "key", "gcp-kms-software")])


def price_metric_alarm(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Each metric the alarm reads, standard or high resolution (a period under 60 s)."""
    queries = _blocks(body, "metric_query")
    metrics = [q for q in queries if _block(q, "metric")] if queries else [body]
    periods = [literal_number(_block(q, "metric").get("period") if queries else body.get("period")) for q in metrics]
    high = any(p is not None and p < 60 for p in periods)
    sku = "cloudwatch-high-resolution" if high else "cloudwatch-standard"
    label = "high-resolution alarm metrics" if high else "alarm metrics"
    return _resource(address, "aws_cloudwatch_metric_alarm",
                     [_component(catalog, inv, label, max(len(metrics), 1), "alarm-month", "alarm", sku)])


def price_log_group(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Ingestion and storage of the stated log volume."""
    stated = "stated usage"
    return _resource(address, "aws_cloudwatch_log_group", [
        _component(catalog, inv, "log ingestion", usage.log_gb_ingested, "GB", "logs", "cloudwatch-logs-ingestion", usage=stated),
        _component(catalog, inv, "log storage", usage.log_gb_ingested, "GB-month", "storage", "cloudwatch-logs", usage=stated),
    ])


def price_alert_policy(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Cloud Monitoring alerting: each condition a month plus the time series it reads (stated usage)."""
    conditions = max(len(_blocks(body, "conditions")), 1)
    series = conditions * usage.alert_series_per_condition * 60 * HOURS_PER_MONTH / 1e6
    return _resource(address, "google_monitoring_alert_policy", [
        _component(catalog, inv, "alerting conditions", conditions, "condition-month", "alarm", "cloud-monitoring-condition"),
        _component(catalog, inv, "time series read", series, "million-series", "alarm", "cloud-monitoring-time-series",
                   usage="stated usage"),
    ])


# -- networking ----------------------------------------------------------------------------------------------------

def price_aws_lb(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Load balancer hours plus capacity units at the stated usage."""
    kind = (literal_text(body.get("load_balancer_type")) or "application").lower()
    skus = {"application": ("alb", "alb-lcu"), "network": ("nlb", "nlb-nlcu")}
    if kind not in skus:
        return ResourceCost(address, "aws_lb", "unknown", f"a {kind} load balancer: the catalog prices application and network ones")
    hourly, capacity = skus[kind]
    return _resource(address, "aws_lb", [
        _component(catalog, inv, f"{kind} load balancer hours", HOURS_PER_MONTH, "h", "load-balancer", hourly),
        _component(catalog, inv, "capacity units", usage.alb_lcu * HOURS_PER_MONTH, "LCU-hour", "load-balancer", capacity,
                   usage="stated usage"),
    ])


def price_forwarding_rule(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """A Google Cloud load balancer, priced on its forwarding rule: rule or proxy hours and data processed."""
    rtype = resource_type(address)
    scheme = (literal_text(body.get("load_balancing_scheme")) or "EXTERNAL").upper()
    stated = "stated usage"
    if scheme == "INTERNAL_MANAGED":  # internal Application Load Balancer: billed per proxy instance, not per rule
        hours = _component(catalog, inv, "proxy instance hours", usage.gcp_ilb_proxy_instances * HOURS_PER_MONTH, "h",
                           "load-balancer", "gcp-ilb-proxy", usage=stated)
    else:
        hours = _component(catalog, inv, "forwarding rule hours", HOURS_PER_MONTH, "h", "load-balancer", "gcp-forwarding-rule")
    return _resource(address, rtype, [hours, _component(catalog, inv, "data processed", usage.gcp_lb_gb_processed, "GB",
                                                        "load-balancer", "gcp-lb-data", usage=stated)])


def price_vpc_endpoint(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Gateway endpoints are free; interface endpoints cost per zone-hour and per GB."""
    kind = (literal_text(body.get("vpc_endpoint_type")) or "Gateway").lower()
    if kind == "gateway":
        return ResourceCost(address, "aws_vpc_endpoint", "free", "a gateway endpoint (S3, DynamoDB) has no charge")
    zones = len(body.get("subnet_ids") or []) or 1
    return _resource(address, "aws_vpc_endpoint", [
        _component(catalog, inv, f"interface endpoint hours ({zones} zone(s))", zones * HOURS_PER_MONTH, "h", "network",
                   "interface-endpoint"),
        _component(catalog, inv, "data processed", usage.network_gb_processed, "GB", "network", "interface-endpoint-data",
                   usage="stated usage"),
    ])


def price_nat_gateway(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """NAT gateway hours and data processed at the stated usage."""
    return _resource(address, "aws_nat_gateway", [
        _component(catalog, inv, "NAT gateway hours", HOURS_PER_MONTH, "h", "network", "nat-gateway"),
        _component(catalog, inv, "data processed", usage.network_gb_processed, "GB", "network", "nat-gateway-data",
                   usage="stated usage"),
    ])


def price_route53_zone(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """A hosted zone a month and its queries at the stated usage."""
    return _resource(address, "aws_route53_zone", [
        _component(catalog, inv, "hosted zone", 1, "zone-month", "dns", "route53-hosted-zone"),
        _component(catalog, inv, "queries", usage.dns_million_queries, "million-queries", "dns", "route53-queries",
                   usage="stated usage"),
    ])


def price_route53_health_check(address: str, body: dict, inv: Inventory, catalog: PriceCatalog,
                               usage: UsageAssumptions) -> ResourceCost:
    """A health check: cheaper for an endpoint inside AWS (and a CloudWatch alarm's), plus each optional feature."""
    kind = (literal_text(body.get("type")) or "HTTP").upper()
    target = str(body.get("fqdn") or body.get("ip_address") or "")
    inside = kind in ("CLOUDWATCH_METRIC", "CALCULATED") or target.endswith(".amazonaws.com")
    sku = "route53-health-check-aws" if inside else "route53-health-check-other"
    label = "health check (AWS endpoint or alarm)" if inside else "health check (endpoint outside AWS)"
    features = [name for name, on in (("HTTPS", kind.startswith("HTTPS")), ("string matching", "STR_MATCH" in kind),
                                      ("10 s interval", literal_number(body.get("request_interval")) == 10),
                                      ("latency measurement", body.get("measure_latency") in (True, "true"))) if on]
    components = [_component(catalog, inv, label, 1, "check-month", "dns", sku)]
    if features:
        components.append(_component(catalog, inv, f"optional features ({', '.join(features)})", len(features), "check-month", "dns",
                                     "route53-health-check-feature"))
    return _resource(address, "aws_route53_health_check", components)


def price_dns_zone(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """A Cloud DNS managed zone a month and its queries at the stated usage."""
    return _resource(address, "google_dns_managed_zone", [
        _component(catalog, inv, "managed zone", 1, "zone-month", "dns", "cloud-dns-zone"),
        _component(catalog, inv, "queries", usage.dns_million_queries, "million-queries", "dns", "cloud-dns-queries",
                   usage="stated usage"),
    ])


# -- data transfer services ----------------------------------------------------------------------------------------

def price_datasync_task(address: str, body: dict, inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions) -> ResourceCost:
    """Priced per GB copied: a volume the synth does not hold (the data plan prices the copy)."""
    row, _ = _lookup(catalog, inv, "transfer-service", "datasync-basic")
    fee = f"{unit_price(row.price_usd)} per GB copied ({row.origin})" if row else "a fee per GB copied"
    return ResourceCost(address, "aws_datasync_task", "unknown",
                        f"DataSync charges {fee}: the volume is usage, not in the synth; with --data-plan the copy is priced "
                        "under Data migration")


def price_storage_transfer_job(address: str, body: dict, inv: Inventory, catalog: PriceCatalog,
                               usage: UsageAssumptions) -> ResourceCost:
    """Agentless transfers (from S3, between buckets) carry no service fee; agent-based ones cost per GB (usage)."""
    spec = _block(body, "transfer_spec")
    agent_based = any(_block(spec, k) for k in ("posix_data_source", "posix_data_sink", "hdfs_data_source"))
    sku = "sts-agent-based" if agent_based else "sts-agentless"
    row = catalog.find(inv.cloud or "gcp", inv.region or "*", "transfer-service", sku) if inv.cloud else None
    if row is not None and row.price_usd == 0:
        return ResourceCost(address, "google_storage_transfer_job", "free",
                            f"an agentless transfer has no Storage Transfer Service fee ({row.origin}); the source's egress is "
                            "priced under Data migration with --data-plan")
    fee = f"{unit_price(row.price_usd)} per GB ({row.origin})" if row else "a fee per GB"
    return ResourceCost(address, "google_storage_transfer_job", "unknown",
                        f"an agent-based transfer costs {fee}: the volume is usage, not in the synth")


# -- the registry ----------------------------------------------------------------------------------------------------

PRICERS: dict[str, Pricer] = {
    "aws_autoscaling_group": price_autoscaling_group,
    "aws_instance": price_instance,
    "aws_ebs_volume": price_ebs_volume,
    "google_compute_region_instance_group_manager": price_instance_group,
    "google_compute_instance_group_manager": price_instance_group,
    "google_compute_disk": price_compute_disk,
    "aws_sagemaker_endpoint": price_sagemaker_endpoint,
    "aws_s3_bucket": price_s3_bucket,
    "aws_s3_object": price_s3_object,
    "google_storage_bucket": price_gcs_bucket,
    "google_storage_bucket_object": price_gcs_object,
    "aws_kms_key": price_kms_key,
    "google_kms_crypto_key": price_gcp_crypto_key,
    "aws_cloudwatch_metric_alarm": price_metric_alarm,
    "aws_cloudwatch_log_group": price_log_group,
    "google_monitoring_alert_policy": price_alert_policy,
    "aws_lb": price_aws_lb,
    "aws_alb": price_aws_lb,
    "google_compute_forwarding_rule": price_forwarding_rule,
    "google_compute_global_forwarding_rule": price_forwarding_rule,
    "aws_vpc_endpoint": price_vpc_endpoint,
    "aws_nat_gateway": price_nat_gateway,
    "aws_route53_zone": price_route53_zone,
    "aws_route53_health_check": price_route53_health_check,
    "google_dns_managed_zone": price_dns_zone,
    "aws_datasync_task": price_datasync_task,
    "google_storage_transfer_job": price_storage_transfer_job,
}

_IAM = "IAM has no charge"
_VPC = "VPC networking configuration has no charge"
_BUCKET_CONFIG = "bucket configuration: no charge of its own"
_GCP_LB_PART = "part of a load balancer, priced on its forwarding rule"

FREE: dict[str, str] = {
    **dict.fromkeys(("aws_iam_role", "aws_iam_role_policy", "aws_iam_policy", "aws_iam_role_policy_attachment",
                     "aws_iam_instance_profile", "aws_iam_policy_attachment", "aws_iam_service_linked_role"), _IAM),
    **dict.fromkeys(("google_service_account", "google_storage_bucket_iam_member", "google_storage_bucket_iam_binding",
                     "google_kms_crypto_key_iam_member", "google_kms_crypto_key_iam_binding", "google_project_iam_member",
                     "google_service_account_iam_member", "google_project_service"), _IAM),
    **dict.fromkeys(("aws_vpc", "aws_subnet", "aws_route_table", "aws_route_table_association", "aws_route",
                     "aws_default_security_group", "aws_security_group", "aws_security_group_rule",
                     "aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule", "aws_default_network_acl",
                     "aws_network_acl", "aws_default_route_table", "aws_internet_gateway", "aws_egress_only_internet_gateway",
                     "aws_vpc_endpoint_route_table_association"), _VPC),
    **dict.fromkeys(("google_compute_network", "google_compute_subnetwork", "google_compute_firewall", "google_compute_route",
                     "google_compute_router"), _VPC),
    "aws_kms_alias": "an alias has no charge (its key is priced)",
    "google_kms_key_ring": "a key ring has no charge (its keys are priced)",
    "aws_launch_template": "a template: its instances and volumes are priced on the auto scaling group that launches them",
    "google_compute_instance_template": "a template: its machines and disks are priced on the instance group that uses it",
    **dict.fromkeys(("aws_lb_listener", "aws_lb_target_group", "aws_lb_listener_rule", "aws_lb_target_group_attachment",
                     "aws_autoscaling_attachment"), "included in the load balancer's hours and capacity units"),
    **dict.fromkeys(("google_compute_region_backend_service", "google_compute_backend_service", "google_compute_region_url_map",
                     "google_compute_url_map", "google_compute_region_target_http_proxy", "google_compute_target_http_proxy",
                     "google_compute_region_target_https_proxy", "google_compute_target_https_proxy",
                     "google_compute_region_health_check", "google_compute_health_check"), _GCP_LB_PART),
    **dict.fromkeys(("aws_s3_bucket_versioning", "aws_s3_bucket_public_access_block", "aws_s3_bucket_ownership_controls",
                     "aws_s3_bucket_policy", "aws_s3_bucket_acl", "aws_s3_bucket_cors_configuration"), _BUCKET_CONFIG),
    "aws_s3_bucket_server_side_encryption_configuration": _BUCKET_CONFIG + " (SSE-KMS requests count on the key; the bucket key "
                                                          "keeps them few)",
    "aws_s3_bucket_lifecycle_configuration": _BUCKET_CONFIG + " (expiring objects is free; transitions would be billed per "
                                             "request)",
    "aws_s3_bucket_logging": _BUCKET_CONFIG + " (the log objects are stored in the log bucket at S3 prices)",
    **dict.fromkeys(("aws_sns_topic", "aws_sns_topic_policy", "aws_sns_topic_subscription"),
                    "SNS: the first million publishes and 1,000 e-mail deliveries a month are free, far above what alarms send"),
    "google_monitoring_notification_channel": "a notification channel has no charge",
    "aws_sagemaker_model": "a model definition: its instances are priced on the endpoint that serves it",
    "aws_sagemaker_endpoint_configuration": "a configuration: its instances are priced on the endpoint that uses it",
    "aws_cloudwatch_log_resource_policy": "a resource policy has no charge",
    **dict.fromkeys(("aws_cloudwatch_event_rule", "aws_cloudwatch_event_target"),
                    "EventBridge: events from AWS services on the default event bus are free"),
    **dict.fromkeys(("aws_datasync_location_s3", "aws_datasync_location_object_storage", "aws_datasync_location_efs",
                     "aws_datasync_location_nfs"), "a location has no charge (copies are billed per GB on the task)"),
    "aws_route53_record": "a record has no charge of its own (queries are billed on the hosted zone)",
    **dict.fromkeys(("terraform_data", "null_resource", "random_id", "random_string", "random_password", "random_pet",
                     "time_sleep", "time_static", "time_rotating"), "exists only in Terraform's state, not in a cloud"),
    "google_dns_record_set": "a record has no charge of its own (queries are billed on the managed zone)",
}


def classify(address: str, body: dict, inv: Inventory, catalog: PriceCatalog,
             usage: UsageAssumptions = DEFAULT_USAGE) -> ResourceCost:
    """The verdict on one resource (``address`` is ``type.name``, possibly under ``module.x.``)."""
    rtype = resource_type(address)
    if rtype in PRICERS:
        return PRICERS[rtype](address, body, inv, catalog, usage)
    if rtype in FREE:
        return ResourceCost(address, rtype, "free", FREE[rtype])
    return ResourceCost(address, rtype, "unknown", f"lepton review has no price model for {rtype}; it is left out of the totals")


def price_inventory(inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions = DEFAULT_USAGE) -> list[ResourceCost]:
    """Every resource of ``inv``, by address."""
    return [classify(address, body, inv, catalog, usage) for address, body in sorted(inv.resources.items())]


@dataclass(frozen=True)
class StackCost:
    """What one stack costs a month in one state (base or head)."""

    resources: tuple[ResourceCost, ...]
    source: str  # "synth", "state" (a plan's prior state)

    def total(self, pricing: str = "on-demand") -> float:
        """Sum of every known component in ``pricing``."""
        return sum(r.monthly(pricing) for r in self.resources)

    def coverage(self) -> dict[str, int]:
        """How many resources are priced, free and unknown."""
        counts = {"priced": 0, "free": 0, "unknown": 0}
        for r in self.resources:
            counts[r.status] += 1
        return counts

    def by_address(self) -> dict[str, ResourceCost]:
        """The verdicts by address."""
        return {r.address: r for r in self.resources}


def stack_cost(inv: Inventory, catalog: PriceCatalog, usage: UsageAssumptions = DEFAULT_USAGE) -> StackCost:
    """Price every resource of ``inv``."""
    return StackCost(tuple(price_inventory(inv, catalog, usage)), "state" if inv.style == "state" else "synth")


def money_delta(before: float | None, after: float | None) -> str:
    """``+$1,469.20 (+200.0%)``, ``-$5.00 (-1.2%)``, ``+$12.00 (new)``, ``$0.00``."""
    if before is None or after is None:
        return "n/a"
    diff = after - before
    if abs(diff) < 0.005:
        return "$0.00"
    sign = "+" if diff > 0 else "-"
    pct = "new" if before == 0 else f"{sign}{abs(diff) / before * 100:.1f}%"
    return f"{sign}{usd(abs(diff))} ({pct})"
