"""Where to run: the cheapest GPU instance type and region that meets a memory need,
counting the one-time egress of bringing the data there."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .costs import BYTES_PER_GB, HOURS_PER_MONTH, CostLine, transfer_cost, usd
from .errors import ReviewError
from .prices import PriceCatalog, PriceRow

# An exabyte: far above any real move, and low enough that the byte count stays a finite number.
MAX_DATA_GIB = 1e9


def _finite(value: object) -> bool:
    """A real number (not a bool) that is not NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


@dataclass(frozen=True)
class Candidate:
    """One instance type in one region, priced for a month plus the data's move there."""

    cloud: str
    region: str
    instance_type: str  # "n1-standard-8+nvidia-tesla-t4" for a machine with an attached GPU
    gpu_memory_gib: float
    hourly_usd: float
    monthly_usd: float
    egress: CostLine | None  # None when no data location was given
    rows: tuple[PriceRow, ...]

    @property
    def first_month_usd(self) -> float | None:
        """A month of the instance plus the one-time egress; None when the egress is unknown."""
        if self.egress is None:
            return self.monthly_usd
        return None if self.egress.total_usd is None else self.monthly_usd + self.egress.total_usd


def _candidates(catalog: PriceCatalog, pricing: str) -> list[tuple[str, str, str, float, float, tuple[PriceRow, ...]]]:
    rows = [r for r in catalog.instances() if r.pricing == pricing and "*" not in r.region and "|" not in r.region]
    found = [(r.cloud, r.region, r.sku, r.gpu_memory_gib, r.price_usd, (r,))
             for r in rows if r.kind == "instance" and r.gpu_memory_gib]
    # A machine without a GPU of its own (GCP N1) with one attachable accelerator in the same region.
    for machine in (r for r in rows if r.kind == "instance" and not r.gpu_memory_gib):
        for accel in (r for r in rows if r.kind == "accelerator" and (r.cloud, r.region) == (machine.cloud, machine.region)):
            found.append((machine.cloud, machine.region, f"{machine.sku}+{accel.sku}", accel.gpu_memory_gib or 0.0,
                          machine.price_usd + accel.price_usd, (machine, accel)))
    return found


def recommend(catalog: PriceCatalog, *, gpu_memory_gib: float, clouds: list[str] | None = None,
              regions: list[str] | None = None, data_location: tuple[str, str] | None = None,
              data_gib: float = 0.0, pricing: str = "on-demand") -> list[Candidate]:
    """Every catalog instance meeting ``gpu_memory_gib``, cheapest first.

    Ranked by a month of one instance (730 h) plus the one-time egress of
    ``data_gib`` from ``data_location`` (cloud, region); candidates whose
    egress the catalog cannot price come last. Ties break by monthly price,
    then cloud, region and instance type, so the order is the same every run.
    """
    # NaN compares false both ways: `nan <= 0` is false and `memory < nan` never skips, so every instance qualified
    if not (_finite(gpu_memory_gib) and gpu_memory_gib > 0):
        raise ReviewError(f"--gpu-memory-gib must be a finite number above 0, got {gpu_memory_gib!r}")
    if not (_finite(data_gib) and 0 <= data_gib <= MAX_DATA_GIB):
        raise ReviewError(f"--data-gib must be a finite number from 0 to {MAX_DATA_GIB:g}, got {data_gib!r}")
    result = []
    for cloud, region, sku, memory, hourly, rows in _candidates(catalog, pricing):
        if memory < gpu_memory_gib or (clouds and cloud not in clouds) or (regions and region not in regions):
            continue
        egress = None
        if data_location is not None:
            egress = transfer_cost(data_location[0], data_location[1], cloud, region, round(data_gib * BYTES_PER_GB), catalog,
                                   f"move {data_gib:g} GB from {data_location[0]} {data_location[1]}")
        result.append(Candidate(cloud, region, sku, memory, hourly, hourly * HOURS_PER_MONTH, egress, rows))

    def key(c: Candidate) -> tuple:
        first = c.first_month_usd
        return (first is None, first if first is not None else 0.0, c.monthly_usd, c.cloud, c.region, c.instance_type)

    return sorted(result, key=key)


def render_recommendation(candidates: list[Candidate], *, gpu_memory_gib: float, limit: int = 10) -> str:
    """A short Markdown table, best first."""
    if not candidates:
        return f"No instance in the catalog has at least {gpu_memory_gib:g} GiB of GPU memory in the clouds and regions asked for."
    best = candidates[0]
    first = best.first_month_usd
    lines = [f"Cheapest with >= {gpu_memory_gib:g} GiB GPU memory: **{best.instance_type}** in **{best.cloud} {best.region}**, "
             f"{usd(best.monthly_usd)}/month" + (f" + {usd(best.egress.total_usd)} one-time egress" if best.egress and first is not None else ""),
             "", "| rank | cloud | region | instance | GPU GiB | month (730 h) | one-time egress | first month |",
             "|---:|---|---|---|---:|---:|---:|---:|"]
    for i, c in enumerate(candidates[:limit], start=1):
        if c.egress is None:
            egress = "-"
        elif c.egress.total_usd is None:
            egress = f"unknown ({c.egress.reason})"
        else:
            egress = usd(c.egress.total_usd)
        first = c.first_month_usd
        lines.append(f"| {i} | {c.cloud} | {c.region} | {c.instance_type} | {c.gpu_memory_gib:g} | "
                     f"{c.hourly_usd:.10g}/h x 730 = {usd(c.monthly_usd)} | {egress} | {usd(first) if first is not None else 'unknown'} |")
    return "\n".join(lines)


def candidate_to_dict(c: Candidate) -> dict:
    """JSON-ready form of one candidate."""
    return {"cloud": c.cloud, "region": c.region, "instance_type": c.instance_type, "gpu_memory_gib": c.gpu_memory_gib,
            "hourly_usd": c.hourly_usd, "monthly_usd": round(c.monthly_usd, 2),
            "egress": c.egress.to_dict() if c.egress else None,
            "first_month_usd": None if c.first_month_usd is None else round(c.first_month_usd, 2)}
