"""A private VPC network for GPU nodes: no external IPs, Google APIs through Private Google Access.

Default settings:
- A custom-mode network (no auto subnets) with one regional subnetwork
  (``10.42.0.0/20``) in the provider's region.
- Private Google Access on, so nodes without external IPs reach Cloud
  Storage; there is no Cloud NAT, so nothing else on the internet is reachable.
- No firewall rule allows ingress (the network's implied rule denies it).
- VPC flow logs on the subnetwork: 5-second aggregation, half of the flows
  sampled, all metadata (Cloud Logging charges per GiB of logs).
"""

from __future__ import annotations

import ipaddress

from lepton_cdk.core.framework import Construct, google
from lepton_cdk.core.validation import PropChecks

from .naming import stable_suffix


class PrivateNetwork(Construct):
    """A custom-mode VPC network with one private subnetwork."""

    def __init__(self, scope: Construct, id: str, *, ip_cidr_range: str = "10.42.0.0/20") -> None:
        """Create the network and subnetwork.

        :param ip_cidr_range: the subnetwork's private IPv4 range, /8 to /29. Default: ``10.42.0.0/20``.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        if checks.known(ip_cidr_range):
            try:
                net = ipaddress.ip_network(ip_cidr_range, strict=True)
            except ValueError:
                checks.add(f"ip_cidr_range={ip_cidr_range!r} is not an IPv4 network in CIDR form; use e.g. '10.42.0.0/20'")
            else:
                checks.require(net.version == 4 and 8 <= net.prefixlen <= 29 and net.is_private,
                               f"ip_cidr_range={ip_cidr_range!r} must be a private IPv4 range from /8 to /29; use e.g. '10.42.0.0/20'")
        checks.raise_if_any()
        name = f"lepton-{stable_suffix(self)}"
        self.network = google.compute_network.ComputeNetwork(
            self, "Resource", name=name, auto_create_subnetworks=False, routing_mode="REGIONAL",
            description="lepton-cdk private network for GPU nodes",
        )
        self.subnetwork = google.compute_subnetwork.ComputeSubnetwork(
            self, "Subnet", name=name, network=self.network.id, ip_cidr_range=ip_cidr_range, private_ip_google_access=True,
            # Flow logs: the record of what the nodes talked to, which an incident review needs (checkov CKV_GCP_26).
            log_config=google.compute_subnetwork.ComputeSubnetworkLogConfig(
                aggregation_interval="INTERVAL_5_SEC", flow_sampling=0.5, metadata="INCLUDE_ALL_METADATA"),
        )

    @property
    def network_id(self) -> str:
        """The network's id."""
        return self.network.id

    @property
    def subnetwork_id(self) -> str:
        """The subnetwork's id."""
        return self.subnetwork.id
