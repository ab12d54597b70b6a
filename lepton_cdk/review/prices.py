"""The price catalog: dated public list prices, shipped as ``prices.csv``.

The catalog is a snapshot. Every row names the public page it was read from
(``source_url``) and when (``retrieved``); users replace or extend it with their
own CSV of the same columns (``lepton review --prices FILE``). Nothing here
talks to a pricing API: a review must run offline and give the same answer
twice.

Columns: ``cloud`` (aws, gcp), ``region`` (a region code, ``*``, or
``|``-separated shell patterns such as ``us-*|eu-*``), ``kind`` (see
:data:`KINDS`), ``sku`` (instance type, accelerator type, storage class,
disk type, egress destination ``internet`` or ``inter-region``, ...),
``pricing`` (on-demand, spot, list), ``unit`` (one of the kind's units in
:data:`KINDS`; a GB is 2^30 bytes, as both clouds bill), ``price_usd``,
``gpu_memory_gib`` (instances and accelerators with a GPU), ``tier_start_gib``
/ ``tier_end_gib`` (egress tiers, per month; an empty end is unbounded),
``source_url``, ``retrieved`` (YYYY-MM-DD) and ``note`` (spot rows say
ESTIMATE).

A kind says what is priced, its unit how: ``instance`` / ``accelerator``
(VMs and GPUs a node group runs: what ``lepton target recommend`` ranks),
``managed-instance`` (SageMaker hosting instances), ``storage`` (object
storage, log storage), ``disk`` (block volumes by type: per GB-month, and
gp3's provisioned IOPS / throughput above the free baseline),
``requests`` (per 1,000 object-storage requests), ``key`` (KMS keys and
key versions), ``alarm`` (alarm metrics, alerting conditions, time series
read), ``load-balancer`` (hours, capacity units, GB processed), ``network``
(NAT gateways and interface endpoints: hours and GB processed), ``logs``
(GB ingested), ``transfer-service`` (DataSync / Storage Transfer Service per
GB), ``dns`` (hosted zones, health checks), ``egress`` / ``ingress`` (GB).
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import CatalogError

COLUMNS = ("cloud", "region", "kind", "sku", "pricing", "unit", "price_usd", "gpu_memory_gib",
           "tier_start_gib", "tier_end_gib", "source_url", "retrieved", "note")
REQUIRED = ("cloud", "region", "kind", "sku", "pricing", "unit", "price_usd", "source_url", "retrieved")
# kind -> the units its prices may be quoted in (the first is the usual one).
KINDS: dict[str, tuple[str, ...]] = {
    "instance": ("hour",), "accelerator": ("hour",), "managed-instance": ("hour",),
    "storage": ("GB-month",), "egress": ("GB",), "ingress": ("GB",),
    "disk": ("GB-month", "IOPS-month", "MBps-month"),
    "requests": ("1000-requests",),
    "key": ("key-month",),
    "alarm": ("alarm-month", "condition-month", "million-series"),
    "load-balancer": ("hour", "LCU-hour", "GB"),
    "network": ("hour", "GB"),
    "logs": ("GB",),
    "transfer-service": ("GB",),
    "dns": ("zone-month", "check-month", "million-queries"),
}
PRICINGS = ("on-demand", "spot", "list")


@dataclass(frozen=True)
class PriceRow:
    """One price: a SKU in a region, with where and when it was read."""

    cloud: str
    region: str
    kind: str
    sku: str
    pricing: str
    unit: str
    price_usd: float
    source_url: str
    retrieved: str
    note: str = ""
    gpu_memory_gib: float | None = None
    tier_start_gib: float = 0.0
    tier_end_gib: float | None = None
    origin: str = ""  # "<file>:<line>", for messages

    def matches_region(self, region: str) -> bool:
        """Whether this row's region pattern covers ``region``."""
        return any(fnmatch.fnmatchcase(region, pattern) for pattern in self.region.split("|"))

    @property
    def is_estimate(self) -> bool:
        """Spot prices and rows noted as estimates move; the review says so."""
        return self.pricing == "spot" or "ESTIMATE" in self.note


def _number(text: str, column: str, where: str, *, optional: bool = False) -> float | None:
    if text == "" and optional:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CatalogError(f"price catalog {where}: {column} is {text!r}, expected a number") from None
    if value < 0:
        raise CatalogError(f"price catalog {where}: {column} is {value}, expected a number >= 0")
    return value


def _row(raw: dict[str, str], where: str) -> PriceRow:
    values = {k: (raw.get(k) or "").strip() for k in COLUMNS}
    missing = [k for k in REQUIRED if not values[k]]
    if missing:
        raise CatalogError(f"price catalog {where}: missing {', '.join(missing)}; every price needs its value, "
                           "a source_url and the date it was retrieved (YYYY-MM-DD)")
    if values["kind"] not in KINDS:
        raise CatalogError(f"price catalog {where}: kind {values['kind']!r} is not one of {', '.join(KINDS)}")
    if values["unit"] not in KINDS[values["kind"]]:
        raise CatalogError(f"price catalog {where}: a {values['kind']} price is per {' or per '.join(KINDS[values['kind']])}, "
                           f"not {values['unit']!r}")
    if values["pricing"] not in PRICINGS:
        raise CatalogError(f"price catalog {where}: pricing {values['pricing']!r} is not one of {', '.join(PRICINGS)}")
    if not values["source_url"].startswith(("https://", "http://")):
        raise CatalogError(f"price catalog {where}: source_url {values['source_url']!r} is not a web address")
    try:
        dt.date.fromisoformat(values["retrieved"])
    except ValueError:
        raise CatalogError(f"price catalog {where}: retrieved {values['retrieved']!r} is not a date (YYYY-MM-DD)") from None
    return PriceRow(
        cloud=values["cloud"], region=values["region"], kind=values["kind"], sku=values["sku"],
        pricing=values["pricing"], unit=values["unit"], price_usd=_number(values["price_usd"], "price_usd", where),
        source_url=values["source_url"], retrieved=values["retrieved"], note=values["note"],
        gpu_memory_gib=_number(values["gpu_memory_gib"], "gpu_memory_gib", where, optional=True),
        tier_start_gib=_number(values["tier_start_gib"], "tier_start_gib", where, optional=True) or 0.0,
        tier_end_gib=_number(values["tier_end_gib"], "tier_end_gib", where, optional=True),
        origin=where,
    )


def parse_catalog(text: str, name: str) -> list[PriceRow]:
    """Rows of a catalog CSV; raises :class:`CatalogError` naming the first bad row (``name:line``)."""
    reader = csv.DictReader(text.splitlines())
    absent = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if absent:
        raise CatalogError(f"price catalog {name} has no column(s) {', '.join(absent)}; expected the columns {', '.join(COLUMNS)}")
    return [_row(raw, f"{name}:{line}") for line, raw in enumerate(reader, start=2) if any((v or "").strip() for v in raw.values())]


# Cloud Storage multi-regions have no region code of their own; price them as a region of that continent.
GCS_MULTI_REGION_FOR_PRICING = {"us": "us-central1", "eu": "europe-west1", "asia": "asia-east1", "nam4": "us-central1",
                                "eur4": "europe-west4"}


def pricing_region(cloud: str, region: str) -> str:
    """The region whose prices apply to ``region`` (a GCS multi-region maps to one region of its continent)."""
    return GCS_MULTI_REGION_FOR_PRICING.get(region, region) if cloud == "gcp" else region


@dataclass(frozen=True)
class PriceCatalog:
    """Dated prices, looked up by cloud, region, kind, SKU and pricing."""

    rows: tuple[PriceRow, ...]
    sources: tuple[str, ...]

    def find(self, cloud: str, region: str, kind: str, sku: str, pricing: str = "list") -> PriceRow | None:
        """The single matching (untiered) price, preferring an exact region over a pattern; None when absent."""
        region = pricing_region(cloud, region)
        found = [r for r in self.rows if (r.cloud, r.kind, r.sku, r.pricing) == (cloud, kind, sku, pricing)
                 and r.matches_region(region)]
        exact = [r for r in found if r.region == region]
        return (exact or found or [None])[0]

    def tiers(self, cloud: str, region: str, kind: str, sku: str) -> list[PriceRow]:
        """The tiered rows for a transfer, by tier start; exact-region rows win over patterns."""
        region = pricing_region(cloud, region)
        found = [r for r in self.rows if (r.cloud, r.kind, r.sku) == (cloud, kind, sku) and r.matches_region(region)]
        exact = [r for r in found if r.region == region]
        return sorted(exact or found, key=lambda r: r.tier_start_gib)

    def instances(self) -> list[PriceRow]:
        """Every instance and accelerator row."""
        return [r for r in self.rows if r.kind in ("instance", "accelerator")]

    @property
    def retrieved_range(self) -> tuple[str, str]:
        """The oldest and newest retrieval dates in the catalog."""
        dates = sorted(r.retrieved for r in self.rows)
        return (dates[0], dates[-1]) if dates else ("", "")


def load_catalog(path: str | Path | None = None) -> PriceCatalog:
    """The shipped catalog, or the user's CSV at ``path`` (same columns) instead of it."""
    if path is None:
        text = resources.files(__package__).joinpath("prices.csv").read_text(encoding="utf-8")
        name = "lepton_cdk/review/prices.csv"
    else:
        from lepton_cdk.contract.errors import ContractError
        from lepton_cdk.contract.files import read_file_bytes

        try:  # a folder, a FIFO, a path under a file: one line each, never a hang
            data = read_file_bytes(path, what="price catalog", fix="pass an existing CSV to --prices",
                                   missing=f"price catalog {path} not found; pass an existing CSV to --prices")
        except ContractError as exc:
            raise CatalogError(str(exc)) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CatalogError(f"price catalog {path} is not UTF-8 text (byte {exc.start}); pass a CSV file to --prices") from None
        name = str(path)
    rows = parse_catalog(text, name)
    if not rows:
        raise CatalogError(f"price catalog {name} has no rows")
    return PriceCatalog(tuple(rows), (name,))
