"""A private VPC for GPU nodes: no internet route, S3 reached through a gateway endpoint.

Default settings:
- A VPC (``10.42.0.0/16``) with DNS on and one private subnet per
  availability zone in two zones (the first two the region offers), each a
  ``/20``. Subnets never assign public IPs.
- No internet gateway and no NAT: the only route out is the S3 gateway
  endpoint (child ``"S3Endpoint"``) attached to the subnets' route table, so
  nodes can fetch model artifacts and nothing else leaves the VPC.
- The VPC's default security group is emptied (no ingress, no egress), so a
  resource that lands in it by mistake is isolated.
"""

from __future__ import annotations

from lepton_cdk.core.framework import Construct, Fn, aws
from lepton_cdk.core.validation import PropChecks

DEFAULT_CIDR_BLOCK = "10.42.0.0/16"


class PrivateNetwork(Construct):
    """A VPC with private subnets only and an S3 gateway endpoint (the GCP mirror image: :class:`lepton_cdk.gcp.PrivateNetwork`)."""

    def __init__(self, scope: Construct, id: str, *, cidr_block: str = DEFAULT_CIDR_BLOCK, availability_zone_count: int = 2) -> None:
        """Create the VPC, its subnets, route table and S3 endpoint.

        :param cidr_block: the VPC's IPv4 range, /16 to /24. Default:
            ``10.42.0.0/16``. Each subnet takes a 1/16th slice of it.
        :param availability_zone_count: subnets to create, one per zone
            (1-4). Default: 2, so a capacity shortage in one zone does not stop
            scaling.
        """
        super().__init__(scope, id)
        checks = PropChecks(self.node.path)
        checks.private_ipv4_range("cidr_block", cidr_block, largest=16, smallest=24, example=DEFAULT_CIDR_BLOCK)
        checks.int_range("availability_zone_count", availability_zone_count, minimum=1, maximum=4)
        checks.raise_if_any()

        self.vpc = aws.vpc.Vpc(self, "Resource", cidr_block=cidr_block, enable_dns_support=True, enable_dns_hostnames=True,
                               tags={"Name": "lepton-private"})
        self.default_security_group = aws.default_security_group.DefaultSecurityGroup(
            self, "DefaultSecurityGroup", vpc_id=self.vpc.id, ingress=[], egress=[],
        )
        self.zones = aws.data_aws_availability_zones.DataAwsAvailabilityZones(self, "Zones", state="available")
        self.region = aws.data_aws_region.DataAwsRegion(self, "Region")
        self.route_table = aws.route_table.RouteTable(self, "RouteTable", vpc_id=self.vpc.id, tags={"Name": "lepton-private"})
        self.subnets = []
        for index in range(availability_zone_count):
            subnet = aws.subnet.Subnet(
                self, f"Subnet-{index}",
                vpc_id=self.vpc.id,
                cidr_block=Fn.cidrsubnet(cidr_block, 4, index),
                availability_zone=Fn.element(self.zones.names, index),
                map_public_ip_on_launch=False,
                tags={"Name": f"lepton-private-{index}"},
            )
            aws.route_table_association.RouteTableAssociation(
                self, f"RouteTableAssociation-{index}", subnet_id=subnet.id, route_table_id=self.route_table.id,
            )
            self.subnets.append(subnet)
        self.s3_endpoint = aws.vpc_endpoint.VpcEndpoint(
            self, "S3Endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{self.region.name}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[self.route_table.id],
        )

    @property
    def vpc_id(self) -> str:
        """The VPC's id."""
        return self.vpc.id

    @property
    def s3_prefix_list_id(self) -> str:
        """The managed prefix list of S3's addresses behind the gateway endpoint (for security group egress)."""
        return self.s3_endpoint.prefix_list_id
