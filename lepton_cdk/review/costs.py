"""What a synthesized stack and a data plan cost, from the dated price catalog.

Every figure is a :class:`CostLine` that carries its inputs as text
(``quantity x unit price = total``) and the catalog rows it used, so a
reviewer can check it. A figure the catalog cannot price (an instance type or
region it lacks, a size that is a Terraform expression) is a line with
``total_usd=None`` and the reason: never a silent $0.

Units: a month is 730 hours (AWS's and Google's convention); a GB is 2^30
bytes, as both clouds bill storage and transfer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lepton_cdk.contract import ContractError, DataPlan, resolve_artifact_path

from .errors import ReviewError
from .prices import PriceCatalog, PriceRow, pricing_region
from .resources import StackDocument

HOURS_PER_MONTH = 730
BYTES_PER_GB = 2**30

EGRESS_WAIVER_NOTE = (
    "Leaving a cloud for good may qualify for its egress waiver: AWS waives data transfer out to the internet "
    "for customers moving off AWS (https://aws.amazon.com/blogs/aws/free-data-transfer-out-to-internet-when-moving-out-of-aws/) "
    "and Google Cloud does the same for customers exiting it "
    "(https://cloud.google.com/blog/products/networking/eliminating-data-transfer-fees-when-migrating-off-google-cloud); "
    "both need an application to support and the move to finish within a set window. The figures above assume no waiver."
)


@dataclass(frozen=True)
class CostLine:
    """One priced item: ``total_usd`` is None when it could not be priced, with ``reason`` saying why."""

    section: str  # "GPU nodes", "storage", "data transfer"
    label: str
    basis: str  # "monthly" or "one-time"
    total_usd: float | None
    inputs: str
    reason: str = ""
    estimate: bool = False
    rows: tuple[PriceRow, ...] = field(default=(), repr=False)
    pricing: str = ""  # GPU lines: "on-demand" or "spot"; empty: applies to every scenario
    size_case: str = ""  # GPU lines: "min" or "max" size; empty: both

    def to_dict(self) -> dict:
        """JSON-ready form, with the sources of the prices used."""
        return {
            "section": self.section, "label": self.label, "basis": self.basis,
            "total_usd": None if self.total_usd is None else round(self.total_usd, 2),
            "inputs": self.inputs, "unknown_reason": self.reason or None, "estimate": self.estimate,
            "pricing": self.pricing or None, "size_case": self.size_case or None,
            "sources": [{"row": r.origin, "source_url": r.source_url, "retrieved": r.retrieved} for r in self.rows],
        }


def usd(value: float) -> str:
    """Money as ``$1,234.56``."""
    return f"${value:,.2f}"


def unit_price(value: float) -> str:
    """A unit price with the catalog's precision (``$0.023``, ``$1.006``)."""
    return f"${value:.10g}"


def gb(byte_count: int) -> float:
    """Bytes as GB (2^30 bytes)."""
    return byte_count / BYTES_PER_GB


def _literal_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _literal_str(value: object) -> str | None:
    return value if isinstance(value, str) and "${" not in value else None


def _referenced(stack: StackDocument, rtype: str, ref: object) -> dict | None:
    match = re.search(r"\$\{(?:tostring\()?" + re.escape(rtype) + r"\.([^.}]+)\.", ref) if isinstance(ref, str) else None
    return stack.resources_of(rtype).get(match.group(1)) if match else None


def _missing(what: str, catalog: PriceCatalog) -> str:
    return f"no {what} in the price catalog ({', '.join(catalog.sources)}); add a row and pass it with --prices"


@dataclass(frozen=True)
class NodeGroup:
    """A GPU node group as synthesized: where, what machine, how many."""

    address: str
    cloud: str
    region: str | None
    machine_type: str | None
    accelerators: tuple[tuple[str, int], ...]
    min_size: int | None
    max_size: int | None


def node_groups(stack: StackDocument) -> list[NodeGroup]:
    """The autoscaling groups (AWS) and managed instance groups (GCP) in a stack."""
    groups = []
    for name, asg in stack.resources_of("aws_autoscaling_group").items():
        lt_ref = (asg.get("launch_template") or {}) if isinstance(asg.get("launch_template"), dict) else {}
        template = _referenced(stack, "aws_launch_template", lt_ref.get("id") or lt_ref.get("name"))
        machine = _literal_str(template.get("instance_type")) if template else None
        groups.append(NodeGroup(f"aws_autoscaling_group.{name}", "aws", stack.region, machine, (),
                                _literal_int(asg.get("min_size")), _literal_int(asg.get("max_size"))))
    for rtype in ("google_compute_region_instance_group_manager", "google_compute_instance_group_manager"):
        for name, mig in stack.resources_of(rtype).items():
            versions = mig.get("version") or [{}]
            template = _referenced(stack, "google_compute_instance_template", versions[0].get("instance_template"))
            machine = _literal_str(template.get("machine_type")) if template else None
            accels = tuple((str(a.get("type")), _literal_int(a.get("count")) or 0)
                           for a in (template or {}).get("guest_accelerator", []) or [])
            region = _literal_str(mig.get("region")) or stack.region
            size = _literal_int(mig.get("target_size"))
            groups.append(NodeGroup(f"{rtype}.{name}", "gcp", region, machine, accels, size, size))
    return groups


def _hourly(group: NodeGroup, catalog: PriceCatalog, pricing: str) -> tuple[float | None, str, str, tuple[PriceRow, ...]]:
    """(price per node-hour, how it was built, unknown reason, rows used)."""
    if group.machine_type is None:
        return None, "", "the machine type is not a literal in the synthesized JSON (an expression or a mixed-instances policy)", ()
    if group.region is None:
        return None, "", "the region is not a literal in the provider block", ()
    machine = catalog.find(group.cloud, group.region, "instance", group.machine_type, pricing)
    if machine is None:
        return None, "", _missing(f"{pricing} price for {group.machine_type} in {group.cloud} {group.region}", catalog), ()
    if machine.gpu_memory_gib is not None or not group.accelerators:
        bundled = f" (includes {', '.join(t for t, _ in group.accelerators)})" if group.accelerators else ""
        return machine.price_usd, f"{unit_price(machine.price_usd)}/h{bundled}", "", (machine,)
    total, parts, rows = machine.price_usd, [f"{unit_price(machine.price_usd)} {group.machine_type}"], [machine]
    for accel_type, count in group.accelerators:
        accel = catalog.find(group.cloud, group.region, "accelerator", accel_type, pricing)
        if accel is None:
            return None, "", _missing(f"{pricing} price for accelerator {accel_type} in {group.cloud} {group.region}", catalog), ()
        total += count * accel.price_usd
        parts.append(f"{count} x {unit_price(accel.price_usd)} {accel_type}")
        rows.append(accel)
    return total, f"({' + '.join(parts)})/h", "", tuple(rows)


def node_group_costs(stack: StackDocument, catalog: PriceCatalog) -> list[CostLine]:
    """Monthly cost of each GPU node group at its min and max size, on-demand and spot."""
    lines = []
    for group in node_groups(stack):
        sizes = [("min", group.min_size), ("max", group.max_size)] if group.min_size != group.max_size else [("", group.min_size)]
        for pricing in ("on-demand", "spot"):
            hourly, how, reason, rows = _hourly(group, catalog, pricing)
            for which, size in sizes:
                label = f"{group.address}: {group.machine_type or '?'} {pricing}" + (f", {which} size" if which else "")
                scenario = {"pricing": pricing, "size_case": which}
                if size is None:
                    lines.append(CostLine("GPU nodes", label, "monthly", None, "",
                                          "the group size is not a literal in the synthesized JSON", **scenario))
                elif hourly is None:
                    lines.append(CostLine("GPU nodes", label, "monthly", None, f"{size} node(s) x {HOURS_PER_MONTH} h x ? /h",
                                          reason, **scenario))
                else:
                    amount = size * HOURS_PER_MONTH * hourly
                    lines.append(CostLine("GPU nodes", label, "monthly", amount,
                                          f"{size} node(s) x {HOURS_PER_MONTH} h x {how} = {usd(amount)}",
                                          estimate=any(r.is_estimate for r in rows), rows=rows, **scenario))
    return lines


STORAGE_SKUS = {"aws": "s3-standard", "gcp": "gcs-standard"}
OBJECT_TYPES = {"aws_s3_object": "source", "google_storage_bucket_object": "source"}


def asset_bytes(stack: StackDocument) -> int | None:
    """Total size of the files the stack uploads as bucket objects (their ``source`` under cdktf.out); None when there are none."""
    total, found = 0, False
    for rtype, attr in OBJECT_TYPES.items():
        for name, body in stack.resources_of(rtype).items():
            source = _literal_str(body.get(attr))
            content = body.get("content")
            if source is not None:
                try:  # the contract's rule: a staged file stays inside its stack folder
                    file = resolve_artifact_path(stack.folder, source)
                except ContractError:
                    raise ReviewError(f"{rtype}.{name} uploads {source!r}, which leaves the stack folder {stack.folder}; "
                                      "re-run `cdktf synth`") from None
                if not file.is_file():
                    raise ReviewError(f"{rtype}.{name} uploads {source}, but {file} does not exist; re-run `cdktf synth`")
                total, found = total + file.stat().st_size, True
            elif isinstance(content, str):
                total, found = total + len(content.encode()), True
    return total if found else None


def storage_cost(cloud: str, region: str | None, byte_count: int, catalog: PriceCatalog, label: str) -> CostLine:
    """Monthly Standard-class storage of ``byte_count`` bytes in ``cloud`` ``region``."""
    sku = STORAGE_SKUS.get(cloud, f"{cloud}-standard")
    size = gb(byte_count)
    if region is None:
        return CostLine("storage", label, "monthly", None, f"{size:.6g} GB x ?", "the region is not a literal in the provider block")
    row = catalog.find(cloud, region, "storage", sku)
    if row is None:
        return CostLine("storage", label, "monthly", None, f"{size:.6g} GB x ?", _missing(f"{sku} price in {cloud} {region}", catalog))
    total = size * row.price_usd
    return CostLine("storage", label, "monthly", total,
                    f"{size:.6g} GB ({byte_count:,} bytes) x {unit_price(row.price_usd)}/GB-month ({sku}, {region}) = {usd(total)}",
                    rows=(row,))


def tiered_cost(rows: list[PriceRow], size_gb: float) -> tuple[float | None, str, str]:
    """(total, the per-tier arithmetic, unknown reason) for ``size_gb`` across contiguous tiers starting at 0."""
    if not rows:
        return None, "", "no tiers"
    total, parts, expected_start = 0.0, [], 0.0
    for row in rows:
        if row.tier_start_gib != expected_start:
            return None, "", f"the tiers in the catalog do not join up at {expected_start:g} GB ({row.origin})"
        if size_gb > row.tier_start_gib:
            upper = size_gb if row.tier_end_gib is None else min(size_gb, row.tier_end_gib)
            amount = upper - row.tier_start_gib
            total += amount * row.price_usd
            parts.append(f"{amount:.6g} GB x {unit_price(row.price_usd)}")
        if row.tier_end_gib is None:
            return total, " + ".join(parts) or "0 GB", ""
        expected_start = row.tier_end_gib
    if size_gb > expected_start:
        return None, "", f"the catalog's tiers stop at {expected_start:g} GB"
    return total, " + ".join(parts) or "0 GB", ""


def transfer_cost(src_cloud: str, src_region: str, dst_cloud: str, dst_region: str, byte_count: int,
                  catalog: PriceCatalog, label: str = "data transfer") -> CostLine:
    """One-time cost of moving ``byte_count`` bytes from one cloud region to another, at tiered list prices.

    Leaving a cloud is internet egress from the source (the destination's
    ingress is free); moving between regions of one cloud is its
    inter-region rate; staying in a region, or uploading from a local disk,
    costs nothing. The tiers are monthly: a transfer is assumed to finish
    within one month, with no other egress that month.
    """
    size = gb(byte_count)
    route = f"{src_cloud} {src_region} -> {dst_cloud} {dst_region}"
    if src_cloud == "local" or (src_cloud == dst_cloud
                                and pricing_region(src_cloud, src_region) == pricing_region(dst_cloud, dst_region)):
        why = "upload from a local disk (ingress is free)" if src_cloud == "local" else "same cloud and region"
        return CostLine("data transfer", label, "one-time", 0.0, f"{size:.6g} GB, {route}: $0.00 ({why})")
    sku = "internet" if src_cloud != dst_cloud else "inter-region"
    rows = catalog.tiers(src_cloud, src_region, "egress", sku)
    if not rows:
        return CostLine("data transfer", label, "one-time", None, f"{size:.6g} GB, {route}",
                        _missing(f"{sku} egress price from {src_cloud} {src_region}", catalog))
    total, how, reason = tiered_cost(rows, size)
    if total is None:
        return CostLine("data transfer", label, "one-time", None, f"{size:.6g} GB, {route}", reason)
    return CostLine("data transfer", label, "one-time", total,
                    f"{size:.6g} GB ({byte_count:,} bytes), {route}, {sku} egress: {how} = {usd(total)}", rows=tuple(rows))


def data_plan_costs(plan: DataPlan, catalog: PriceCatalog) -> list[CostLine]:
    """The plan's one-time transfer and the destination's monthly storage once it has run."""
    src, dst = plan.source, plan.destination
    lines = [transfer_cost(src.cloud, src.region, dst.cloud, dst.region, plan.bytes_to_copy, catalog,
                           f"copy {plan.objects_to_copy:,} objects {src.uri} -> {dst.uri}")]
    if dst.cloud != "local":
        lines.append(storage_cost(dst.cloud, dst.region, plan.bytes_at_destination, catalog, f"data at {dst.uri}"))
    return lines


def stack_costs(stack: StackDocument, catalog: PriceCatalog, *, artifact_bytes: int | None = None) -> list[CostLine]:
    """GPU node groups and model-artifact storage of one stack.

    ``artifact_bytes`` (from the manifest) wins over the sizes of the files the
    stack uploads.
    """
    lines = node_group_costs(stack, catalog)
    size = artifact_bytes if artifact_bytes is not None else asset_bytes(stack)
    cloud = stack.cloud
    if size is not None and cloud is not None:
        lines.append(storage_cost(cloud, stack.region, size, catalog, "model artifacts"))
    return lines


def total(lines: list[CostLine], basis: str, *, pricing: str = "on-demand", size_case: str = "min") -> tuple[float, int]:
    """(sum of the priced lines with ``basis`` in one scenario, number of unknown ones).

    A scenario is a pricing (on-demand or spot) and a node-group size (min or
    max); lines that are not GPU nodes count in every scenario.
    """
    chosen = [line for line in lines if line.basis == basis and line.pricing in ("", pricing)
              and line.size_case in ("", size_case)]
    return sum(line.total_usd for line in chosen if line.total_usd is not None), sum(line.total_usd is None for line in chosen)
