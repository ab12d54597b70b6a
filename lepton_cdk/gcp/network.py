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

from lepton_cdk.core.framework import Construct, google
from lepton_cdk.core.renames import renamed_props
from lepton_cdk.core.validation import PropChecks

from .naming import stable_suffix

DEFAULT_CIDR_BLOCK = "10.42.0.0/20"


class PrivateNetwork(Construct):
    """A custom-mode VPC network with one private subnetwork (the AWS mirror image: :class:`lepton_cdk.aws.PrivateNetwork`)."""

    @renamed_props(ip_cidr_range="cidr_block")
    def __init__(self, scope: Construct, id: str, *, cidr_block: str = DEFAULT_CIDR_BLOCK) -> None:
        """Create the network and subnetwork.

        :param cidr_block: the subnetwork's private IPv4 range, /8 to /29. Default: ``10.42.0.0/20``.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        checks.private_ipv4_range("cidr_block", cidr_block, largest=8, smallest=29, example=DEFAULT_CIDR_BLOCK)
        checks.raise_if_any()
        name = f"lepton-{stable_suffix(self)}"
        self.network = google.compute_network.ComputeNetwork(
            self, "Resource", name=name, auto_create_subnetworks=False, routing_mode="REGIONAL",
            description="lepton-cdk private network for GPU nodes",
        )
        self.subnetwork = google.compute_subnetwork.ComputeSubnetwork(
            self, "Subnet", name=name, network=self.network.id, ip_cidr_range=cidr_block, private_ip_google_access=True,
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
