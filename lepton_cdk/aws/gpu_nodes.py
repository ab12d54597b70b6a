"""GPU nodes in an auto scaling group that fetch a model version and verify it at boot.

The mirror image of :mod:`lepton_cdk.gcp.gpu_nodes`: the same public names (``docs/vocabulary.md``),
this cloud's resources. What repeats between the two modules is kept on purpose (aws/ and gcp/
never import each other); logic that is truly shared lives in ``lepton_cdk.core``.

Default settings:
- ``g5.xlarge`` (1 NVIDIA A10G, 24 GiB), one node (min = desired = max = 1).
- Image: the AWS Deep Learning Base OSS NVIDIA Driver GPU AMI (Ubuntu
  22.04), read at plan time from the public SSM parameter
  ``/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id``
  (NVIDIA driver, CUDA and the AWS CLI preinstalled; root device ``/dev/sda1``).
- IMDSv2 only (``http_tokens = required``) with a hop limit of 1, so
  containers on the node cannot reach the instance credentials.
- Root volume: encrypted gp3, 100 GiB (the AMI's snapshot is 75 GiB),
  deleted with the instance.
- No public IP. Without ``subnets``, a :class:`PrivateNetwork` is created
  (child ``"Network"``): private subnets in two zones, no internet route,
  S3 through a gateway endpoint.
- Security group (child ``"SecurityGroup"``): no ingress at all; egress only
  HTTPS, to the S3 gateway endpoint's prefix list when the network was
  created here, or to any address when you pass your own subnets (your
  routes decide where that goes).
- An instance role (child ``"Role"``) whose only permissions are
  ``s3:GetObject`` on the model version's prefix and ``kms:Decrypt`` on the
  bucket key via S3 (granted through ``model.grant_read``).
- Boot script: downloads every artifact the manifest lists, checks each
  sha256 against the manifest and writes ``/var/lib/lepton/model-ready``;
  on any mismatch it writes ``/var/lib/lepton/model-failed`` and exits non-zero
  (nothing may serve the model). Once verified, the model is served by
  Triton in a container on port 8000 (OIP v2; see ``lepton_cdk.core.startup_script``).
- On-demand capacity; ``spot=True`` asks for one-time Spot instances
  (terminated on interruption; the group launches replacements), up to the
  on-demand price.
- Health checks: EC2 status, 900 s grace period (the first boot pulls the
  multi-GB Triton image; the same default as GCP's auto-healing delay, from
  :mod:`lepton_cdk.core.gpu_nodes`). Behind a load balancer
  (``attach_to_target_group``, which :class:`~lepton_cdk.aws.ModelServing`
  calls) the group switches to ELB health checks, so a node whose server
  stops answering ``/v2/health/ready`` is terminated and replaced after the
  same grace period. Terraform waits up to 10 minutes for the nodes to be in
  service.
- Group metrics (``GroupInServiceInstances``, ``GroupDesiredCapacity`` ...)
  are collected every minute (free of charge), for :class:`~lepton_cdk.aws.Monitoring`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lepton_cdk.core.framework import Construct, Fn, aws, literal_with_references
from lepton_cdk.core.gpu_nodes import DEFAULT_DISK_SIZE_GIB, DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC
from lepton_cdk.core.interfaces import IHasArn, IHasId
from lepton_cdk.core.renames import renamed_props
from lepton_cdk.core.startup_script import TritonLaunch, render_fetch_and_verify_script
from lepton_cdk.core.validation import PropChecks

from .bucket import ModelArtifacts
from .iam import ServiceRole
from .network import PrivateNetwork

DEFAULT_INSTANCE_TYPE = "g5.xlarge"
DEEP_LEARNING_AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
# Instance families with NVIDIA GPUs that the Deep Learning Base AMI (x86_64) supports.
GPU_INSTANCE_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "gr6", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en"})

# Auto scaling group metrics collected (free at 1-minute granularity); Monitoring alarms on the first two.
GROUP_METRICS = ("GroupInServiceInstances", "GroupDesiredCapacity", "GroupMinSize", "GroupMaxSize", "GroupPendingInstances",
                 "GroupTerminatingInstances", "GroupTotalInstances")

_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


class GpuNodeGroup(Construct):
    """An auto scaling group of GPU instances that fetch and verify a model at boot.

    Implements :class:`lepton_cdk.core.IGpuNodeGroup`.
    """

    @renamed_props(image_id="image", desired_capacity="node_count", root_volume_size_gib="disk_size_gib")
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model: ModelArtifacts,
        instance_type: str = DEFAULT_INSTANCE_TYPE,
        image: str | None = None,
        min_size: int = 1,
        max_size: int = 1,
        node_count: int | None = None,
        disk_size_gib: int = DEFAULT_DISK_SIZE_GIB,
        root_device_name: str = "/dev/sda1",
        subnets: Sequence[IHasId] | None = None,
        security_groups: Sequence[IHasId] | None = None,
        health_check_grace_period_sec: int = DEFAULT_HEALTH_CHECK_GRACE_PERIOD_SEC,
        capacity_timeout_min: int = 10,
        spot: bool = False,
    ) -> None:
        """Create the launch template, auto scaling group, role and (if needed) network.

        :param model: the model version the nodes fetch; they are granted read access to its prefix only.
        :param instance_type: an NVIDIA GPU instance type. Default: ``g5.xlarge``.
        :param image: the AMI id. Default: the latest Deep Learning Base OSS
            NVIDIA Driver GPU AMI (Ubuntu 22.04) from its public SSM parameter.
        :param min_size: fewest nodes (the auto scaling group's bound). Default: 1.
        :param max_size: most nodes (the auto scaling group's bound). Default: 1.
        :param node_count: nodes to run now (the group's desired capacity). Default: ``min_size``.
        :param disk_size_gib: root volume size (encrypted gp3). Default: 100 GiB.
        :param root_device_name: the AMI's root device. Default: ``/dev/sda1`` (Ubuntu AMIs; Amazon Linux uses ``/dev/xvda``).
        :param subnets: where nodes run (``Subnet`` or ``DataAwsSubnet`` objects).
            Default: a new :class:`PrivateNetwork`.
        :param security_groups: security groups for the nodes (needs ``subnets``).
            Default: a new group with no ingress and HTTPS-only egress.
        :param health_check_grace_period_sec: seconds after launch before a
            failing health check (EC2, or the load balancer's once attached)
            replaces a node (0-7200). Default: 900, as on GCP: boot, the model
            download and verification and the Triton image pull must fit.
        :param capacity_timeout_min: minutes ``terraform apply`` waits for the
            nodes to be in service (0: do not wait). Default: 10.
        :param spot: run on Spot capacity (one-time requests, terminated on
            interruption, at most the on-demand price). Default: on-demand.
            The GPU type and count follow ``instance_type`` (``g5.xlarge``: 1
            A10G; ``g5.12xlarge``: 4).
        """
        super().__init__(scope, id)
        desired = min_size if node_count is None else node_count
        checks = PropChecks(self.node.path)
        if checks.known(instance_type):
            family = instance_type.split(".")[0]
            checks.require(
                "." in instance_type and family in GPU_INSTANCE_FAMILIES,
                f"instance_type={instance_type!r} is not an NVIDIA GPU instance type; use one of the "
                f"{', '.join(sorted(GPU_INSTANCE_FAMILIES))} families, e.g. {DEFAULT_INSTANCE_TYPE!r}",
            )
        if image is not None and checks.known(image):
            checks.require(bool(_AMI_ID.match(image)), f"image={image!r} is not an AMI id; pass one like 'ami-0123456789abcdef0' or leave it unset for the Deep Learning AMI")
        checks.int_range("min_size", min_size, minimum=0)
        checks.int_range("max_size", max_size, minimum=1)
        checks.int_range("node_count", desired, minimum=0)
        if checks.known(min_size, max_size, desired) and all(isinstance(v, int) for v in (min_size, max_size, desired)):
            checks.require(min_size <= max_size, f"min_size={min_size} is above max_size={max_size}; raise max_size or lower min_size")
            checks.require(min_size <= desired <= max_size,
                           f"node_count={desired} must lie between min_size={min_size} and max_size={max_size}; change one of them")
        checks.int_range("disk_size_gib", disk_size_gib, minimum=8, maximum=16384, fix="gp3 volumes hold 8 GiB to 16 TiB here")
        checks.int_range("health_check_grace_period_sec", health_check_grace_period_sec, minimum=0, maximum=7200)
        checks.int_range("capacity_timeout_min", capacity_timeout_min, minimum=0, maximum=60)
        if security_groups is not None and subnets is None:
            checks.add("security_groups was given without subnets; pass the subnets of the security groups' VPC as well")
        if subnets is not None:
            checks.require(len(subnets) > 0, "subnets=[] holds no subnet; pass at least one, or leave it unset for a new private network")
        checks.require(isinstance(spot, bool), f"spot={spot!r} is not a bool; pass True for Spot capacity or False for on-demand")
        checks.raise_if_any()

        self._model = model
        self._target_group_arns: list[str] = []
        self._vpc_data = None
        self.network: PrivateNetwork | None = None
        if subnets is None:
            self.network = PrivateNetwork(self, "Network")
            subnets = self.network.subnets
        subnet_ids = [s.id for s in subnets]
        self.subnet_ids: list[str] = subnet_ids
        self.vpc_id: str = self.network.vpc_id if self.network else subnets[0].vpc_id
        self.spot = spot
        self.node_count = desired
        self.health_check_grace_period_sec = health_check_grace_period_sec

        if security_groups is None:
            vpc_id = self.network.vpc_id if self.network else subnets[0].vpc_id
            self.security_group = aws.security_group.SecurityGroup(
                self, "SecurityGroup",
                name_prefix="lepton-gpu-",
                description="lepton-cdk GPU nodes: no ingress; HTTPS egress to fetch the model",
                vpc_id=vpc_id,
                tags={"Name": "lepton-gpu"},
            )
            egress = {"prefix_list_id": self.network.s3_prefix_list_id} if self.network else {"cidr_ipv4": "0.0.0.0/0"}
            aws.vpc_security_group_egress_rule.VpcSecurityGroupEgressRule(
                self, "SecurityGroupEgress",
                security_group_id=self.security_group.id,
                ip_protocol="tcp", from_port=443, to_port=443, description="HTTPS to fetch the model artifacts", **egress,
            )
            security_group_ids = [self.security_group.id]
        else:
            self.security_group = None
            security_group_ids = [g.id for g in security_groups]
        self.security_group_ids: list[str] = security_group_ids

        self.role = ServiceRole(self, "Role", service="ec2.amazonaws.com", description="lepton-cdk GPU nodes: read one model version")
        self.instance_profile = aws.iam_instance_profile.IamInstanceProfile(
            self, "InstanceProfile", name_prefix="lepton-gpu-", role=self.role.role_name,
        )
        self.grant = model.grant_read(self)

        if image is None:
            self.image_parameter = aws.data_aws_ssm_parameter.DataAwsSsmParameter(self, "Image", name=DEEP_LEARNING_AMI_PARAMETER)
            image = self.image_parameter.insecure_value
        self.startup_script = render_fetch_and_verify_script(
            model_name=model.manifest.model_name,
            model_version=model.manifest.model_version,
            objects=model.objects,
            primary=model.model_object,
            copy_command=f'aws s3 cp --only-show-errors --region {model.bucket.bucket_region} "$1" "$2"',
            triton=TritonLaunch.for_manifest(model.manifest),
        )
        lt = aws.launch_template
        tags = {"Name": "lepton-gpu", "lepton:model": f"{model.manifest.model_name}:{model.manifest.model_version}"}
        self.launch_template = lt.LaunchTemplate(
            self, "LaunchTemplate",
            name_prefix="lepton-gpu-",
            description="lepton-cdk GPU node",
            image_id=image,
            instance_type=instance_type,
            update_default_version=True,
            iam_instance_profile=lt.LaunchTemplateIamInstanceProfile(arn=self.instance_profile.arn),
            metadata_options=lt.LaunchTemplateMetadataOptions(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1, instance_metadata_tags="disabled",
            ),
            block_device_mappings=[lt.LaunchTemplateBlockDeviceMappings(
                device_name=root_device_name,
                ebs=lt.LaunchTemplateBlockDeviceMappingsEbs(
                    volume_size=disk_size_gib, volume_type="gp3", encrypted="true", delete_on_termination="true",
                ),
            )],
            network_interfaces=[lt.LaunchTemplateNetworkInterfaces(
                device_index=0, associate_public_ip_address="false", delete_on_termination="true", security_groups=security_group_ids,
            )],
            user_data=Fn.base64encode(literal_with_references(self.startup_script)),
            instance_market_options=lt.LaunchTemplateInstanceMarketOptions(
                market_type="spot",
                spot_options=lt.LaunchTemplateInstanceMarketOptionsSpotOptions(
                    spot_instance_type="one-time", instance_interruption_behavior="terminate",
                ),
            ) if spot else None,
            tag_specifications=[
                lt.LaunchTemplateTagSpecifications(resource_type="instance", tags=tags),
                lt.LaunchTemplateTagSpecifications(resource_type="volume", tags=tags),
            ],
        )
        asg = aws.autoscaling_group
        self.resource = asg.AutoscalingGroup(
            self, "Resource",
            name_prefix="lepton-gpu-",
            min_size=min_size,
            max_size=max_size,
            desired_capacity=desired,
            vpc_zone_identifier=subnet_ids,
            launch_template=asg.AutoscalingGroupLaunchTemplate(
                id=self.launch_template.id, version=Fn.tostring(self.launch_template.latest_version),
            ),
            health_check_type="EC2",
            health_check_grace_period=health_check_grace_period_sec,
            wait_for_capacity_timeout=f"{capacity_timeout_min}m",
            enabled_metrics=list(GROUP_METRICS),
            metrics_granularity="1Minute",
            tag=[asg.AutoscalingGroupTag(key="Name", value="lepton-gpu", propagate_at_launch=True)],
        )

    def attach_to_target_group(self, target_group: IHasArn) -> None:
        """Register the nodes with a load balancer target group and replace nodes it finds unhealthy.

        Adds the target group (an ``LbTargetGroup``) to the group's ``target_group_arns`` and
        switches the group to ``ELB`` health checks (the grace period stays
        ``health_check_grace_period_sec``): a node that fails the target
        group's health check is terminated and a new one launched.
        """
        self._target_group_arns.append(target_group.arn)
        self.resource.target_group_arns = list(self._target_group_arns)
        self.resource.health_check_type = "ELB"

    @property
    def target_group_arns(self) -> tuple[str, ...]:
        """Target groups the nodes are registered with (see :meth:`attach_to_target_group`)."""
        return tuple(self._target_group_arns)

    @property
    def vpc_cidr_block(self) -> str:
        """The IPv4 range of the nodes' VPC (read with a ``aws_vpc`` data source, child ``"Vpc"``, for your own subnets)."""
        if self.network is not None:
            return self.network.vpc.cidr_block
        if self._vpc_data is None:
            self._vpc_data = aws.data_aws_vpc.DataAwsVpc(self, "Vpc", id=self.vpc_id)
        return self._vpc_data.cidr_block

    @property
    def grant_principal(self) -> ServiceRole:
        """The nodes' IAM role."""
        return self.role

    @property
    def node_group_name(self) -> str:
        """The auto scaling group's name."""
        return self.resource.name

    @property
    def model(self) -> ModelArtifacts:
        """The model version the nodes fetch."""
        return self._model


__all__ = ["DEEP_LEARNING_AMI_PARAMETER", "DEFAULT_INSTANCE_TYPE", "GPU_INSTANCE_FAMILIES", "GROUP_METRICS", "GpuNodeGroup", "IHasArn", "IHasId"]
