"""An Infracost usage file carrying a data plan's transfer, so Infracost users see the egress too.

Infracost prices data transfer at $0 unless a usage file says how much moves.
The transfer leaves the *source* cloud, whose resources are usually not in the
target's synth, so the file uses the keys Infracost reads without a matching
Terraform resource or on the source bucket:

* source AWS: ``aws_data_transfer.<region>`` with ``region`` and
  ``monthly_outbound_internet_gb`` (leaving AWS, to another cloud) or
  ``monthly_outbound_other_regions_gb`` (to another AWS region). Infracost
  adds this usage-only resource by itself.
* source GCP: ``google_storage_bucket.<name>`` with
  ``monthly_egress_data_transfer_gb.worldwide`` (leaving Google Cloud) or
  ``.same_continent`` (another region). ``<name>`` is the bucket from the
  plan's source URI; rename the key to the bucket's Terraform address if the
  source bucket is in an Infracost-scanned project.

The whole planned transfer is put in one month, as ``lepton review`` does.
"""

from __future__ import annotations

import re

from lepton_cdk.contract import DataPlan

from .costs import gb


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "source"


def infracost_usage_yaml(plan: DataPlan) -> str:
    """The ``infracost-usage.yml`` text (version 0.1) for ``plan``; YAML written by hand, no PyYAML needed."""
    size = round(gb(plan.bytes_to_copy), 3)
    src, dst = plan.source, plan.destination
    lines = ["# Written by `lepton review --infracost-usage`: the planned data transfer of a lepton-cdk migration.",
             f"# {src.uri} ({src.cloud} {src.region}) -> {dst.uri} ({dst.cloud} {dst.region}), {plan.bytes_to_copy} bytes.",
             "version: 0.1", "resource_usage:"]
    if src.cloud == "aws":
        key = "monthly_outbound_internet_gb" if dst.cloud != "aws" else "monthly_outbound_other_regions_gb"
        lines += [f"  aws_data_transfer.{_key(src.region)}:", f'    region: "{src.region}"', f"    {key}: {size}"]
    elif src.cloud == "gcp":
        bucket = src.uri.removeprefix("gs://").split("/", 1)[0]
        where = "worldwide" if dst.cloud != "gcp" else "same_continent"
        lines += [f"  google_storage_bucket.{_key(bucket)}:", "    monthly_egress_data_transfer_gb:", f"      {where}: {size}"]
    else:
        lines[-1] = "resource_usage: {}"
    return "\n".join(lines) + "\n"
